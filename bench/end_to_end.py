"""End to end on the local stack: concurrent senders for 60 s, 10% duplicates, a few forged deliveries.

The parent starts `python -m tools.cli local` (moto, the real receiver behind HTTP, the queue worker feeding the
real processor) on a free port with a state directory of its own, then runs the load worker
(`python -m bench.end_to_end load PORT STATE_DIR SECONDS SENDERS RATE`): SENDERS threads, each pacing RATE
deliveries per second. Every delivery is a new signed created.v2 about a new order (~5 KB), except ~10% that
repeat an earlier acknowledged delivery byte for byte and ~2% signed with the wrong secret. After the load it
waits for the queue to drain and checks, from the processor's log, that every acknowledged event id was
processed exactly once, and that the DLQ is empty.
"""

from __future__ import annotations

import collections
import http.client
import json
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import workload

DUPLICATE_SHARE = 0.10
FORGED_SHARE = 0.02
WINDOW_SECONDS = 10
DRAIN_TIMEOUT_SECONDS = 180


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


def load(port: int, state_dir: Path, seconds: float, senders: int, rate: float) -> dict[str, Any]:
    state = json.loads((state_dir / f"stack-{port}" / "stack.json").read_text())
    url = state["webhook_url"]
    lock = threading.Lock()
    acknowledged: list[tuple[bytes, dict[str, str]]] = []  # new deliveries acked, for duplicates
    results: list[dict[str, Any]] = []
    order_ids = iter(range(10_000_000, 20_000_000))
    started = time.monotonic()
    deadline = started + seconds

    def sender(number: int) -> None:
        rng = random.Random(number)
        next_at = time.monotonic() + rng.random() / rate
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            if next_at > now:
                time.sleep(next_at - now)
            next_at += 1 / rate
            draw = rng.random()
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
            at = time.monotonic() - started
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
                        "at": at,
                        "status": status,
                        "ok": ok,
                        "ms": latency * 1000,
                        "event_id": headers["X-Klikit-Event-Id"],
                    }
                )
                if kind == "new" and ok:
                    acknowledged.append((body, headers))

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    accepted_ids = {r["event_id"] for r in results if r["kind"] == "new" and r["ok"]}
    processed, drain_seconds = _drain(Path(state["directory"]) / "processor.log", accepted_ids)
    dlq_depth = _dlq_depth(state)
    return {
        "seconds": elapsed,
        "requests": results,
        "unique_acknowledged": len(accepted_ids),
        "processed_once": sum(1 for event_id in accepted_ids if processed.get(event_id) == 1),
        "lost": sorted(event_id for event_id in accepted_ids if event_id not in processed),
        "doubled": sorted(event_id for event_id, count in processed.items() if count > 1),
        "unexpected_processed": sorted(set(processed) - accepted_ids),
        "drain_seconds": drain_seconds,
        "dlq_depth": dlq_depth,
    }


def _processed(log: Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    if not log.exists():
        return counts
    for line in log.read_text(encoding="utf-8").splitlines():
        if '"delivery processed"' not in line:
            continue
        try:
            record = json.loads(line.split("\t", 1)[-1])  # the local stack prefixes each line with a timestamp
        except ValueError:
            continue
        if record.get("message") == "delivery processed" and record.get("event_id"):
            counts[record["event_id"]] += 1
    return counts


def _drain(log: Path, expected: set[str]) -> tuple[collections.Counter[str], float]:
    """Wait until every acknowledged event id was processed (or no progress for a while)."""
    started = time.monotonic()
    last_count, last_change = -1, started
    while True:
        processed = _processed(log)
        done = sum(1 for event_id in expected if event_id in processed)
        now = time.monotonic()
        if done != last_count:
            last_count, last_change = done, now
        if done == len(expected) or now - last_change > 30 or now - started > DRAIN_TIMEOUT_SECONDS:
            time.sleep(2)  # a late second processing of an id would show up now
            return _processed(log), now - started
        time.sleep(1)


def _dlq_depth(state: dict[str, Any]) -> int:
    import boto3

    sqs = boto3.Session(region_name=workload.REGION).client("sqs", endpoint_url=state["moto_endpoint"])
    attributes = sqs.get_queue_attributes(
        QueueUrl=state["resources"]["dlq_url"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def run(quick: bool) -> list[Any]:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import tempfile

    from bench.harness import REPO, WorkerFailed, run_worker, worker_env
    from bench.report import Figure, Target
    from bench.stats import Summary, percentile

    seconds, senders, rate = (10, 4, 6.0) if quick else (60, 4, 6.0)
    SECRET = workload.SECRET
    with tempfile.TemporaryDirectory(prefix="klikit-bench-e2e-") as tmp:
        state_dir = Path(tmp)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        out = (state_dir / "stack.out").open("wb")
        stack = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "local", "--port", str(port), "--state-dir", tmp, "--secret", SECRET],
            cwd=REPO,
            env=worker_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            ready = state_dir / f"stack-{port}" / "stack.json"
            deadline = time.monotonic() + 60
            while not ready.exists():
                if stack.poll() is not None or time.monotonic() > deadline:
                    tail = (state_dir / "stack.out").read_text(errors="replace")[-2000:]
                    raise WorkerFailed(f"the local stack did not start:\n{tail}")
                time.sleep(0.2)
            args = [str(port), tmp, str(seconds), str(senders), str(rate)]
            result = run_worker("bench.end_to_end", ["load", *args], timeout=seconds + DRAIN_TIMEOUT_SECONDS + 60)
        finally:
            stack.send_signal(signal.SIGINT)
            try:
                stack.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(stack.pid, signal.SIGKILL)
                stack.wait()
            out.close()

    requests = result["requests"]
    signed = [r for r in requests if r["kind"] != "forged" and r["status"]]
    latencies = [r["ms"] for r in signed]
    windows: dict[int, list[float]] = collections.defaultdict(list)
    for r in signed:
        windows[int(r["at"] // WINDOW_SECONDS)].append(r["ms"])
    window_p99 = [percentile(values, 99) for values in windows.values() if len(values) >= 10]
    kinds = collections.Counter(r["kind"] for r in requests)
    errors = [r for r in requests if not r["ok"]]
    rate_all = len(requests) / result["seconds"]
    new_acked = result["unique_acknowledged"]
    lost, doubled = len(result["lost"]), len(result["doubled"])
    spread_p99 = f"10 s windows: {min(window_p99):.1f} .. {max(window_p99):.1f} ms" if window_p99 else "single run"
    return [
        Figure(
            "e2e.deliveries_per_second",
            f"deliveries sent/s ({senders} senders, {result['seconds']:.0f} s)",
            "/s",
            Summary.of([rate_all]),
            target=Target(20, at_most=False),
            extra={"kinds": dict(kinds)},
            note=f"{kinds['new']} new, {kinds['duplicate']} duplicates, {kinds['forged']} forged",
        ),
        Figure(
            "e2e.accepted_per_second", "  new deliveries accepted/s", "/s", Summary.of([new_acked / result["seconds"]])
        ),
        Figure(
            "e2e.ack_p50_ms",
            "  ack latency p50 (signed)",
            "ms",
            Summary.of([percentile(latencies, 50)]),
        ),
        Figure(
            "e2e.ack_p99_ms",
            "  ack latency p99 (signed)",
            "ms",
            Summary.of([percentile(latencies, 99)]),
            target=Target(250),
            spread=spread_p99,
            extra={"window_p99_ms": window_p99, "max_ms": max(latencies)},
        ),
        Figure(
            "e2e.errors",
            "  unexpected replies",
            "count",
            Summary.of([len(errors)]),
            target=Target(0),
            extra={"examples": errors[:5]},
        ),
        Figure(
            "e2e.lost_or_doubled",
            "  lost + doubled (processed once = acked)",
            "count",
            Summary.of([lost + doubled + len(result["unexpected_processed"])]),
            target=Target(0),
            extra={
                "unique_acknowledged": new_acked,
                "processed_once": result["processed_once"],
                "lost": result["lost"][:20],
                "doubled": result["doubled"][:20],
                "unexpected_processed": result["unexpected_processed"][:20],
                "dlq_depth": result["dlq_depth"],
                "drain_seconds": result["drain_seconds"],
            },
            note=f"{result['processed_once']} of {new_acked} acknowledged processed exactly once, {lost} lost, "
            f"{doubled} doubled, DLQ {result['dlq_depth']}, queue drained {result['drain_seconds']:.0f} s after load",
        ),
    ]


if __name__ == "__main__":
    from bench.harness import worker_main

    def main(args: list[str]) -> dict[str, Any]:
        assert args[0] == "load"
        return load(int(args[1]), Path(args[2]), float(args[3]), int(args[4]), float(args[5]))

    worker_main(main)
