"""The cost benchmark's meter, on a tiny mix through the real receiver and processor: exact requests and units.

If a change to either function adds, removes or resizes an AWS request, this test fails and says what is billed
now; update the numbers here and the cost table in docs/performance.md (`python -m bench --only cost`) together.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.cost import CART, CREATED, STATUS, Orders, Pipeline, Sent, price, stored_bytes
from klikit.signature import sign
from processor import handler as processor_handler
from receiver import handler as receiver_handler
from tests.conftest import OLD_SECRET, SECRET
from tools.local.resources import LocalResources


@pytest.fixture
def pipeline(aws: LocalResources) -> Iterator[Pipeline]:
    receiver_handler.app.cache_clear()
    processor_handler.app.cache_clear()
    with Pipeline(receiver_handler.lambda_handler, processor_handler.lambda_handler, aws.queue_url, 1) as metered:
        yield metered
    receiver_handler.app.cache_clear()
    processor_handler.app.cache_clear()


def tiny_mix() -> list[Sent]:
    """A new order, its status update, klikit repeating the first delivery, a forged one, then a cart update."""
    orders = Orders()
    created, status, cart = orders.create(7001), orders.status(7001), orders.cart(7001)
    return [
        Sent("created", "evt-cost-1", CREATED, created, sign(SECRET, created)),
        Sent("status", "evt-cost-2", STATUS, status, sign(SECRET, status)),
        Sent("duplicate", "evt-cost-1", CREATED, created, sign(SECRET, created)),
        Sent("forged", "evt-cost-3", STATUS, status, sign(OLD_SECRET, status)),
        Sent("cart", "evt-cost-4", CART, cart, sign(SECRET, cart)),
    ]


def test_every_billed_request_and_unit_of_a_tiny_mix_is_counted(pipeline: Pipeline, aws: LocalResources) -> None:
    mix = tiny_mix()
    for delivery in mix:
        pipeline.deliver(delivery)
    pipeline.drain()

    assert pipeline.replies == {"200 received": 3, "200 duplicate-ignored": 1, "401 invalid signature": 1}
    assert pipeline.aws.usage.as_dict() == {
        "receiver": {
            # the first call, then one forced refresh when the forged signature matches nothing cached
            "secretsmanager.GetSecretValue": {"requests": 2},
            # the idempotency claim of 4 signed deliveries; the repeat's claim is refused and still billed
            "dynamodb.PutItem": {"requests": 4, "wru": 4, "refused": 1},
            "dynamodb.UpdateItem": {"requests": 3, "wru": 3},
            "sqs.SendMessage": {"requests": 3, "billed": 3},
        },
        "event source": {
            "sqs.ReceiveMessage": {"requests": 3, "billed": 3},
            "sqs.DeleteMessageBatch": {"requests": 3, "billed": 3},
        },
        "processor": {
            # the archive: one gzip'd object per batch (batches of one here), each accepted delivery's raw bytes
            "s3.PutObject": {"requests": 3, "bytes": stored_bytes(pipeline.aws, aws.env())["s3.archive"]},
            # the one effect record: the example kitchen ticket for the new order (the projection needs none)
            "dynamodb.PutItem": {"requests": 1, "wru": 1},
            # its completion (1 WRU) and 3 writes of the ~1.1 KB order item, its cart compressed (2 WRU each)
            "dynamodb.UpdateItem": {"requests": 4, "wru": 1 + 3 * 2},
        },
    }
    # per invocation: its own lines, Lambda's START/END/REPORT; the processor's EMF is two lines per batch
    assert pipeline.logs.events == {"receiver": 5 * 5, "processor": 3 * 6 + 1}
    assert {name for _, name, _ in pipeline.logs.metrics["receiver"]} == {
        "DeliveriesReceived",
        "Enqueued",
        "Duplicates",
        "RejectedInvalidSignature",
    }
    assert len(pipeline.logs.metrics["processor"]) == 4  # EventsProcessed by 3 event types + service-wide


def test_the_price_of_a_tiny_mix_follows_the_price_table(aws: LocalResources, pipeline: Pipeline) -> None:
    for delivery in tiny_mix():
        pipeline.deliver(delivery)
    pipeline.drain()
    result: dict[str, Any] = {
        "deliveries": 5,
        "kinds": {"created": 1, "status": 1, "duplicate": 1, "forged": 1, "cart": 1},
        "usage": pipeline.aws.usage.as_dict(),
        "invocations": [[i.function, 1.0, i.calls] for i in pipeline.invocations],
        "log_bytes": {"receiver": 5_000, "processor": 6_000},
        "metrics": {fn: sorted(found) for fn, found in pipeline.logs.metrics.items()},
        "stored_bytes": stored_bytes(pipeline.aws, aws.env()),
    }
    facts: dict[str, Any] = {
        "functions": {name: {"memory_mb": 1769, "tracing": "PassThrough"} for name in ("receiver", "processor")},
        "alarms": 10,
        "dashboards": 1,
        "secrets": 1,
        "kms_keys": 0,
        "api_tracing": False,
        "access_log_bytes": 0,
        "archive_days": 30,
        "claim_check_days": 18,
        "idempotency_days": 30,
    }

    per_million, monthly = price(result, facts)
    dollars = {line.key: round(line.dollars, 4) for line in per_million}

    assert dollars["api_gateway"] == 3.5
    assert dollars["dynamodb_writes"] == round((7 + 8) * 0.625 / 5, 4)  # 15 WRU for 5 deliveries
    assert dollars["sqs"] == round(9 * 0.40 / 5, 4)
    assert dollars["s3_requests"] == round(3 * 5.0 / 5, 4)  # $0.005 per PUT
    assert dollars["logs"] == round(11_000 / 1024**3 * 0.5 / 5 * 1e6, 4)
    # receiver, per invocation: 1 ms of own code at a full vCPU, then 6 ms per DynamoDB call, 10 per SQS, 15 per secret
    receiver_ms = sum([1 + 15 + 6 + 10 + 6, 1 + 6 + 10 + 6, 1 + 6, 1 + 15, 1 + 6 + 10 + 6])
    cold_gb_seconds = 5 * 0.005 * 0.5 * 1769 / 1024  # 0.5% of invocations cold, 0.5 s of INIT each
    receiver_dollars = 5 * 0.2 / 1e6 + (receiver_ms / 1000 * 1769 / 1024 + cold_gb_seconds) * 0.0000133334
    assert dollars["lambda_receiver"] == round(receiver_dollars / 5 * 1e6, 4)
    assert {line.key: line.dollars for line in monthly if line.key != "idle.sqs_polling"} == {
        "idle.secret": 0.40,
        "idle.alarms": 1.0,
        "idle.dashboard": 3.0,
        "idle.kms": 0.0,
        "metrics": 8 * 0.30,
    }


def test_a_batch_of_deliveries_is_archived_with_one_put_of_their_compressed_bytes(aws: LocalResources) -> None:
    receiver_handler.app.cache_clear()
    processor_handler.app.cache_clear()
    mix = [delivery for delivery in tiny_mix() if delivery.kind in ("created", "status", "cart")]
    with Pipeline(receiver_handler.lambda_handler, processor_handler.lambda_handler, aws.queue_url, 10) as pipeline:
        for delivery in mix:
            pipeline.deliver(delivery)
        pipeline.drain()
    receiver_handler.app.cache_clear()
    processor_handler.app.cache_clear()

    [put] = [calls for function, calls in pipeline.aws.usage.as_dict().items() if function == "processor"]
    assert put["s3.PutObject"]["requests"] == 1  # was one per delivery
    assert put["s3.PutObject"]["bytes"] < sum(len(delivery.body) for delivery in mix) / 3
