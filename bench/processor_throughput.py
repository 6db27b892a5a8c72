"""Processor throughput: events per second through batches of 10, next to a baseline loop doing the same writes.

Worker (`python -m bench.processor_throughput ROUNDS BATCHES`): one interpreter, in-process moto, both warmed up;
each round hands each of them BATCHES batches of 10 new created.v2 events (one new order each, ~5 KB), batch by
batch in alternation. Per event both write the same things: the S3 archive, the effect's idempotency claim and
completion, and the order projection's conditional updates (counted and reported).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from bench import workload

BATCH_SIZE = 10
BODY_BYTES = 5_000


def measure(rounds: int, batches: int) -> dict[str, Any]:
    env = workload.start_moto()
    counter = workload.CallCounter()
    aws = workload.AwsTimer()
    from bench.baselines import BaselineProcessor
    from processor import handler

    baseline = BaselineProcessor(env)
    handlers = {"processor": handler.lambda_handler, "baseline": baseline.handle}
    context = workload.lambda_context(512)
    order_ids = itertools.count(1_000_000)

    own = dict.fromkeys(handlers, 0.0)  # seconds outside AWS calls

    def process(name: str, size: int = BATCH_SIZE) -> float:
        event = workload.sqs_batch(size, BODY_BYTES, first_order_id=next(order_ids) * BATCH_SIZE)
        aws.take()
        started = time.perf_counter()
        reply = handlers[name](event, context)
        elapsed = time.perf_counter() - started
        own[name] += elapsed - aws.take()
        if reply != {"batchItemFailures": []}:
            raise SystemExit(f"{name} failed records: {reply}")
        return elapsed

    for _ in range(3):
        for name in handlers:
            process(name)
    counter.take()
    calls = {name: process(name, 1) and counter.take() for name in handlers}

    results: dict[str, list[float]] = {name: [] for name in handlers}
    own_ms: dict[str, list[float]] = {name: [] for name in handlers}  # per event
    for _ in range(rounds):
        spent = dict.fromkeys(handlers, 0.0)
        own.update(dict.fromkeys(handlers, 0.0))
        for index in range(batches):
            for name in list(handlers)[:: 1 if index % 2 == 0 else -1]:
                spent[name] += process(name)
        for name in handlers:
            results[name].append(batches * BATCH_SIZE / spent[name])
            own_ms[name].append(own[name] * 1000 / (batches * BATCH_SIZE))
    return {"events_per_second": results, "own_ms_per_event": own_ms, "calls_per_event": calls}


def run(quick: bool) -> list[Any]:
    from bench.harness import run_worker
    from bench.report import Figure
    from bench.stats import Summary, ratios

    rounds, batches = (2, 3) if quick else (5, 10)
    result = run_worker("bench.processor_throughput", [str(rounds), str(batches)], timeout=400)
    real, base = result["events_per_second"]["processor"], result["events_per_second"]["baseline"]
    calls = result["calls_per_event"]
    same = calls["processor"] == calls["baseline"]
    return [
        Figure(
            "processor.events_per_second",
            "processor, batches of 10",
            "/s",
            Summary.of(real),
            extra={"events_per_round": batches * BATCH_SIZE, "calls_per_event": calls},
        ),
        Figure("processor.baseline_events_per_second", "  baseline loop, same writes", "/s", Summary.of(base)),
        Figure(
            "processor.overhead",
            "  time per event: processor / baseline",
            "x",
            Summary.of(ratios(base, real)),
            note="" if same else f"AWS calls per event: processor {calls['processor']}, baseline {calls['baseline']}",
        ),
        Figure(
            "processor.own_code_ms_per_event",
            "  own code per event (outside AWS calls)",
            "ms",
            Summary.of(result["own_ms_per_event"]["processor"]),
            extra={"baseline": Summary.of(result["own_ms_per_event"]["baseline"]).as_dict()},
            note="baseline's own code: {:.2f} ms".format(Summary.of(result["own_ms_per_event"]["baseline"]).median),
        ),
    ]


if __name__ == "__main__":
    from bench.harness import worker_main

    worker_main(lambda args: measure(int(args[0]), int(args[1])))
