"""The raw delivery archive, claim-checked bodies, and the optional EventBridge fan-out."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import date
from typing import Any

import boto3
import pytest

from klikit import settings
from klikit.delivery import archive_key, claim_check_key
from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED
from processor.registry import Registry
from tests.conftest import load_fixture
from tests.faults import Faults
from tests.integration.processor.conftest import Output
from tests.integration.processor.helpers import delivery, failed_ids, order_item, sqs_event, sqs_record
from tools.local.resources import LocalResources

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
PROJECTION_BOOKKEEPING = {"status_event_id", "cart_event_id", "last_event_id", "status_news", "cart_news"}


RECEIVED_DAY = date(2026, 6, 25)  # the helpers' deliveries are received at 2026-06-25T09:30:00Z


def test_each_delivery_is_archived_under_its_day_and_event_id_with_its_metadata(
    processor: Invoke, aws: LocalResources
) -> None:
    cart = delivery("order_cart_updated.json", ORDER_CART_UPDATED, event_id="evt/cart 1")

    processor(sqs_event(sqs_record(cart)))
    processor(sqs_event(sqs_record(cart)))  # a redelivery writes nothing new

    [listed] = boto3.client("s3").list_objects_v2(Bucket=aws.bucket, Prefix="archive/")["Contents"]
    assert listed["Key"] == "archive/2026-06-25/evt%2Fcart%201" == archive_key("evt/cart 1", RECEIVED_DAY)
    archived = boto3.client("s3").get_object(Bucket=aws.bucket, Key=listed["Key"])
    assert archived["Body"].read() == load_fixture("order_cart_updated.json")
    assert archived["Metadata"] == {
        "event-id": "evt%2Fcart%201",
        "event-type": ORDER_CART_UPDATED,
        "received-at": cart.received_at,
        "body-sha256": cart.body_sha256,
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
    archived = boto3.client("s3").get_object(Bucket=aws.bucket, Key=archive_key("evt-claim-checked", RECEIVED_DAY))
    assert archived["Body"].read() == big.body


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
    archived = boto3.client("s3").get_object(Bucket=aws.bucket, Key=archive_key(LONG_NON_ASCII_ID, RECEIVED_DAY))
    assert archived["Body"].read() == big.body
    # the full id stays with the object (too long to percent-quote within S3's 2 KB of metadata)
    assert base64.urlsafe_b64decode(archived["Metadata"]["event-id-base64"]).decode() == LONG_NON_ASCII_ID


# --- failures outside the handlers: one log line, the failure metric, and the effects are not held up --------


def test_an_archive_outage_does_not_hold_up_the_effects_and_the_retry_archives_without_repeating_them(
    processor: Invoke, registry: Registry, aws: LocalResources, faults: Faults, output: Output
) -> None:
    tickets: list[str] = []
    registry.on(ORDER_CREATED, name="pos.ticket")(lambda event: tickets.append(event.order_id))
    faults.fail("s3.PutObject", code="ServiceUnavailable", when=lambda params: params["Key"].startswith("archive/"))
    created = delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-s3-down")
    record = sqs_record(created)

    first = processor(sqs_event(record))
    second = processor(sqs_event(sqs_record(created, receive_count=2)))

    assert failed_ids(first) == [record["messageId"]] and failed_ids(second) == []
    assert tickets == ["7821", "7822"]  # the kitchen got its tickets while S3 was down, once
    boto3.client("s3").head_object(Bucket=aws.bucket, Key=archive_key("evt-s3-down", RECEIVED_DAY))
    [failure] = output.logs("the raw delivery could not be archived; the record is retried")
    assert (failure["step"], failure["error_code"], failure["event_id"]) == (
        "archive",
        "ServiceUnavailable",
        "evt-s3-down",
    )
    counted = output.metrics()
    assert (counted[("EventsFailed", "")], counted[("ArchiveFailures", "")]) == (1, 1)


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
