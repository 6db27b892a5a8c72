"""The fault matrix: every AWS call the receiver and processor make, failed, throttled or cut short by a crash.

Each row asserts what klikit (or SQS) is answered, that the retry that follows succeeds, and that the delivery's
effect (the order projection and a counted user handler) happens exactly once, with nothing left in the queues.
Each processor row then replays the captured request under new event ids, as it was and re-typed as a status and
a cart update: no effect happens again. docs/reliability.md prints this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from tests.conftest import api_event as klikit_event
from tests.conftest import load_fixture
from tests.reliability.conftest import (
    GATEWAY_CRASH_REPLY,
    EffectCounter,
    Faults,
    Pipeline,
    key_under,
    queue_is,
    table_is,
)
from tools.local.resources import LocalResources

CREATED = load_fixture("order_created_v2_batch.json")  # two orders: 7821 and 7822
CREATED_TYPE, STATUS_TYPE, CART_TYPE = (
    "klikit.order.created.v2",
    "klikit.order.status.updated",
    "klikit.order.cart.updated",
)
ORDERS = ("7821", "7822")
Arm = Callable[[Faults, LocalResources, EffectCounter], object]


def _idempotency(aws: LocalResources) -> Callable[[dict[str, Any]], bool]:
    return table_is(aws.idempotency_table)


# --- receiver rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiverRow:
    id: str
    arm: Arm
    first: int  # what klikit is answered
    retries: tuple[int, ...]  # what klikit's retries are answered, until the 2xx (time passes after a 409)
    queued: int  # messages SQS ends up holding for the delivery (a repeat is absorbed by the processor)
    large_body: bool = False  # the body goes to S3 as a claim check
    first_body: dict[str, Any] = field(default_factory=dict)  # keys the first reply's JSON must contain


UNAVAILABLE = {"error": "temporarily unavailable"}
RECEIVER_ROWS = [
    ReceiverRow(
        "secrets-manager-error",
        lambda f, aws, c: f.fail("secretsmanager.GetSecretValue"),
        503,
        (200,),
        1,
        first_body=UNAVAILABLE,
    ),
    ReceiverRow(
        "secrets-manager-throttled-beyond-retries",
        lambda f, aws, c: f.fail("secretsmanager.GetSecretValue", code="ThrottlingException"),
        503,
        (200,),
        1,
        first_body=UNAVAILABLE,
    ),
    ReceiverRow(
        "secrets-manager-throttled-once-retried-by-botocore",
        lambda f, aws, c: f.throttle("secretsmanager.GetSecretValue"),
        200,
        (),
        1,
    ),
    ReceiverRow(
        "dynamodb-put-error",
        lambda f, aws, c: f.fail("dynamodb.PutItem", when=_idempotency(aws)),
        503,
        (200,),
        1,
        first_body=UNAVAILABLE,
    ),
    ReceiverRow(
        "dynamodb-put-throttled-beyond-retries",
        lambda f, aws, c: f.fail(
            "dynamodb.PutItem", code="ProvisionedThroughputExceededException", when=_idempotency(aws)
        ),
        503,
        (200,),
        1,
        first_body=UNAVAILABLE,
    ),
    ReceiverRow(
        "dynamodb-put-throttled-once-retried-by-botocore",
        lambda f, aws, c: f.throttle("dynamodb.PutItem", when=_idempotency(aws)),
        200,
        (),
        1,
    ),
    ReceiverRow(
        "sqs-send-error",
        lambda f, aws, c: f.fail("sqs.SendMessage"),
        503,
        (200,),
        1,
        first_body=UNAVAILABLE,
    ),
    ReceiverRow(
        "sqs-send-throttled-beyond-retries",
        lambda f, aws, c: f.fail("sqs.SendMessage", code="RequestThrottled"),
        503,
        (200,),
        1,
        first_body=UNAVAILABLE,
    ),
    ReceiverRow(
        "sqs-send-throttled-once-retried-by-botocore",
        lambda f, aws, c: f.throttle("sqs.SendMessage"),
        200,
        (),
        1,
    ),
    ReceiverRow(
        "sqs-send-read-timeout",
        lambda f, aws, c: f.fail("sqs.SendMessage", error=ReadTimeoutError(endpoint_url="https://sqs")),
        503,
        (200,),
        1,
        first_body=UNAVAILABLE,
    ),
    ReceiverRow(
        "sqs-unreachable",
        lambda f, aws, c: f.fail("sqs.SendMessage", error=EndpointConnectionError(endpoint_url="https://sqs")),
        503,
        (200,),
        1,
        first_body=UNAVAILABLE,
    ),
    ReceiverRow(
        "s3-claim-check-put-error",
        lambda f, aws, c: f.fail("s3.PutObject"),
        503,
        (200,),
        1,
        large_body=True,
        first_body=UNAVAILABLE,
    ),
    ReceiverRow(
        "s3-claim-check-put-throttled-once-retried-by-botocore",
        lambda f, aws, c: f.throttle("s3.PutObject"),
        200,
        (),
        1,
        large_body=True,
    ),
    ReceiverRow(
        # the in-progress record cannot be released: klikit's retries get 409 until the Lambda timeout has passed
        "sqs-send-error-and-dynamodb-delete-error",
        lambda f, aws, c: (f.fail("sqs.SendMessage"), f.fail("dynamodb.DeleteItem", when=_idempotency(aws))),
        503,
        (409, 200),
        1,
        first_body=UNAVAILABLE,
    ),
    ReceiverRow(
        # queued, but the record could not be marked done: the retry after the timeout queues a second copy
        "dynamodb-update-error-after-queueing",
        lambda f, aws, c: f.fail("dynamodb.UpdateItem", when=_idempotency(aws)),
        503,
        (409, 200),
        2,
        first_body=UNAVAILABLE,
    ),
    ReceiverRow(
        # DynamoDB wrote the record, the answer was lost, botocore's retry meets our own in-progress record
        "dynamodb-put-response-lost-retried-by-botocore",
        lambda f, aws, c: f.lose_response("dynamodb.PutItem", when=_idempotency(aws)),
        409,
        (409, 200),
        1,
        first_body={"error": "delivery in progress"},
    ),
    ReceiverRow(
        "sqs-send-response-lost-retried-by-botocore",
        lambda f, aws, c: f.lose_response("sqs.SendMessage"),
        200,
        (),
        2,
    ),
    ReceiverRow(
        "dynamodb-update-response-lost-retried-by-botocore",
        lambda f, aws, c: f.lose_response("dynamodb.UpdateItem", when=_idempotency(aws)),
        200,
        (),
        1,
    ),
    ReceiverRow(
        "handler-exception-during-enqueue",
        lambda f, aws, c: f.fail("sqs.SendMessage", error=RuntimeError("a bug in the enqueue path")),
        500,
        (200,),
        1,
        first_body={"error": "internal error"},
    ),
    ReceiverRow(
        "lambda-crash-before-admission",
        lambda f, aws, c: f.crash_before("dynamodb.PutItem", when=_idempotency(aws)),
        502,
        (200,),
        1,
    ),
    ReceiverRow(
        "lambda-crash-between-admission-and-send",
        lambda f, aws, c: f.crash_before("sqs.SendMessage"),
        502,
        (409, 200),
        1,
    ),
    ReceiverRow(
        "lambda-crash-after-send-before-record-saved",
        lambda f, aws, c: f.crash_after("sqs.SendMessage"),
        502,
        (409, 200),
        2,
    ),
    ReceiverRow(
        "lambda-crash-after-record-saved-before-reply",
        lambda f, aws, c: f.crash_after("dynamodb.UpdateItem", when=_idempotency(aws)),
        502,
        (200,),  # answered duplicate-ignored: it was stored
        1,
    ),
]


@pytest.mark.parametrize("row", RECEIVER_ROWS, ids=[row.id for row in RECEIVER_ROWS])
def test_receiver_fault_is_answered_retried_and_processed_exactly_once(
    row: ReceiverRow,
    pipeline: Pipeline,
    faults: Faults,
    counter: EffectCounter,
    aws: LocalResources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if row.large_body:
        monkeypatch.setenv("SQS_MAX_MESSAGE_BYTES", "2048")
    event = klikit_event(CREATED, event_id=f"evt-{row.id}")
    row.arm(faults, aws, counter)

    status, body = pipeline.send(event)

    assert status == row.first, body
    assert isinstance(body, dict)
    assert row.first_body.items() <= body.items()
    if status == 502:
        assert body == GATEWAY_CRASH_REPLY[1]
    faults.clear()
    retries = pipeline.send_until_acknowledged(event) if status >= 300 else []
    assert [reply[0] for reply in retries] == list(row.retries)
    assert pipeline.queue_depth() == row.queued
    pipeline.drain()
    assert counter.effects == {(f"evt-{row.id}", order): 1 for order in ORDERS}
    for order_id in ORDERS:
        item = pipeline.order(order_id)
        assert item is not None and item["last_event_id"] == f"evt-{row.id}"
    assert pipeline.dlq() == []
    assert pipeline.queue_depth() == 0
    # a second delivery of the same event id afterwards is only ever a duplicate
    assert pipeline.send(event) == (200, {"status": "duplicate-ignored"})


def test_a_throttle_retried_by_botocore_costs_a_second_wire_attempt_not_a_second_message(
    pipeline: Pipeline, faults: Faults
) -> None:
    faults.throttle("sqs.SendMessage")

    assert pipeline.send(klikit_event(CREATED))[0] == 200

    assert faults.attempts["sqs.SendMessage"] == 2
    assert pipeline.queue_depth() == 1


# --- processor rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessorRow:
    id: str
    arm: Arm
    first_poll: str  # processed | record failed | batch crashed
    effects: tuple[int, int] = (1, 1)  # times the counted user handler's effect happened, per order
    large_body: bool = False
    body: bytes = CREATED
    dlq: int = 0  # messages quarantined in the DLQ


def _effects_table(aws: LocalResources) -> Callable[[dict[str, Any]], bool]:
    return table_is(aws.effects_table)


def _after_the_user_effect(aws: LocalResources, counter: EffectCounter) -> Callable[[dict[str, Any]], bool]:
    """The effects-table write that follows the counted handler's effect (its idempotency record's save)."""
    return lambda params: params.get("TableName") == aws.effects_table and bool(counter.effects)


def _handler_fails_and_its_release_fails(faults: Faults, aws: LocalResources, counter: EffectCounter, row: str) -> None:
    counter.fail_next.add(f"evt-{row}")
    faults.fail("dynamodb.DeleteItem", when=_effects_table(aws))


PROCESSOR_ROWS = [
    ProcessorRow(
        "s3-claim-check-get-error",
        lambda f, aws, c: f.fail("s3.GetObject"),
        "record failed",
        large_body=True,
    ),
    ProcessorRow(
        "s3-claim-check-get-throttled-once-retried-by-botocore",
        lambda f, aws, c: f.throttle("s3.GetObject"),
        "processed",
        large_body=True,
    ),
    ProcessorRow(
        "s3-archive-put-error",
        lambda f, aws, c: f.fail("s3.PutObject", when=key_under("archive/")),
        "record failed",
    ),
    ProcessorRow(
        "dynamodb-effects-put-error",
        lambda f, aws, c: f.fail("dynamodb.PutItem", when=_effects_table(aws)),
        "record failed",
    ),
    ProcessorRow(
        "dynamodb-effects-put-throttled-beyond-retries",
        lambda f, aws, c: f.fail(
            "dynamodb.PutItem", code="ProvisionedThroughputExceededException", when=_effects_table(aws)
        ),
        "record failed",
    ),
    ProcessorRow(
        "dynamodb-orders-update-error",
        lambda f, aws, c: f.fail("dynamodb.UpdateItem", when=table_is(aws.orders_table)),
        "record failed",
    ),
    ProcessorRow(
        "dynamodb-orders-update-throttled-once-retried-by-botocore",
        lambda f, aws, c: f.throttle("dynamodb.UpdateItem", when=table_is(aws.orders_table)),
        "processed",
    ),
    ProcessorRow(
        "dynamodb-effects-put-response-lost-retried-by-botocore",
        lambda f, aws, c: f.lose_response("dynamodb.PutItem", when=_effects_table(aws)),
        "record failed",
    ),
    ProcessorRow(
        "dynamodb-effects-update-response-lost-retried-by-botocore",
        lambda f, aws, c: f.lose_response("dynamodb.UpdateItem", when=_effects_table(aws)),
        "processed",
    ),
    ProcessorRow(
        "dynamodb-orders-update-response-lost-retried-by-botocore",
        lambda f, aws, c: f.lose_response("dynamodb.UpdateItem", when=table_is(aws.orders_table)),
        "processed",
    ),
    ProcessorRow(
        "s3-archive-put-response-lost-retried-by-botocore",
        lambda f, aws, c: f.lose_response("s3.PutObject", when=key_under("archive/")),
        "processed",
    ),
    ProcessorRow(
        "handler-exception",
        lambda f, aws, c: c.fail_next.add("evt-handler-exception"),
        "record failed",
    ),
    ProcessorRow(
        # the failed handler's in-progress record cannot be released: the retry waits for the Lambda timeout
        "handler-exception-and-dynamodb-delete-error",
        lambda f, aws, c: _handler_fails_and_its_release_fails(
            f, aws, c, "handler-exception-and-dynamodb-delete-error"
        ),
        "record failed",
    ),
    ProcessorRow(
        "sqs-dlq-send-error-for-a-poison-delivery",
        lambda f, aws, c: f.fail("sqs.SendMessage", when=queue_is(aws.dlq_url)),
        "record failed",
        effects=(0, 0),
        body=b"this is signed but it is not JSON",
        dlq=1,
    ),
    ProcessorRow(
        "lambda-crash-after-effects-and-archive",
        lambda f, aws, c: f.crash_after("s3.PutObject", when=key_under("archive/")),
        "batch crashed",
    ),
    ProcessorRow(
        "lambda-crash-after-projection-write-before-record-saved",
        lambda f, aws, c: f.crash_after("dynamodb.UpdateItem", when=table_is(aws.orders_table)),
        "batch crashed",
    ),
    ProcessorRow(
        # the limit of exactly-once: the effect left the process, its record did not reach DynamoDB
        "lambda-crash-after-user-effect-before-record-saved",
        lambda f, aws, c: f.crash_before("dynamodb.UpdateItem", when=_after_the_user_effect(aws, c)),
        "batch crashed",
        effects=(2, 1),  # the crash hit the first order's record only
    ),
    ProcessorRow(
        "dynamodb-effects-update-error-after-user-effect",
        lambda f, aws, c: f.fail("dynamodb.UpdateItem", when=_after_the_user_effect(aws, c)),
        "record failed",
        effects=(2, 1),
    ),
]


@pytest.mark.parametrize("row", PROCESSOR_ROWS, ids=[row.id for row in PROCESSOR_ROWS])
def test_processor_fault_fails_only_what_it_must_and_the_redelivery_completes_it(
    row: ProcessorRow,
    pipeline: Pipeline,
    faults: Faults,
    counter: EffectCounter,
    aws: LocalResources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if row.large_body:
        monkeypatch.setenv("SQS_MAX_MESSAGE_BYTES", "2048")
    event_id = f"evt-{row.id}"
    assert pipeline.send(klikit_event(row.body, event_id=event_id)) == (200, {"status": "received"})
    row.arm(faults, aws, counter)

    first = pipeline.process_once()

    assert first is not None and first.records == 1
    outcome = "batch crashed" if first.crashed else "record failed" if first.failed else "processed"
    assert outcome == row.first_poll
    faults.clear()
    pipeline.drain()
    assert pipeline.queue_depth() == 0
    assert len(pipeline.dlq()) == row.dlq
    if row.dlq:
        assert counter.effects == {}
        return
    assert counter.effects == {(event_id, order): n for order, n in zip(ORDERS, row.effects, strict=True)}
    for order_id in ORDERS:
        item = pipeline.order(order_id)
        assert item is not None and item["last_event_id"] == event_id and item["status"] == 2

    # Then someone replays the captured request under new event ids, as it was and re-typed: nothing happens again.
    for n, replay_type in enumerate([CREATED_TYPE, STATUS_TYPE, CART_TYPE]):
        replay = klikit_event(row.body, event_id=f"{event_id}-replay-{n}", event_type=replay_type)
        assert pipeline.send(replay) == (200, {"status": "received"})
    pipeline.drain()
    assert pipeline.dlq() == []
    assert counter.effects == {(event_id, order): n for order, n in zip(ORDERS, row.effects, strict=True)}
    for order_id in ORDERS:
        item = pipeline.order(order_id)
        assert item is not None and item["status"] == 2 and item["status_event_id"] == event_id


def test_a_crash_mid_batch_redelivers_the_batch_and_every_effect_still_happens_once(
    pipeline: Pipeline, faults: Faults, counter: EffectCounter, aws: LocalResources
) -> None:
    bodies = [load_fixture("order_status_updated.json"), load_fixture("order_cart_updated.json"), CREATED]
    types = ["klikit.order.status.updated", "klikit.order.cart.updated", "klikit.order.created.v2"]
    for n, (body, event_type) in enumerate(zip(bodies, types, strict=True)):
        assert pipeline.send(klikit_event(body, event_id=f"evt-batch-{n}", event_type=event_type))[0] == 200
    projected: list[str] = []

    def second_order_write(params: dict[str, Any]) -> bool:
        if params.get("TableName") == aws.orders_table:
            projected.append(str(params.get("Key")))
        return len(projected) == 2

    # mid-batch: the first record done, the second's projection written, the third not started, nothing archived
    faults.crash_after("dynamodb.UpdateItem", when=second_order_write)

    first = pipeline.process_once()
    assert first is not None and first.crashed and first.records == 3
    faults.clear()
    pipeline.drain()

    assert counter.effects == {
        ("evt-batch-0", "7821"): 1,
        ("evt-batch-1", "7821"): 1,
        ("evt-batch-2", "7821"): 1,
        ("evt-batch-2", "7822"): 1,
    }
    item = pipeline.order("7821")
    assert item is not None
    assert item["status"] == 5  # status.updated at 09:21 is the newest status
    assert [line["klikit_sku_id"] for line in item["cart"]] == ["CBA001", "CBA020"]  # cart.updated at 09:17
