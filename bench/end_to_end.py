"""End to end on the local stack at fixed rates: 10% duplicates, a few forged deliveries, 60 s per rate.

The parent starts `python -m tools.cli local` (moto; the gateway handing each request to one of the receiver's
instances, each its own process; pollers feeding the processor's instances) on a free port with a state
directory of its own, then, for each rate in turn on the same stack, runs the load worker
(`python -m bench.end_to_end load PORT STATE_DIR SECONDS CONNECTIONS RATE`). The load is open-loop, as klikit's is:
a delivery starts every 1/RATE s whether or not earlier ones were answered, each on its own connection, up to
CONNECTIONS at once (more than the acks in flight at any rate that meets the target), so a slow stack does not slow
the offered rate; a delivery that could not start on time is counted (`late starts`), and the rate actually sent
is reported next to the offered one. Every delivery is a new signed created.v2 about a new order (~5 KB), except
~10% that repeat an earlier acknowledged delivery byte for byte and ~2% signed with the wrong secret. After each
load it waits for the queue to drain and checks, from the processor's log, that every acknowledged event id was
processed and its effect (the example handler's kitchen ticket) happened exactly once, and that the DLQ is empty.

The rates: 25/s and 50/s (the target: p99 ack <= 250 ms at 50/s), then higher ones (30 s each) while they meet it,
or, when one misses, rates between the highest that met it and the lowest that missed (30 s each, to 5/s): the
highest rate that kept p99 <= 250 ms with nothing lost, doubled or refused is reported. A 10 s warm-up at 50/s
comes first and is not reported: the figures are the steady state.

For each rate the parent also reads the CPU time (/proc, user + system) of every process of the stack before and
after the load and its drain: CPU per delivery by process (moto, the receiver's instances, the processor's, the
gateway with the pollers), the measure that holds on a shared machine where latencies do not.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import workload

DUPLICATE_SHARE = 0.10
FORGED_SHARE = 0.02
WINDOW_SECONDS = 10
DRAIN_TIMEOUT_SECONDS = 300
P99_TARGET_MS = 250.0
PROCESSED = "delivery processed"  # once per processing of a delivery: twice when SQS delivers a message twice
EFFECT = "kitchen ticket"  # the example user handler's effect (functions/processor/integrations.py): once, ever
RATES = (25.0, 50.0)  # deliveries/s, 60 s each
HIGHER_RATES = (75.0, 100.0, 125.0, 150.0)  # 30 s each, while they meet the target
PROBE_STEP = 5.0  # deliveries/s: the resolution of the search between a rate that met the target and one that missed
PROBES = 3  # at most this many rates in that search
RECEIVERS = 24  # receiver instances at most: 50/s at 250 ms is 12.5 in flight, and a burst needs room above it
CONNECTIONS = 60  # deliveries in flight at most: 1.2 s of acks at 50/s, and the limit is never the generator's
# Unmeasured load first: the figures are the steady state, with the instances a steady load keeps warm (each cold
# start is counted once, in the warm-up, instead of in whichever rate first needs another instance).
WARM_UP_SECONDS = 10.0
LATE_START_SECONDS = 0.05  # a delivery that starts this much after its time was held up by the generator


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, float]:
    parts = urlsplit(url)
    started = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=15)
    try:
        connection.request("POST", parts.path, body=body, headers=headers)
        response = connection.getresponse()
        reply = response.read().decode("utf-8", "replace")
        return response.status, reply, time.perf_counter() - started
    finally:
        connection.close()


def headers_for(body: bytes, event_id: str, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Klikit-Signature": workload.sign(secret, body),
        "X-Klikit-Event-Id": event_id,
        "X-Klikit-Event-Type": workload.ORDER_CREATED,
    }


def load(port: int, state_dir: Path, seconds: float, connections: int, rate: float) -> dict[str, Any]:
    state = json.loads((state_dir / f"stack-{port}" / "stack.json").read_text())
    url = state["webhook_url"]
    log = Path(state["directory"]) / "processor.log"
    offset = log.stat().st_size if log.exists() else 0  # this phase's lines only: the stack served earlier ones
    lock = threading.Lock()
    acknowledged: list[tuple[bytes, dict[str, str]]] = []  # new deliveries acked, for duplicates
    results: list[dict[str, Any]] = []
    first_order = 10_000_000 + int(time.time()) % 100_000 * 10_000  # each rate its own orders: new, never stale
    order_ids = iter(range(first_order, first_order + 10_000))
    rng = random.Random(int(rate * 1000))
    free = threading.BoundedSemaphore(connections)
    late = LATE_START_SECONDS

    def deliver(scheduled: float, draw: float) -> None:
        try:
            with lock:
                earlier = rng.choice(acknowledged) if acknowledged and draw < DUPLICATE_SHARE else None
                order_id = next(order_ids)
            if earlier is not None:
                kind, (body, headers) = "duplicate", earlier
            elif draw > 1 - FORGED_SHARE:
                body = workload.order_body(5_000, order_id=order_id)
                kind, headers = "forged", headers_for(body, f"bench-{uuid.uuid4()}", "not-the-secret")
            else:
                body = workload.order_body(5_000, order_id=order_id)
                kind, headers = "new", headers_for(body, f"bench-{uuid.uuid4()}", workload.SECRET)
            lag = time.monotonic() - scheduled
            try:
                status, reply, latency = post(url, body, headers)
            except OSError as exc:
                status, reply, latency = 0, type(exc).__name__, 0.0
            expected = {"new": '"received"', "duplicate": '"duplicate-ignored"', "forged": "invalid signature"}[kind]
            ok = (status == 401 if kind == "forged" else status == 200) and expected in reply
            with lock:
                results.append(
                    {
                        "kind": kind,
                        "at": scheduled - started,
                        "late": lag > late,
                        "status": status,
                        "ok": ok,
                        "ms": latency * 1000,
                        "event_id": headers["X-Klikit-Event-Id"],
                    }
                )
                if kind == "new" and ok:
                    acknowledged.append((body, headers))
        finally:
            free.release()

    threads = []
    started = time.monotonic()
    for number in range(round(seconds * rate)):
        scheduled = started + number / rate
        pause = scheduled - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        free.acquire()  # all connections busy: this delivery starts late, and says so
        thread = threading.Thread(target=deliver, args=(scheduled, rng.random()), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    accepted_ids = {r["event_id"] for r in results if r["kind"] == "new" and r["ok"]}
    processed, drain_seconds = _drain(log, offset, accepted_ids)
    effects = _counted(log, offset, EFFECT)
    dlq_depth = _depth(state, "dlq_url")
    still_queued = _depth(state, "queue_url")
    return {
        "seconds": elapsed,
        "requests": results,
        "unique_acknowledged": len(accepted_ids),
        "processed_once": sum(1 for event_id in accepted_ids if effects.get(event_id) == 1),
        "lost": sorted(event_id for event_id in accepted_ids if event_id not in processed),
        "doubled": sorted(event_id for event_id, count in effects.items() if count > 1),
        "redelivered": sum(count - 1 for count in processed.values() if count > 1),
        "unexpected_processed": sorted(set(processed) - accepted_ids),
        "drain_seconds": drain_seconds,
        "dlq_depth": dlq_depth,
        "still_queued": still_queued,  # acknowledged but not processed when the drain window closed: late, not lost
    }


def _counted(log: Path, offset: int, message: str) -> collections.Counter[str]:
    """Log lines with this message per event id, from `offset` on."""
    counts: collections.Counter[str] = collections.Counter()
    if not log.exists():
        return counts
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", "replace")
    for line in text.splitlines():
        if f'"{message}"' not in line:
            continue
        try:
            record = json.loads(line.split("\t", 1)[-1])  # the local stack prefixes each line with a timestamp
        except ValueError:
            continue
        if record.get("message") == message and record.get("event_id"):
            counts[record["event_id"]] += 1
    return counts


def _drain(log: Path, offset: int, expected: set[str]) -> tuple[collections.Counter[str], float]:
    """Wait until every acknowledged event id was processed (or no progress for a while)."""
    started = time.monotonic()
    last_count, last_change = -1, started
    while True:
        processed = _counted(log, offset, PROCESSED)
        done = sum(1 for event_id in expected if event_id in processed)
        now = time.monotonic()
        if done != last_count:
            last_count, last_change = done, now
        if done == len(expected) or now - last_change > 30 or now - started > DRAIN_TIMEOUT_SECONDS:
            time.sleep(2)  # a late second processing of an id would show up now
            return _counted(log, offset, PROCESSED), now - started
        time.sleep(1)


def _depth(state: dict[str, Any], queue: str) -> int:
    import boto3

    sqs = boto3.Session(region_name=workload.REGION).client("sqs", endpoint_url=state["moto_endpoint"])
    attributes = sqs.get_queue_attributes(
        QueueUrl=state["resources"][queue],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


# The stack's processes by what they run (their command lines): CPU per delivery is reported per role.
ROLES = (
    ("moto", "tools.local.moto_server"),
    ("receiver instances", "klikit-local-receiver"),
    ("processor instances", "klikit-local-processor"),
)
STACK_ROLE = "gateway + pollers"  # the stack's own process
OTHER_ROLE = "other (fake klikit API)"


def _cpu_seconds(stack_pid: int) -> dict[str, float]:
    """CPU time (user + system, from /proc) of the stack and every process under it, summed by role.

    Includes processes that ended since (instances replaced after a crash are not in it: a steady load has none).
    """
    children: dict[int, list[int]] = collections.defaultdict(list)
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = fields
        children[int(fields[1])].append(int(entry.name))
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = collections.defaultdict(float)
    pending = [stack_pid]
    while pending:
        pid = pending.pop()
        pending += children[pid]
        if pid not in stats:
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        role = STACK_ROLE if pid == stack_pid else next((r for r, mark in ROLES if mark in command), OTHER_ROLE)
        totals[role] += (int(stats[pid][11]) + int(stats[pid][12])) / tick  # utime, stime
    return dict(totals)


@dataclass(frozen=True)
class Phase:
    rate: float
    seconds: float
    connections: int
    result: dict[str, Any]
    load_average: str  # `uptime`'s three figures right after the phase: the machine is shared
    cpu_seconds: dict[str, float]  # CPU of the stack's processes during the load and its drain, by role

    @property
    def sent_rate(self) -> float:
        return len(self.result["requests"]) / self.seconds

    @property
    def late_starts(self) -> int:
        return sum(1 for r in self.result["requests"] if r["late"])

    def cpu_ms_per_delivery(self) -> dict[str, float]:
        deliveries = max(1, len(self.result["requests"]))
        return {role: 1000 * seconds / deliveries for role, seconds in self.cpu_seconds.items()}

    @property
    def signed_ms(self) -> list[float]:
        """Ack latencies: signed deliveries answered as expected (a throttled one's quick 500 is an error instead)."""
        return [r["ms"] for r in self.result["requests"] if r["kind"] != "forged" and r["ok"]]

    def p(self, pct: float) -> float:
        from bench.stats import percentile

        return percentile(self.signed_ms, pct) if self.signed_ms else float("inf")  # nothing acknowledged

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.result["requests"] if not r["ok"]]

    @property
    def lost(self) -> int:
        """Acknowledged, not processed, and no longer on the queue (still queued is late, not lost)."""
        return max(0, len(self.result["lost"]) - self.result["still_queued"])

    @property
    def wrong(self) -> int:
        """Lost, doubled or unexpected processings, plus anything left in the DLQ."""
        result = self.result
        return self.lost + len(result["doubled"]) + len(result["unexpected_processed"]) + result["dlq_depth"]

    @property
    def met(self) -> bool:
        sent = self.sent_rate >= 0.95 * self.rate
        return sent and self.p(99) <= P99_TARGET_MS and not self.errors and self.wrong == 0


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _start_stack(state_dir: Path, port: int) -> subprocess.Popen[bytes]:
    from bench.harness import REPO, WorkerFailed, worker_env

    out = (state_dir / "stack.out").open("wb")
    command = [sys.executable, "-m", "tools.cli", "local", "--port", str(port), "--state-dir", str(state_dir)]
    stack = subprocess.Popen(
        [*command, "--secret", workload.SECRET, "--receivers", str(RECEIVERS)],
        cwd=REPO,
        env=worker_env(),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    ready = state_dir / f"stack-{port}" / "stack.json"
    deadline = time.monotonic() + 60
    while not ready.exists():
        if stack.poll() is not None or time.monotonic() > deadline:
            tail = (state_dir / "stack.out").read_text(errors="replace")[-2000:]
            raise WorkerFailed(f"the local stack did not start:\n{tail}")
        time.sleep(0.2)
    return stack


def _phase(port: int, state_dir: Path, stack_pid: int, rate: float, seconds: float) -> Phase:
    from bench.harness import run_worker

    args = [str(port), str(state_dir), str(seconds), str(CONNECTIONS), str(rate)]
    before = _cpu_seconds(stack_pid)
    result = run_worker("bench.end_to_end", ["load", *args], timeout=seconds + DRAIN_TIMEOUT_SECONDS + 60)
    after = _cpu_seconds(stack_pid)
    cpu = {role: after[role] - before.get(role, 0.0) for role in after}
    return Phase(rate, result["seconds"], CONNECTIONS, result, _load_average(), cpu)


def _next_probe(phases: list[Phase]) -> float | None:
    """A rate halfway between the highest that met the target and the lowest that missed, or None when close."""
    met = [phase.rate for phase in phases if phase.met]
    missed = [phase.rate for phase in phases if not phase.met and phase.rate > max(met, default=0.0)]
    low, high = max(met, default=0.0), min(missed, default=0.0)
    if not missed or high - low <= PROBE_STEP:
        return None
    middle = round((low + high) / 2 / PROBE_STEP) * PROBE_STEP
    return middle if low < middle < high else None


def run(quick: bool) -> list[Any]:
    import tempfile

    seconds, higher_seconds = (10.0, 10.0) if quick else (60.0, 30.0)
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="klikit-bench-e2e-") as tmp:
        state_dir = Path(tmp)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        stack = _start_stack(state_dir, port)
        try:
            _phase(port, state_dir, stack.pid, RATES[-1], WARM_UP_SECONDS / (2 if quick else 1))  # not reported
            for rate in RATES:
                phases.append(_phase(port, state_dir, stack.pid, rate, seconds))
            for rate in () if quick else HIGHER_RATES:
                if not phases[-1].met:
                    break
                phases.append(_phase(port, state_dir, stack.pid, rate, higher_seconds))
            for _ in range(0 if quick else PROBES):
                probe_rate = _next_probe(phases)
                if probe_rate is None:
                    break
                phases.append(_phase(port, state_dir, stack.pid, probe_rate, higher_seconds))
        finally:
            stack.send_signal(signal.SIGINT)
            try:
                stack.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stack.kill()
                stack.wait()
    return _figures(phases)


def _cpu_figure(phase: Phase) -> Any:
    from bench.report import Figure
    from bench.stats import Summary

    per_role = phase.cpu_ms_per_delivery()
    total = sum(per_role.values())
    parts = ", ".join(f"{role} {ms:.1f}" for role, ms in sorted(per_role.items(), key=lambda item: -item[1]))
    return Figure(
        f"e2e.{phase.rate:g}.cpu_ms_per_delivery",
        f"  at {phase.rate:g}/s: CPU per delivery, all the stack's processes (load + drain)",
        "ms",
        Summary.of([total]),
        extra={"by_process_ms": per_role},
        note=f"ms by process: {parts}",
    )


def _figures(phases: list[Phase]) -> list[Any]:
    from bench.report import Figure, Target
    from bench.stats import Summary, percentile

    figures = []
    for phase in sorted(phases, key=lambda phase: phase.rate):
        rate = f"{phase.rate:g}"
        result = phase.result
        requests = result["requests"]
        kinds = collections.Counter(r["kind"] for r in requests)
        windows: dict[int, list[float]] = collections.defaultdict(list)
        for r in requests:
            if r["kind"] != "forged" and r["ok"]:
                windows[int(r["at"] // WINDOW_SECONDS)].append(r["ms"])
        window_p99 = [percentile(values, 99) for values in windows.values() if len(values) >= 10]
        spread = (
            f"{WINDOW_SECONDS} s windows: {min(window_p99):.0f} .. {max(window_p99):.0f} ms" if window_p99 else None
        )
        lost, doubled = phase.lost, len(result["doubled"])
        statuses = collections.Counter(r["status"] for r in phase.errors)  # 500: throttled, 0: no reply
        target_p99 = Target(P99_TARGET_MS) if phase.rate in RATES else None
        figures += [
            Figure(
                f"e2e.{rate}.deliveries_per_second",
                f"at {rate}/s offered (open loop): deliveries sent/s ({phase.seconds:.0f} s)",
                "/s",
                Summary.of([phase.sent_rate]),
                target=Target(phase.rate * 0.95, at_most=False),
                extra={"kinds": dict(kinds), "load_average": phase.load_average, "late_starts": phase.late_starts},
                note=f"{kinds['new']} new, {kinds['duplicate']} duplicates, {kinds['forged']} forged; "
                f"{phase.late_starts} started > {LATE_START_SECONDS * 1000:.0f} ms late "
                f"({phase.connections} connections at most); load average after: {phase.load_average}",
            ),
            Figure(
                f"e2e.{rate}.ack_p50_ms", f"  at {rate}/s: ack latency p50 (signed)", "ms", Summary.of([phase.p(50)])
            ),
            Figure(
                f"e2e.{rate}.ack_p99_ms",
                f"  at {rate}/s: ack latency p99 (signed)",
                "ms",
                Summary.of([phase.p(99)]),
                target=target_p99,
                spread=spread,
                extra={"window_p99_ms": window_p99, "max_ms": max(phase.signed_ms, default=0.0)},
            ),
            Figure(
                f"e2e.{rate}.errors",
                f"  at {rate}/s: unexpected replies",
                "count",
                Summary.of([len(phase.errors)]),
                target=Target(0),
                extra={"examples": phase.errors[:5], "statuses": dict(statuses)},
                note=", ".join(f"{count} x {status or 'no reply'}" for status, count in statuses.most_common()),
            ),
            Figure(
                f"e2e.{rate}.lost_or_doubled",
                f"  at {rate}/s: lost + doubled (processed once = acked)",
                "count",
                Summary.of([phase.wrong]),
                target=Target(0),
                extra={
                    "unique_acknowledged": result["unique_acknowledged"],
                    "processed_once": result["processed_once"],
                    "lost": result["lost"][:20],
                    "doubled": result["doubled"][:20],
                    "unexpected_processed": result["unexpected_processed"][:20],
                    "dlq_depth": result["dlq_depth"],
                    "drain_seconds": result["drain_seconds"],
                    "redelivered": result["redelivered"],
                    "still_queued": result["still_queued"],
                },
                note=f"{result['processed_once']} of {result['unique_acknowledged']} acknowledged: effect once; "
                f"{lost} lost, {doubled} doubled, {result['redelivered']} redelivered by SQS, "
                f"DLQ {result['dlq_depth']}; {result['still_queued']} still queued "
                f"{result['drain_seconds']:.0f} s after the load (late, not lost)",
            ),
            _cpu_figure(phase),
        ]
    kept = [phase.rate for phase in phases if phase.met]
    tried = ", ".join(f"{phase.rate:g}/s ({'met' if phase.met else 'missed'})" for phase in phases)
    figures.append(
        Figure(
            "e2e.highest_rate",
            "highest rate with p99 <= 250 ms, nothing lost, doubled or refused",
            "/s",
            Summary.of([max(kept)]) if kept else None,
            target=Target(50, at_most=False),
            missing="no rate met it",
            note=f"tried {tried}",
        )
    )
    return figures


if __name__ == "__main__":
    from bench.harness import worker_main

    def main(args: list[str]) -> dict[str, Any]:
        assert args[0] == "load"
        return load(int(args[1]), Path(args[2]), float(args[3]), int(args[4]), float(args[5]))

    worker_main(main)
