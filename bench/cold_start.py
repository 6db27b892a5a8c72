"""Cold start: a fresh interpreter imports the handler module, then builds it and runs its first invocation.

Worker (`python -m bench.cold_start KIND`): times (1) the import of the handler module, or of boto3 for a
baseline; then, untimed, starts in-process moto with the stack's resources and builds the event; then times
(2) the first invocation, which for the functions includes their lazy initialisation (clients, settings). For a
baseline, (2) is split into creating the same boto3 clients, and making the same first AWS calls by hand.
The module's top imports nothing beyond the standard library's basics, so nothing is pre-loaded for the code
under test: moto and the event builders are imported only after phase (1).
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any

KINDS = ("receiver", "receiver-baseline", "processor", "processor-baseline")
BODY_BYTES = 5_000


def measure(kind: str) -> dict[str, Any]:
    started = time.perf_counter()
    module: Any = importlib.import_module(
        {"receiver": "receiver.handler", "processor": "processor.handler"}.get(kind, "bench.baselines")
    )
    imported = time.perf_counter()

    from bench import workload

    env = workload.start_moto()
    context = workload.lambda_context()
    event = (
        workload.api_event(workload.order_body(BODY_BYTES))
        if kind.startswith("receiver")
        else workload.sqs_batch(1, BODY_BYTES, first_order_id=1)
    )
    before = set(sys.modules)
    ready = time.perf_counter()

    clients_done = None
    if kind in ("receiver", "processor"):
        reply = module.lambda_handler(event, context)
    else:
        baseline = (module.BaselineReceiver if kind == "receiver-baseline" else module.BaselineProcessor)(env)
        clients_done = time.perf_counter()
        reply = baseline.handle(event, context)
    done = time.perf_counter()

    ok = reply.get("statusCode") == 200 if kind.startswith("receiver") else reply == {"batchItemFailures": []}
    if not ok:
        raise SystemExit(f"{kind}: first invocation did not succeed: {reply}")
    return {
        "kind": kind,
        "import_ms": (imported - started) * 1000,
        "first_invocation_ms": (done - ready) * 1000,
        "clients_ms": ((clients_done or done) - ready) * 1000,
        "modules_loaded_by_first_invocation": len(set(sys.modules) - before),
    }


def run(quick: bool) -> list[Any]:
    from bench.harness import run_worker
    from bench.report import Figure, Target
    from bench.stats import Summary, ratios

    repeats = 3 if quick else 11
    samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for round_ in range(repeats):
        order = KINDS[round_ % len(KINDS) :] + KINDS[: round_ % len(KINDS)]  # rotate: no kind always runs first
        for kind in order:
            samples[kind].append(run_worker("bench.cold_start", [kind], timeout=120))

    figures: list[Figure] = []
    for function, target in (("receiver", Target(1.2)), ("processor", None)):
        real = [s["import_ms"] + s["first_invocation_ms"] for s in samples[function]]
        base = samples[f"{function}-baseline"]
        base_clients = [s["import_ms"] + s["clients_ms"] for s in base]
        base_calls = [s["import_ms"] + s["first_invocation_ms"] for s in base]
        imports = ratios([s["import_ms"] for s in samples[function]], [s["import_ms"] for s in base])
        figures += [
            Figure(
                f"cold_start.{function}.ms",
                f"{function}: import + init + 1st invocation",
                "ms",
                Summary.of(real),
                extra={"import_ms": Summary.of([s["import_ms"] for s in samples[function]]).as_dict()},
            ),
            Figure(
                f"cold_start.{function}.baseline_clients_ms",
                "  baseline: import boto3 + its clients",
                "ms",
                Summary.of(base_clients),
            ),
            Figure(
                f"cold_start.{function}.baseline_calls_ms",
                "  baseline: ... + the same 1st AWS calls",
                "ms",
                Summary.of(base_calls),
            ),
            Figure(
                f"cold_start.{function}.ratio",
                f"  {function} / (boto3 + clients)",
                "x",
                Summary.of(ratios(real, base_clients)),
                target=target,
            ),
            Figure(
                f"cold_start.{function}.ratio_same_calls",
                f"  {function} / (boto3 + clients + same calls)",
                "x",
                Summary.of(ratios(real, base_calls)),
            ),
            Figure(
                f"cold_start.{function}.import_ratio",
                f"  import only: {function} module / boto3",
                "x",
                Summary.of(imports),
            ),
        ]
    return figures


if __name__ == "__main__":
    from bench.harness import worker_main

    worker_main(lambda args: measure(args[0]))
