"""The local stack with kill points, for the cross-process tests: an instance SIGKILLs itself at a named point.

`python -m tests.reliability.kill_points local --port ...` runs the real local stack (tools/cli.py) whose instances
run this module instead of tools/local/instance.py: the same instance, plus
- kill points: a delivery whose event id starts with a name in KILL_POINTS kills the instance that handles it
  (SIGKILL: no reply, no cleanup, as when Lambda's runtime dies) at that point of the invocation, once per event
  id (a marker file in $KLIKIT_KILL_DIR says it happened), so klikit's retry reaches a fresh instance;
- slow requests: a receiver instance given an event id `slow-<seconds>-...` says so (an `invoked-<event id>` file)
  and sleeps that long before the handler runs: a request in flight, or one past the receiver's timeout;
- holds: a processor instance given a delivery whose event id starts with `hold-` says so (a `holding-<event id>`
  file) and waits until a `release` file appears, so a test can keep every poller busy while a batch queues up;
- a counted user handler for every klikit event type: one line `<event id> <order id>` per call in
  $KLIKIT_KILL_DIR/effects.log (appended by whichever instance runs it), the effect an exactly-once test counts.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

KILL_DIR_ENV = "KLIKIT_KILL_DIR"
EFFECTS_FILE = "effects.log"
HOLD_PREFIX = "hold-"
SLOW_PREFIX = "slow-"
RELEASE_FILE = "release"
COUNTER_NAME = "reliability.effect-counter"
EVENT_TYPES = ("klikit.order.created.v2", "klikit.order.status.updated", "klikit.order.cart.updated")

# event id prefix -> (the function whose instance dies, botocore event: where it is in the invocation)
KILL_POINTS = {
    # receiver: the idempotency record is in progress, nothing is queued
    "kill-before-enqueue": ("receiver", "before-call.sqs.SendMessage"),
    # receiver: SQS has the message, the instance never reads the answer
    "kill-during-enqueue": ("receiver", "needs-retry.sqs.SendMessage"),
    # receiver: queued and the record marked done, no reply sent
    "kill-after-enqueue": ("receiver", "after-call.dynamodb.UpdateItem"),
    # processor: the batch's effects are done, its archive write (once per batch, at the end) has not started
    "kill-mid-batch": ("processor", "before-parameter-build.s3.PutObject"),
}

_current: set[str] = set()
# which function this invocation is: a receiver point must not fire in a processor that already has the message
# (it also makes UpdateItem calls) before the receiver's own call, which would spend the kill on the wrong instance
_function: list[str] = ["receiver"]


def _event_ids(event: dict[str, Any]) -> set[str]:
    if "Records" in event:
        return {
            str(record["messageAttributes"]["event_id"]["stringValue"])
            for record in event["Records"]
            if "event_id" in record.get("messageAttributes", {})
        }
    headers = {str(name).lower(): value for name, value in (event.get("headers") or {}).items()}
    return {str(headers["x-klikit-event-id"])} if "x-klikit-event-id" in headers else set()


def _kill_once(event_id: str) -> None:
    marker = Path(os.environ[KILL_DIR_ENV]) / f"killed-{event_id}"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return  # killed once already: this is klikit's retry or SQS's redelivery
    os.kill(os.getpid(), signal.SIGKILL)


def _hook(point: str) -> Any:
    from klikit.archive import id_hash

    def at_point(**kwargs: Any) -> None:
        params = kwargs.get("params") or {}
        for event_id in sorted(_current):
            if not any(
                event_id.startswith(prefix) and KILL_POINTS[prefix] == (_function[0], point) for prefix in KILL_POINTS
            ):
                continue
            if point.endswith("s3.PutObject") and id_hash(event_id) not in str(params.get("Key", "")):
                continue  # an archive object without this record (klikit.archive: its name carries the id's hash)
            _kill_once(event_id)

    return at_point


def _count(event: Any) -> None:
    line = f"{event.event_id} {event.order_id}\n".encode()
    descriptor = os.open(Path(os.environ[KILL_DIR_ENV]) / EFFECTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, line)  # one write with O_APPEND: lines from several instances never interleave
    finally:
        os.close(descriptor)


def _remember(event: dict[str, Any]) -> None:
    _current.clear()
    _current.update(_event_ids(event))
    _function[0] = "processor" if "Records" in event else "receiver"
    folder = Path(os.environ[KILL_DIR_ENV])
    for event_id in _current:
        if event_id.startswith(SLOW_PREFIX) and "Records" not in event:
            (folder / f"invoked-{event_id}").touch()
            time.sleep(float(event_id.split("-")[1]))
    held = sorted(event_id for event_id in _current if event_id.startswith(HOLD_PREFIX))
    if held and "Records" in event:
        for event_id in held:
            (folder / f"holding-{event_id}").touch()
        while not (folder / RELEASE_FILE).exists():
            time.sleep(0.05)


def instance(argv: list[str]) -> None:
    import boto3

    from tools.local.instance import main

    boto3.setup_default_session()  # the handlers' clients come from the default session: hooked before they exist
    assert boto3.DEFAULT_SESSION is not None
    for point in {point for _, point in KILL_POINTS.values()}:
        boto3.DEFAULT_SESSION.events.register(point, _hook(point))
    if "processor.handler" in " ".join(argv):
        from processor.registry import REGISTRY

        REGISTRY.on(*EVENT_TYPES, name=COUNTER_NAME)(_count)
    main(argv, before_invoke=_remember)


def stack(argv: list[str]) -> int:
    from tools.cli import main
    from tools.local import instances

    instances.INSTANCE_MODULE = "tests.reliability.kill_points"
    return main(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["local"]:
        sys.exit(stack(sys.argv[1:]))
    instance(sys.argv[1:])
