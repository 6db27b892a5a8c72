"""Across processes, as AWS runs the functions: the local stack's receiver and processor instances are separate
interpreters racing on one moto, and instances die by SIGKILL at chosen points (tests/reliability/kill_points.py).

klikit is played over real HTTP: it retries any non-2xx (API Gateway's 502 for a dead instance, its 500 for a
throttled one, the receiver's 409 while an event id is held). The effect counted is a user handler registered
in every processor instance; the projection is read through the CLI.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from klikit.signature import sign
from tests.conftest import load_json
from tests.local.conftest import LocalStack, eventually, port_is_free, start_stack
from tests.reliability.kill_points import EFFECTS_FILE, HOLD_PREFIX, KILL_DIR_ENV, RELEASE_FILE
from tools.local.state import LOCAL_DEFAULT_SECRET, WEBHOOK_PATH

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("instances")]

RECEIVERS = 4
CREATED = "klikit.order.created.v2"
RETRY_FOR_SECONDS = 30.0  # past the receiver's 7 s timeout, after which a held event id is free again
SETTLE_SECONDS = 2.0  # a second processing of something would show by now (visibility timeout 1 s)

_orders = iter(range(930_000, 940_000))


@pytest.fixture(scope="module")
def kill_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kills")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, kill_dir: Path) -> Iterator[LocalStack]:
    running = start_stack(
        tmp_path_factory.mktemp("instances"),
        "--visibility-timeout", "1", "--receivers", str(RECEIVERS),
        module="tests.reliability.kill_points",
        env={KILL_DIR_ENV: str(kill_dir)},
    )  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


def body_for(order_id: int) -> bytes:
    document = load_json("order_created_v2_batch.json")
    document["orders"] = [{**document["orders"][0], "id": order_id}]
    return json.dumps(document).encode()


def post(stack: LocalStack, body: bytes, event_id: str) -> tuple[int, dict[str, Any]]:
    headers = {
        "Content-Type": "application/json",
        "x-klikit-signature": sign(LOCAL_DEFAULT_SECRET, body),
        "x-klikit-event-id": event_id,
        "x-klikit-event-type": CREATED,
    }
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    try:
        connection.request("POST", WEBHOOK_PATH, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def deliver(stack: LocalStack, body: bytes, event_id: str) -> list[tuple[int, dict[str, Any]]]:
    """klikit: POST, and retry every non-2xx until a 2xx."""
    replies = []
    deadline = time.monotonic() + RETRY_FOR_SECONDS
    while time.monotonic() < deadline:
        replies.append(post(stack, body, event_id))
        if 200 <= replies[-1][0] < 300:
            return replies
        time.sleep(0.5)
    pytest.fail(f"klikit never got a 2xx for {event_id}: {replies}")


def at_once(count: int, work: Any) -> list[Any]:
    """`work(n)` in `count` threads released together, so the requests overlap; their results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(number: int) -> None:
        barrier.wait()
        results[number] = work(number)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def effects(kill_dir: Path) -> Counter[tuple[str, str]]:
    path = kill_dir / EFFECTS_FILE
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter((event_id, order_id) for event_id, order_id in (line.split() for line in lines))


def effects_settled(kill_dir: Path, expected: set[tuple[str, str]]) -> Counter[tuple[str, str]]:
    eventually(lambda: expected <= set(effects(kill_dir)), f"the handler to run for {sorted(expected)}")
    time.sleep(SETTLE_SECONDS)
    counted = effects(kill_dir)
    return Counter({key: counted[key] for key in expected})


def cold_starts(stack: LocalStack, kind: str) -> int:
    """The console's `cold start` lines for the function's instances."""
    return sum(" cold start " in line and f" {kind} instance " in line for line in stack.output().splitlines())


def test_concurrent_deliveries_of_one_event_id_on_separate_instances_admit_exactly_one(
    stack: LocalStack, kill_dir: Path
) -> None:
    warm = at_once(RECEIVERS, lambda n: post(stack, body_for(next(_orders)), f"warm-{uuid.uuid4().hex[:12]}"))
    assert [status for status, _ in warm] == [200] * RECEIVERS  # each request started its own instance
    assert cold_starts(stack, "receiver") >= RECEIVERS
    order_id, event_id = next(_orders), f"race-{uuid.uuid4().hex[:12]}"
    body = body_for(order_id)

    first = at_once(RECEIVERS, lambda n: post(stack, body, event_id))
    retried = [deliver(stack, body, event_id)[-1] if status == 409 else (status, reply) for status, reply in first]

    outcomes = Counter(reply.get("status") for _, reply in retried)
    assert outcomes == Counter({"received": 1, "duplicate-ignored": RECEIVERS - 1}), first
    assert effects_settled(kill_dir, {(event_id, str(order_id))}) == Counter({(event_id, str(order_id)): 1})
    assert stack.steps_for(event_id).count("received") == 1


def test_one_body_under_different_event_ids_on_separate_instances_is_one_order_fact(
    stack: LocalStack, kill_dir: Path
) -> None:
    order_id = next(_orders)
    body = body_for(order_id)
    event_ids = [f"same-body-{n}-{uuid.uuid4().hex[:12]}" for n in range(RECEIVERS)]

    replies = at_once(RECEIVERS, lambda n: deliver(stack, body, event_ids[n])[-1])

    assert [reply for _, reply in replies] == [{"status": "received"}] * RECEIVERS  # distinct ids: distinct deliveries
    keys = {(event_id, str(order_id)) for event_id in event_ids}
    eventually(lambda: keys & set(effects(kill_dir)), "the user handler to run")
    time.sleep(SETTLE_SECONDS)
    counted = effects(kill_dir)
    assert sum(counted[key] for key in keys) == 1  # once per signed order fact, whatever the unsigned event id
    order = stack.order(order_id)
    assert order is not None and order["last_event_id"] in event_ids

    def replays() -> int:
        logs = stack.cli("logs", "--function", "processor", "--filter", "under another event id").out
        return sum(event_id in logs for event_id in event_ids)

    # the projection applied exactly one; the other three were recognised as the same body under a new id (their
    # warnings name their own id and, as the earlier one, the id that applied it: every id appears)
    eventually(lambda: replays() == RECEIVERS, "the other deliveries to be counted as replays")


@pytest.mark.parametrize(
    ("point", "retried_reply"),
    [
        ("kill-before-enqueue", {"status": "received"}),  # nothing was queued: the retry queues it
        ("kill-during-enqueue", {"status": "received"}),  # queued once by the dead instance, once by the retry
        ("kill-after-enqueue", {"status": "duplicate-ignored"}),  # queued and recorded: the retry is a duplicate
    ],
)
def test_a_receiver_instance_killed_around_its_enqueue_loses_nothing_and_doubles_nothing(
    stack: LocalStack, kill_dir: Path, point: str, retried_reply: dict[str, str]
) -> None:
    order_id, event_id = next(_orders), f"{point}-{uuid.uuid4().hex[:12]}"
    starts = cold_starts(stack, "receiver")

    replies = deliver(stack, body_for(order_id), event_id)

    assert replies[0] == (502, {"message": "Internal server error"})  # API Gateway's answer for a dead instance
    assert all(status in (409, 502) for status, _ in replies[1:-1]), replies
    assert replies[-1] == (200, retried_reply)
    assert (kill_dir / f"killed-{event_id}").exists()
    assert cold_starts(stack, "receiver") > starts or stack.output().count("instance died") >= 1
    assert effects_settled(kill_dir, {(event_id, str(order_id))}) == Counter({(event_id, str(order_id)): 1})
    order = stack.order(order_id)
    assert order is not None and order["last_event_id"] == event_id
    assert not [line for line in stack.cli("dlq", "list", "--json").out.splitlines() if event_id in line]


def test_a_processor_instance_killed_mid_batch_redoes_only_what_was_not_done(stack: LocalStack, kill_dir: Path) -> None:
    hold = f"{HOLD_PREFIX}{uuid.uuid4().hex[:12]}"
    assert deliver(stack, body_for(next(_orders)), hold)[-1][0] == 200
    eventually(lambda: (kill_dir / f"holding-{hold}").exists(), "the poller to hold a batch")
    names = ("batch-a", "kill-mid-batch", "batch-c")
    deliveries = [(next(_orders), f"{name}-{uuid.uuid4().hex[:12]}") for name in names]
    for order_id, event_id in deliveries:  # they wait on the queue: its one poller is busy, its batch was not full
        assert deliver(stack, body_for(order_id), event_id)[-1] == (200, {"status": "received"})

    (kill_dir / RELEASE_FILE).touch()

    expected = {(event_id, str(order_id)) for order_id, event_id in deliveries}
    assert effects_settled(kill_dir, expected) == Counter(dict.fromkeys(expected, 1))
    assert (kill_dir / f"killed-{deliveries[1][1]}").exists()
    killed_batch = [event_id for _, event_id in deliveries if "retrying" in stack.steps_for(event_id)]
    assert deliveries[1][1] in killed_batch and len(killed_batch) >= 2  # it died with other records in its batch
    assert "Runtime exited with signal SIGKILL" in stack.cli("logs", "--function", "processor").out
    for order_id, event_id in deliveries:
        order = stack.order(order_id)
        assert order is not None and order["last_event_id"] == event_id
    assert stack.cli("dlq", "list", "--json").out.strip() == ""


# --- throttling, timeouts, stopping ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, kill_dir: Path) -> Iterator[LocalStack]:
    """A stack whose receiver has one instance at most."""
    running = start_stack(
        tmp_path_factory.mktemp("single"), "--receivers", "1",
        module="tests.reliability.kill_points", env={KILL_DIR_ENV: str(kill_dir)},
    )  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


def in_background(work: Any) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(work()))
    thread.start()
    return thread, results


def instance_pids(stack: LocalStack, kind: str = r"\w+") -> set[int]:
    """The pids of the instances the console announced (`cold start   receiver instance 2 (pid 1234) ...`)."""
    return {int(pid) for pid in re.findall(rf"cold start +{kind} instance \d+ \(pid (\d+)\)", stack.output())}


def test_above_the_receiver_concurrency_a_request_is_throttled_as_api_gateway_answers_it(
    single: LocalStack, kill_dir: Path
) -> None:
    slow_id, throttled_id = f"slow-3-{uuid.uuid4().hex[:12]}", f"throttled-{uuid.uuid4().hex[:12]}"
    thread, slow = in_background(lambda: post(single, body_for(next(_orders)), slow_id))
    eventually(lambda: (kill_dir / f"invoked-{slow_id}").exists(), "the one instance to take the slow request")

    throttled = post(single, body_for(next(_orders)), throttled_id)
    thread.join()

    assert throttled == (500, {"message": "Internal server error"})  # Lambda's 429, as API Gateway passes it on
    assert single.steps_for(throttled_id) == ["throttled"]
    assert slow == [(200, {"status": "received"})]
    assert deliver(single, body_for(next(_orders)), throttled_id)[-1] == (200, {"status": "received"})


def test_a_receiver_instance_past_its_timeout_is_replaced_and_its_request_gets_a_502(single: LocalStack) -> None:
    event_id = f"slow-10-{uuid.uuid4().hex[:12]}"  # longer than the receiver's 7 s timeout

    reply = post(single, body_for(next(_orders)), event_id)
    before = instance_pids(single, "receiver")  # the one that timed out among them
    after = post(single, body_for(next(_orders)), f"after-timeout-{uuid.uuid4().hex[:12]}")

    assert reply == (502, {"message": "Internal server error"})
    assert single.steps_for(event_id) == ["unavailable"]
    assert "timed out" in next(line for line in single.output().splitlines() if line.endswith(f"[evt {event_id}]"))
    assert after == (200, {"status": "received"})
    assert len(instance_pids(single, "receiver") - before) == 1  # a new instance took the next request
    assert "Task timed out after 7 seconds" in single.cli("logs", "--function", "receiver").out


def test_ctrl_c_lets_the_request_in_flight_finish_then_stops_everything(tmp_path: Path, kill_dir: Path) -> None:
    stack = start_stack(tmp_path, module="tests.reliability.kill_points", env={KILL_DIR_ENV: str(kill_dir)})
    moto_port = int(stack.state.moto_endpoint.rsplit(":", 1)[1])
    event_id = f"slow-2-{uuid.uuid4().hex[:12]}"
    thread, replies = in_background(lambda: post(stack, body_for(next(_orders)), event_id))
    eventually(lambda: (kill_dir / f"invoked-{event_id}").exists(), "the request to reach an instance")

    stack.process.send_signal(signal.SIGINT)
    thread.join()
    code = stack.process.wait(timeout=60)

    assert replies == [(200, {"status": "received"})]  # answered, and recorded: moto was still up
    assert code == 0
    assert stack.steps_for(event_id) == ["received"]
    assert "stopped: nothing left running" in stack.output()
    receiver_log = (Path(stack.state.directory) / "receiver.log").read_text()
    assert '"level":"ERROR"' not in receiver_log
    assert port_is_free(stack.port) and port_is_free(moto_port)
    assert not [pid for pid in instance_pids(stack) if alive(pid)]


def test_kill_9_of_the_stack_leaves_no_moto_and_no_instance_running(tmp_path: Path) -> None:
    stack = start_stack(tmp_path)
    moto_port = int(stack.state.moto_endpoint.rsplit(":", 1)[1])
    assert deliver(stack, body_for(next(_orders)), f"before-kill-{uuid.uuid4().hex[:12]}")[-1][0] == 200
    eventually(lambda: len(instance_pids(stack)) >= 1, "an instance to start")
    children = instance_pids(stack)

    stack.process.kill()
    stack.process.wait()

    eventually(lambda: port_is_free(moto_port), "moto to exit with its parent")
    eventually(lambda: not [pid for pid in children if alive(pid)], "the instances to exit with their parent")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
