"""Warm receiver: per-delivery latency of the real handler next to the hand-written boto3 baseline.

Worker (`python -m bench.warm_receiver BODY_BYTES ROUNDS PER_ROUND`): one interpreter, in-process moto, both
handlers warmed up, then each round sends PER_ROUND new signed deliveries to each, interleaved one by one so
that drift on this shared machine hits both alike. The queue is purged between blocks (untimed): moto's
SendMessage slows down as a queue fills. Both make the very same AWS requests (counted and reported).
"""

from __future__ import annotations

import time
from typing import Any

from bench import workload
from bench.stats import percentile

SIZES = (5_000, 100_000)
BLOCK = 50


def measure(body_bytes: int, rounds: int, per_round: int) -> dict[str, Any]:
    import boto3

    env = workload.start_moto()
    counter = workload.CallCounter()
    aws = workload.AwsTimer()
    from bench.baselines import BaselineReceiver
    from receiver import handler

    baseline = BaselineReceiver(env)
    handlers = {"receiver": handler.lambda_handler, "baseline": baseline.handle}
    context = workload.lambda_context()
    body = workload.order_body(body_bytes)
    sqs = boto3.Session(region_name=workload.REGION).client("sqs")

    own: dict[str, list[float]] = {name: [] for name in handlers}  # ms outside AWS calls

    def deliver(name: str) -> float:
        event = workload.api_event(body)
        aws.take()
        started = time.perf_counter()
        reply = handlers[name](event, context)
        elapsed = (time.perf_counter() - started) * 1000
        own[name].append(elapsed - aws.take() * 1000)
        if reply["statusCode"] != 200 or "received" not in reply["body"]:
            raise SystemExit(f"{name} answered {reply}")
        return elapsed

    for _ in range(20):  # warm-up: the cold start, first calls, caches
        for name in handlers:
            deliver(name)
    counter.take()
    calls = {name: deliver(name) and counter.take() for name in handlers}
    for samples_ in own.values():
        samples_.clear()

    results: dict[str, list[dict[str, float]]] = {name: [] for name in handlers}
    for _ in range(rounds):
        samples: dict[str, list[float]] = {name: [] for name in handlers}
        for index in range(per_round):
            # one delivery to each, first one then the other, so drift on a shared machine hits both alike
            for name in list(handlers)[:: 1 if index % 2 == 0 else -1]:
                samples[name].append(deliver(name))
            if index % BLOCK == BLOCK - 1:
                sqs.purge_queue(QueueUrl=env["QUEUE_URL"])
        for name, latencies in samples.items():
            results[name].append(
                {
                    "p50": percentile(latencies, 50),
                    "p99": percentile(latencies, 99),
                    "n": len(latencies),
                    "own_p50": percentile(own[name], 50),
                }
            )
            own[name].clear()
    return {"body_bytes": len(body), "rounds": results, "calls_per_delivery": calls}


def run(quick: bool) -> list[Any]:
    from bench.harness import run_worker
    from bench.report import Figure, Target
    from bench.stats import Summary, ratios

    rounds, per_round = (2, 50) if quick else (5, 200)
    figures: list[Figure] = []
    for size in SIZES:
        result = run_worker("bench.warm_receiver", [str(size), str(rounds), str(per_round)], timeout=400)
        real, base = result["rounds"]["receiver"], result["rounds"]["baseline"]
        label = f"{size // 1000} KB"
        calls = result["calls_per_delivery"]
        for pct in ("p50", "p99"):
            figures.append(
                Figure(
                    f"warm_receiver.{size // 1000}kb.receiver_{pct}_ms",
                    f"receiver {pct}, {label}",
                    "ms",
                    Summary.of([r[pct] for r in real]),
                    extra={"deliveries": sum(r["n"] for r in real), "body_bytes": result["body_bytes"]},
                )
            )
        for pct in ("p50", "p99"):
            figures.append(
                Figure(
                    f"warm_receiver.{size // 1000}kb.baseline_{pct}_ms",
                    f"  baseline {pct}, {label}",
                    "ms",
                    Summary.of([r[pct] for r in base]),
                    extra={"deliveries": sum(r["n"] for r in base)},
                )
            )
        figures += [
            Figure(
                f"warm_receiver.{size // 1000}kb.overhead_p50",
                f"  overhead p50, {label}",
                "x",
                Summary.of(ratios([r["p50"] for r in real], [r["p50"] for r in base])),
                target=Target(1.15),
                extra={"calls_per_delivery": calls},
                note=f"AWS calls per delivery: receiver {calls['receiver']}, baseline {calls['baseline']}"
                if calls["receiver"] != calls["baseline"]
                else "",
            ),
            Figure(
                f"warm_receiver.{size // 1000}kb.own_code_ms",
                f"  own code p50 (outside AWS calls), {label}",
                "ms",
                Summary.of([r["own_p50"] for r in real]),
                extra={"baseline": Summary.of([r["own_p50"] for r in base]).as_dict()},
                note="baseline's own code: {:.2f} ms".format(Summary.of([r["own_p50"] for r in base]).median),
            ),
            Figure(
                f"warm_receiver.{size // 1000}kb.overhead_p99",
                f"  overhead p99, {label}",
                "x",
                Summary.of(ratios([r["p99"] for r in real], [r["p99"] for r in base])),
            ),
        ]
    return figures


if __name__ == "__main__":
    from bench.harness import worker_main

    worker_main(lambda args: measure(int(args[0]), int(args[1]), int(args[2])))
