"""The raw delivery archive, claim-checked bodies, and the optional EventBridge fan-out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from klikit import settings
from klikit.delivery import archive_key, claim_check_key
from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED
from tests.conftest import load_fixture
from tests.integration.processor.helpers import delivery, failed_ids, order_item, sqs_event, sqs_record
from tools.local.resources import LocalResources

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
PROJECTION_BOOKKEEPING = {"status_event_id", "cart_event_id", "last_event_id"}


def test_each_delivery_is_archived_under_its_event_id_with_its_metadata(processor: Invoke, aws: LocalResources) -> None:
    cart = delivery("order_cart_updated.json", ORDER_CART_UPDATED, event_id="evt/cart 1")

    processor(sqs_event(sqs_record(cart)))
    processor(sqs_event(sqs_record(cart)))  # a redelivery writes nothing new

    archived = boto3.client("s3").get_object(Bucket=aws.bucket, Key=archive_key("evt/cart 1"))
    assert archived["Body"].read() == load_fixture("order_cart_updated.json")
    assert archived["Metadata"] == {
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
    archived = boto3.client("s3").get_object(Bucket=aws.bucket, Key=archive_key("evt-claim-checked"))
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
