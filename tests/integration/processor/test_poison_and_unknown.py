"""Deliveries no retry can fix go to the DLQ with a reason; unknown event types are kept, not failed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from infra import lambda_shapes
from klikit.delivery import (
    QUARANTINE_DETAIL,
    QUARANTINE_REASON,
    claim_check_key,
    sqs_message,
    sqs_message_size,
)
from klikit.events import ORDER_CREATED, ORDER_STATUS_UPDATED
from processor.models import UnknownEvent
from processor.registry import Registry
from tests.conftest import FIXTURES
from tests.integration.processor.conftest import Output
from tests.integration.processor.helpers import (
    archived,
    delivery,
    dlq_messages,
    failed_ids,
    order_item,
    sqs_event,
    sqs_record,
)
from tools.local.resources import LocalResources

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
UNKNOWN_TYPE = "klikit.order.refunded"


def _archived(aws: LocalResources, event_id: str) -> bool:
    return event_id in archived(aws)


def _tampered(record: dict[str, Any]) -> dict[str, Any]:
    record["body"] = record["body"].replace("84.50", "8.45")
    return record


def _unsigned_message(_: dict[str, Any]) -> dict[str, Any]:
    return lambda_shapes.sqs_record(
        '{"hello":"world"}', {"source": {"DataType": "String", "StringValue": "someone-else"}}
    )


@pytest.mark.parametrize(
    ("body", "change", "reason"),
    [
        (b"<html>502 Bad Gateway</html>", None, "not_json"),
        (b'{"brand_id":663,"branch_id":1062,"orders":[]}', None, "invalid_envelope"),
        (b'{"brand_id":663,"branch_id":1062,"orders":[{"status":5}]}', None, "invalid_order"),
        (b'{"brand_id":663,"branch_id":1062,"orders":[{"id":1,"total":"Aisha Rahman"}]}', None, "invalid_order"),
        ("order_created_v2_batch.json", _tampered, "body_hash_mismatch"),
        ("order_created_v2_batch.json", _unsigned_message, "not_a_klikit_delivery"),
    ],
    ids=["not-json", "no-orders", "order-without-id", "money-not-a-number", "hash-mismatch", "not-ours"],
)
def test_poison_is_quarantined_in_the_dlq_with_its_reason_and_not_retried(
    processor: Invoke,
    aws: LocalResources,
    output: Output,
    body: bytes | str,
    change: Callable[[dict[str, Any]], dict[str, Any]] | None,
    reason: str,
) -> None:
    poison = delivery(body, ORDER_CREATED, event_id="evt-poison")
    record = sqs_record(poison)
    if change is not None:
        record = change(record)

    response = processor(sqs_event(record))

    assert failed_ids(response) == []
    [quarantined] = dlq_messages(aws)
    assert quarantined.body == record["body"]
    assert quarantined.attributes[QUARANTINE_REASON] == reason
    assert "Aisha" not in quarantined.attributes[QUARANTINE_DETAIL]
    assert len(quarantined.attributes[QUARANTINE_DETAIL]) <= 240
    if reason != "not_a_klikit_delivery":
        assert quarantined.attributes["event_id"] == "evt-poison"
    assert order_item(aws, "7821") is None and order_item(aws, "1") is None
    counted = output.metrics()
    assert counted[("EventsQuarantined", "")] == 1  # the service-wide series the alarms watch
    assert sum(v for (name, kind), v in counted.items() if name == "EventsQuarantined" and kind) == 1
    assert [log["reason"] for log in output.logs("poison delivery quarantined in the DLQ")] == [reason]
    # A body that is klikit's (hash verified) is archived even when it is poison; tampered bytes are not.
    assert _archived(aws, "evt-poison") is (reason not in {"body_hash_mismatch", "not_a_klikit_delivery"})


def test_the_invalid_order_reason_names_the_field_without_its_value(processor: Invoke, aws: LocalResources) -> None:
    body = b'{"brand_id":663,"branch_id":1062,"orders":[{"id":1,"total":"Aisha Rahman"}]}'
    processor(sqs_event(sqs_record(delivery(body, ORDER_CREATED))))

    [quarantined] = dlq_messages(aws)
    assert quarantined.attributes[QUARANTINE_DETAIL] == "orders.0.total:value_error"


def test_a_claim_check_that_is_gone_is_quarantined(processor: Invoke, aws: LocalResources) -> None:
    missing = delivery("order_created_v2_batch.json", ORDER_CREATED)
    uri = f"s3://{aws.bucket}/{claim_check_key(missing)}"

    response = processor(sqs_event(sqs_record(missing, body_s3_uri=uri)))

    assert failed_ids(response) == []
    [quarantined] = dlq_messages(aws)
    assert quarantined.attributes[QUARANTINE_REASON] == "claim_check_missing"


def test_when_the_dlq_cannot_take_poison_the_record_fails_so_sqs_keeps_it(
    processor: Invoke, aws: LocalResources
) -> None:
    boto3.client("sqs").delete_queue(QueueUrl=aws.dlq_url)
    record = sqs_record(delivery(b"not json", ORDER_CREATED))

    response = processor(sqs_event(record))

    assert failed_ids(response) == [record["messageId"]]


def test_a_redriven_message_with_a_stale_quarantine_reason_is_processed_normally(
    processor: Invoke, aws: LocalResources
) -> None:
    fine = delivery("order_status_updated.json", ORDER_STATUS_UPDATED, event_id="evt-redriven")
    body, attributes = sqs_message(fine)
    attributes[QUARANTINE_REASON] = {"DataType": "String", "StringValue": "old_reason"}

    response = processor(sqs_event(lambda_shapes.sqs_record(body, attributes, receive_count=1)))

    assert failed_ids(response) == []
    item = order_item(aws, "7821")
    assert item is not None and item["status"] == 5


def test_an_unknown_event_type_is_archived_counted_and_given_to_the_catch_all(
    processor: Invoke, registry: Registry, aws: LocalResources, output: Output
) -> None:
    seen: list[UnknownEvent] = []
    registry.on_unknown_event(name="test.catch-all")(seen.append)
    refund = delivery("order_status_updated.json", UNKNOWN_TYPE, event_id="evt-refund")
    record = sqs_record(refund)

    first = processor(sqs_event(record))
    second = processor(sqs_event(sqs_record(refund)))

    assert failed_ids(first) == [] and failed_ids(second) == []
    [event] = seen
    assert (event.event_id, event.event_type, event.body) == ("evt-refund", UNKNOWN_TYPE, refund.body)
    parsed = event.json()
    assert parsed is not None and parsed["orders"][0]["id"] == 7821
    assert _archived(aws, "evt-refund")
    assert order_item(aws, "7821") is None
    assert dlq_messages(aws) == []
    assert output.metrics()[("UnknownEventTypes", "unknown")] == 2
    [warning, _] = output.logs("unknown event type archived")
    assert warning["event_type"] == UNKNOWN_TYPE


def test_an_unknown_event_type_without_a_catch_all_is_not_an_error(processor: Invoke, aws: LocalResources) -> None:
    response = processor(sqs_event(sqs_record(delivery(b"\x00\xff binary", UNKNOWN_TYPE, event_id="evt-odd"))))

    assert failed_ids(response) == []
    assert dlq_messages(aws) == []
    assert _archived(aws, "evt-odd")


def test_a_failing_catch_all_is_retried(processor: Invoke, registry: Registry) -> None:
    attempts: list[str] = []

    @registry.on_unknown_event(name="test.flaky")
    def flaky(event: UnknownEvent) -> None:
        attempts.append(event.event_id)
        if len(attempts) == 1:
            raise TimeoutError("downstream slow")

    refund = delivery(json.dumps({"refund": 1}).encode(), UNKNOWN_TYPE, event_id="evt-flaky")
    record = sqs_record(refund)

    assert failed_ids(processor(sqs_event(record))) == [record["messageId"]]
    assert failed_ids(processor(sqs_event(sqs_record(refund, receive_count=2)))) == []
    assert failed_ids(processor(sqs_event(sqs_record(refund, receive_count=3)))) == []
    assert attempts == ["evt-flaky", "evt-flaky"]


def test_one_unusable_order_is_quarantined_after_the_other_orders_of_its_delivery_were_processed(
    processor: Invoke, registry: Registry, aws: LocalResources
) -> None:
    tickets: list[str] = []
    registry.on(ORDER_CREATED, name="pos.ticket")(lambda event: tickets.append(event.order_id))
    document = json.loads((FIXTURES / "order_created_v2_batch.json").read_bytes())
    document["orders"][1]["id"] = True  # no usable id: nothing can be stored for this order
    # numbers in text fields are taken as their text
    document["orders"][0]["external_id"] = 12345
    document["orders"][0]["cart"][0].update({"klikit_sku_id": 1001, "title": 7})
    record = sqs_record(delivery(json.dumps(document).encode(), ORDER_CREATED, event_id="evt-one-bad"))

    response = processor(sqs_event(record))

    assert failed_ids(response) == []
    item = order_item(aws, "7821")
    assert item is not None and item["external_id"] == "12345"
    assert (item["cart"][0]["klikit_sku_id"], item["cart"][0]["title"]) == ("1001", "7")
    assert tickets == ["7821"]
    [quarantined] = dlq_messages(aws)
    assert quarantined.attributes[QUARANTINE_REASON] == "invalid_order"
    assert quarantined.attributes[QUARANTINE_DETAIL].startswith("orders.1.id:")

    # after a fix, the redrive re-runs only what did not complete: order 7821's ticket is not printed again
    processor(
        sqs_event(
            lambda_shapes.sqs_record(
                quarantined.body,
                {
                    k: {"DataType": "String", "StringValue": v}
                    for k, v in quarantined.attributes.items()
                    if k not in (QUARANTINE_REASON, QUARANTINE_DETAIL)
                },
            )
        )
    )
    assert tickets == ["7821"]


def test_a_poison_body_within_bytes_of_sqs_limit_is_quarantined_as_a_claim_check(
    processor: Invoke, aws: LocalResources
) -> None:
    probe = delivery(b"", ORDER_CREATED, event_id="evt-huge-poison")
    attributes_bytes = sqs_message_size("", sqs_message(probe)[1])
    # not JSON, and 20 bytes short of SQS's 1 MiB with the delivery's own attributes: it fits the queue, but
    # not the DLQ once the quarantine reason and detail are added
    body = b"<" * (1024 * 1024 - attributes_bytes - 20)
    poison = delivery(body, ORDER_CREATED, event_id="evt-huge-poison")
    assert sqs_message_size(*sqs_message(poison)) < 1024 * 1024

    response = processor(sqs_event(sqs_record(poison)))

    assert failed_ids(response) == []
    [quarantined] = dlq_messages(aws)
    assert quarantined.attributes[QUARANTINE_REASON] == "not_json"
    uri = quarantined.attributes["body_s3_uri"]
    assert len(quarantined.body) < 1024 and json.loads(quarantined.body)["claim_check"] == uri
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    assert boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert quarantined.attributes["body_sha256"] == poison.body_sha256  # a redrive reads and checks it again
