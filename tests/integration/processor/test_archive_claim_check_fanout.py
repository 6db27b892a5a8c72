"""The raw delivery archive, claim-checked bodies, and the optional EventBridge fan-out."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

import boto3
import pytest

from klikit import settings
from klikit.archive import id_hash
from klikit.delivery import claim_check_key
from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from processor.registry import Registry
from tests.conftest import load_fixture
from tests.faults import Faults
from tests.integration.processor.conftest import Output
from tests.integration.processor.helpers import (
    archive_objects,
    archived,
    delivery,
    failed_ids,
    order_item,
    sqs_event,
    sqs_record,
)
from tools.local.resources import LocalResources

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
PROJECTION_BOOKKEEPING = {"status_event_id", "cart_event_id", "last_event_id", "status_news", "cart_news"}


RECEIVED_DAY = date(2026, 6, 25)  # the helpers' deliveries are received at 2026-06-25T09:30:00Z


def test_a_batch_is_archived_in_one_object_under_its_received_minute_with_each_delivery_exact(
    processor: Invoke, aws: LocalResources
) -> None:
    cart = delivery("order_cart_updated.json", ORDER_CART_UPDATED, event_id="evt/cart 1")
    created = delivery(
        "order_created_v2_batch.json", ORDER_CREATED, event_id="evt-created", received_at="2026-06-25T09:30:41.250Z"
    )
    binary = delivery(b"\xff\x00 not text", "klikit.order.refunded", event_id="evt-binary")

    processor(sqs_event(sqs_record(cart), sqs_record(created), sqs_record(binary)))
    processor(sqs_event(sqs_record(cart), sqs_record(created), sqs_record(binary)))  # the same batch again

    [(key, records)] = archive_objects(aws).items()  # one PUT for the batch; its retry wrote nothing new
    ids = ".".join(sorted(id_hash(e) for e in ("evt/cart 1", "evt-created", "evt-binary")))
    assert key == f"archive/2026-06-25/0930/00-41_{ids}.jsonl.gz"
    assert [(r.event_id, r.event_type, r.received_at, r.body) for r in records] == [
        ("evt-binary", "klikit.order.refunded", "2026-06-25T09:30:00Z", binary.body),
        ("evt/cart 1", ORDER_CART_UPDATED, "2026-06-25T09:30:00Z", load_fixture("order_cart_updated.json")),
        ("evt-created", ORDER_CREATED, "2026-06-25T09:30:41.250Z", created.body),
    ]


def test_a_batch_spanning_received_minutes_is_archived_per_minute_so_late_records_land_in_their_window(
    processor: Invoke, aws: LocalResources
) -> None:
    fresh = delivery("order_cart_updated.json", ORDER_CART_UPDATED, event_id="evt-fresh")
    redriven = delivery(  # back from the DLQ a day later: archived where its receipt time says
        "order_status_updated.json", ORDER_STATUS_UPDATED, event_id="evt-redriven", received_at="2026-06-24T23:59:59Z"
    )

    processor(sqs_event(sqs_record(fresh), sqs_record(redriven, receive_count=6)))

    assert {key.rsplit("_", 1)[0]: [r.event_id for r in records] for key, records in archive_objects(aws).items()} == {
        "archive/2026-06-24/2359/59-59": ["evt-redriven"],
        "archive/2026-06-25/0930/00-00": ["evt-fresh"],
    }


def test_a_claim_checked_body_is_processed_like_an_inline_one(processor: Invoke, aws: LocalResources) -> None:
    inline = delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-inline")
    processor(sqs_event(sqs_record(inline)))
    expected = order_item(aws, "7822")
    boto3.client("dynamodb").delete_item(TableName=aws.orders_table, Key={"order_id": {"S": "7822"}})

    big = delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-claim-checked")
    key = claim_check_key(big)
    boto3.client("s3").put_object(Bucket=aws.bucket, Key=key, Body=big.body)
    response = processor(sqs_event(sqs_record(big, body_s3_uri=f"s3://{aws.bucket}/{key}")))

    assert failed_ids(response) == []
    item = order_item(aws, "7822")
    assert item is not None and expected is not None
    assert {k: v for k, v in item.items() if k not in PROJECTION_BOOKKEEPING} == {
        k: v for k, v in expected.items() if k not in PROJECTION_BOOKKEEPING
    }
    assert item["last_event_id"] == "evt-claim-checked"
    assert archived(aws)["evt-claim-checked"].body == big.body  # the bytes themselves, not the claim check


@pytest.fixture
def subscriber(aws: LocalResources) -> str:
    """An SQS queue subscribed to the processor's events on the default bus, like another service would be."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    url = sqs.create_queue(QueueName="order-subscriber")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="klikit-orders", EventPattern=json.dumps({"source": ["klikit.webhooks"]}))
    events.put_targets(Rule="klikit-orders", Targets=[{"Id": "subscriber", "Arn": arn}])
    return str(url)


def _received(url: str) -> list[dict[str, Any]]:
    messages = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


def test_fan_out_publishes_each_processed_order_once_when_a_bus_is_set(
    processor: Invoke, subscriber: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.EVENT_BUS_NAME, "default")
    created = delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-fan")

    processor(sqs_event(sqs_record(created)))
    processor(sqs_event(sqs_record(created)))

    published = _received(subscriber)
    assert [(e["detail-type"], e["detail"]["order"]["id"]) for e in published] == [
        (ORDER_CREATED, 7821),
        (ORDER_CREATED, 7822),
    ]
    first = published[0]["detail"]
    assert (first["event_id"], first["brand_id"], first["branch_id"]) == ("evt-fan", 663, 1062)
    assert first["order"]["total"] == "84.50" and first["order"]["cart"][0]["price"] == 59.5


def test_fan_out_is_off_by_default(processor: Invoke, subscriber: str) -> None:
    processor(sqs_event(sqs_record(delivery("order_created_v2_batch.json", ORDER_CREATED))))

    assert _received(subscriber) == []


# --- event ids as long as a header may be: every S3 key within S3's 1,024 bytes --------------------------

LONG_NON_ASCII_ID = "订单事件" * 64  # 256 characters: 768 bytes of UTF-8, 2,304 percent-quoted


def test_a_long_non_ascii_event_id_is_read_from_its_claim_check_and_archived_within_s3s_limits(
    processor: Invoke, aws: LocalResources, faults: Faults
) -> None:
    faults.enforce_s3_limits()
    big = delivery("order_created_v2_batch.json", ORDER_CREATED, event_id=LONG_NON_ASCII_ID)
    key = claim_check_key(big)
    boto3.client("s3").put_object(Bucket=aws.bucket, Key=key, Body=big.body)

    response = processor(sqs_event(sqs_record(big, body_s3_uri=f"s3://{aws.bucket}/{key}")))

    assert failed_ids(response) == []
    assert order_item(aws, "7821") is not None
    [(key, [record])] = archive_objects(aws).items()
    assert (record.event_id, record.body) == (LONG_NON_ASCII_ID, big.body)  # the full id, inside the object
    assert len(key.encode()) < 100


# --- failures outside the handlers: one log line, the failure metric, and the effects are not held up --------


def test_a_failed_batch_archive_write_fails_exactly_its_records_and_the_retry_archives_them_without_repeating_effects(
    processor: Invoke, registry: Registry, aws: LocalResources, faults: Faults, output: Output
) -> None:
    tickets: list[str] = []
    registry.on(ORDER_CREATED, name="pos.ticket")(lambda event: tickets.append(event.order_id))
    faults.fail("s3.PutObject", code="ServiceUnavailable", when=lambda params: "/0930/" in params["Key"])
    created = delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-s3-down")
    status = delivery("order_status_updated.json", ORDER_STATUS_UPDATED, event_id="evt-s3-down-too")
    other_minute = delivery(
        "order_cart_updated.json", ORDER_CART_UPDATED, event_id="evt-archived", received_at="2026-06-25T09:31:05Z"
    )
    records = [sqs_record(created), sqs_record(status), sqs_record(other_minute)]

    first = processor(sqs_event(*records))
    assert sorted(failed_ids(first)) == sorted(record["messageId"] for record in records[:2])
    assert set(archived(aws)) == {"evt-archived"}  # nothing else claims to be archived
    second = processor(sqs_event(sqs_record(created, receive_count=2), sqs_record(status, receive_count=2)))

    assert failed_ids(second) == []
    assert tickets == ["7821", "7822"]  # the kitchen got its tickets while S3 was down, once
    assert {event_id: record.body for event_id, record in archived(aws).items()} == {
        "evt-s3-down": created.body,
        "evt-s3-down-too": status.body,
        "evt-archived": other_minute.body,
    }
    [failure] = output.logs("the raw delivery could not be archived; the record is retried")
    assert (failure["step"], failure["error_code"], sorted(failure["event_ids"])) == (
        "archive",
        "ServiceUnavailable",
        ["evt-s3-down", "evt-s3-down-too"],
    )
    counted = output.metrics()
    assert (counted[("EventsFailed", "")], counted[("ArchiveFailures", "")]) == (2, 2)


def test_a_record_whose_handler_failed_is_archived_anyway_and_counted_failed_once_when_the_archive_fails_too(
    processor: Invoke, registry: Registry, aws: LocalResources, faults: Faults, output: Output
) -> None:
    @registry.on(ORDER_CREATED, name="pos.ticket")
    def refuse(event: Any) -> None:
        raise RuntimeError("POS down")

    created = delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-pos-down")
    record = sqs_record(created)
    assert failed_ids(processor(sqs_event(record))) == [record["messageId"]]
    assert archived(aws)["evt-pos-down"].body == created.body  # on its way to the DLQ, it is archived already

    faults.fail("s3.PutObject", when=lambda params: params["Key"].startswith("archive/"))
    retry = sqs_record(created, receive_count=2)
    assert failed_ids(processor(sqs_event(retry))) == [retry["messageId"]]  # reported once
    counted = output.metrics()
    assert (counted[("EventsFailed", "")], counted[("ArchiveFailures", "")]) == (2, 1)


def test_a_claim_check_that_cannot_be_read_is_logged_and_counted(
    processor: Invoke, aws: LocalResources, faults: Faults, output: Output
) -> None:
    big = delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-unreadable")
    key = claim_check_key(big)
    boto3.client("s3").put_object(Bucket=aws.bucket, Key=key, Body=big.body)
    faults.fail("s3.GetObject", code="InternalError")
    record = sqs_record(big, body_s3_uri=f"s3://{aws.bucket}/{key}")

    assert failed_ids(processor(sqs_event(record))) == [record["messageId"]]

    [failure] = output.logs("the delivery's body could not be read (claim check in S3)")
    assert (failure["step"], failure["error_code"]) == ("read_body", "InternalError")
    assert output.metrics()[("EventsFailed", ORDER_CREATED)] == 1


def test_a_poison_delivery_the_dlq_refuses_is_logged_and_counted(
    processor: Invoke, aws: LocalResources, faults: Faults, output: Output
) -> None:
    faults.fail("sqs.SendMessage", code="AWS.SimpleQueueService.NonExistentQueue")
    record = sqs_record(delivery(b"signed, but not JSON", ORDER_CREATED, event_id="evt-poison-stuck"))

    assert failed_ids(processor(sqs_event(record))) == [record["messageId"]]

    [failure] = output.logs("a poison delivery could not be sent to the DLQ")
    assert (failure["step"], failure["event_id"]) == ("quarantine", "evt-poison-stuck")
    assert output.metrics()[("EventsFailed", "")] == 1
