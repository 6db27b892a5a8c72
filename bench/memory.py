"""Memory: peak RSS of the receiver and the processor after many invocations, and the headroom left.

Each worker (`python -m bench.memory FUNCTION INVOCATIONS`) is a fresh interpreter holding only the function and
boto3: AWS is a moto *server* in another process, so moto's own memory (and the items it stores) is not counted.
Peak RSS is `ru_maxrss` at the end. The receiver gets 1,000 ~5 KB deliveries with a ~100 KB one every 10th. The
processor gets one-record status updates, with a full batch of 10 new orders (one of ~100 KB) every 20th
invocation, 300 invocations rather than 1,000: on a moto server each of its records costs 30-100 ms of moto's
time (UpdateItem on cart-sized items), and its peak is reached long before (the JSON has the RSS after the 1st
invocation). The configured memory sizes come from cdk.json through infra/config.py.
"""

from __future__ import annotations

import os
import resource
from typing import Any

from bench import workload

SMALL, LARGE = 5_000, 100_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def setup() -> dict[str, Any]:
    """Create the stack's resources on the moto server named by AWS_ENDPOINT_URL; read the configured sizes."""
    import boto3

    from tools.local.resources import create_resources

    resources = create_resources(boto3.Session(region_name=workload.REGION), [workload.SECRET], prefix="bench")
    try:
        from infra.config import config_from_cdk_json

        config = config_from_cdk_json()
        sizes = {"receiver": config.receiver_memory_mb, "processor": config.processor_memory_mb, "source": "cdk.json"}
    except Exception as exc:  # noqa: BLE001 - fall back to the spec's defaults, and say so
        sizes = {"receiver": 256, "processor": 512, "source": f"spec defaults ({type(exc).__name__})"}
    return {"env": resources.env(), "memory_mb": sizes}


def measure(function: str, invocations: int) -> dict[str, Any]:
    baseline_rss = _rss_mb()
    import boto3

    sqs = boto3.Session(region_name=workload.REGION).client("sqs")
    queue_url = os.environ["QUEUE_URL"]
    small, large = workload.order_body(SMALL), workload.order_body(LARGE)
    after_first = 0.0
    if function == "receiver":
        from receiver import handler

        context = workload.lambda_context(256)
        for index in range(invocations):
            reply = handler.lambda_handler(workload.api_event(large if index % 10 == 9 else small), context)
            if reply["statusCode"] != 200:
                raise SystemExit(f"receiver answered {reply}")
            if index == 0:
                after_first = _rss_mb()
            if index % 100 == 99:
                sqs.purge_queue(QueueUrl=queue_url)
    else:
        from processor import handler as processor

        processor_context: Any = workload.lambda_context(512)
        for index in range(invocations):
            if index % 20 == 19:  # a full batch of new orders, one of them large
                bodies = [small] * 9 + [large]
                records = [workload.sqs_record(body) for body in bodies]
            else:  # a status update about an order created earlier
                status = workload.status_body(order_id=7821)
                records = [workload.sqs_record(status, event_type=workload.ORDER_STATUS_UPDATED)]
            event = {"Records": records}
            reply = processor.lambda_handler(event, processor_context)
            if reply != {"batchItemFailures": []}:
                raise SystemExit(f"processor failed records: {reply}")
            if index == 0:
                after_first = _rss_mb()
    return {
        "function": function,
        "invocations": invocations,
        "interpreter_mb": baseline_rss,
        "after_first_mb": after_first,
        "peak_mb": _rss_mb(),
    }


def run(quick: bool) -> list[Any]:
    from bench.harness import moto_server, run_worker
    from bench.report import Figure, Target
    from bench.stats import Summary

    # moto's UpdateItem on a cart-sized item costs ~5-10 ms, so the processor's 1,000 invocations run once
    repeats = {"receiver": 1 if quick else 3, "processor": 1}
    invocations = {"receiver": 100 if quick else 1000, "processor": 60 if quick else 300}
    with moto_server() as endpoint:
        aws = {"AWS_ENDPOINT_URL": endpoint}
        ready = run_worker("bench.memory", ["setup"], env=aws, timeout=120)
        env = {**aws, **ready["env"]}
        runs: dict[str, list[dict[str, Any]]] = {"receiver": [], "processor": []}
        for function, times in repeats.items():
            for _ in range(times):
                runs[function].append(
                    run_worker("bench.memory", [function, str(invocations[function])], env=env, timeout=400)
                )
    sizes = ready["memory_mb"]
    figures: list[Figure] = []
    for function, target in (("receiver", Target(100)), ("processor", None)):
        peaks = [r["peak_mb"] for r in runs[function]]
        configured = sizes[function]
        figures += [
            Figure(
                f"memory.{function}.peak_rss_mb",
                f"{function}: peak RSS after {invocations[function]} invocations",
                "MB",
                Summary.of(peaks),
                target=target,
                extra={
                    "after_first_invocation_mb": Summary.of([r["after_first_mb"] for r in runs[function]]).as_dict(),
                    "bare_interpreter_mb": Summary.of([r["interpreter_mb"] for r in runs[function]]).as_dict(),
                },
                note="after the 1st invocation: {:.1f} MB".format(
                    Summary.of([r["after_first_mb"] for r in runs[function]]).median
                ),
            ),
            Figure(
                f"memory.{function}.headroom_pct",
                f"  headroom at {configured} MB ({sizes['source']})",
                "%",
                Summary.of([100 * (1 - peak / configured) for peak in peaks]),
                extra={"configured_mb": configured},
            ),
        ]
    return figures


if __name__ == "__main__":
    from bench.harness import worker_main

    worker_main(lambda args: setup() if args[0] == "setup" else measure(args[0], int(args[1])))
