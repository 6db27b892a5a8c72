"""The SQS message contract: any signed body travels to the processor and back byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klikit import delivery as contract
from klikit.errors import BodyIntegrityError, PoisonDelivery


def as_lambda_record(body: str, attributes: dict[str, dict[str, str]]) -> dict[str, object]:
    return {
        "messageId": "m-1",
        "body": body,
        "messageAttributes": {
            k: {"stringValue": v["StringValue"], "dataType": "String"} for k, v in attributes.items()
        },
    }


@given(st.binary(max_size=2048), st.text(min_size=1, max_size=64).filter(str.isprintable))
def test_any_body_round_trips_inline(body: bytes, event_id: str) -> None:
    delivery = contract.Delivery.of(event_id, "klikit.order.created.v2", body, "2026-06-25T09:14:11.000Z")
    message, attributes = contract.sqs_message(delivery)
    queued = contract.queued_delivery(as_lambda_record(message, attributes))

    assert message  # SQS refuses empty bodies
    assert contract.read_body(queued, lambda bucket, key: b"") == body
    assert queued.event_id == event_id


def test_claim_check_reads_the_body_from_s3() -> None:
    delivery = contract.Delivery.of("evt/1 ü", "t", b'{"big": true}', "now")
    key = contract.claim_check_key(delivery)
    message, attributes = contract.sqs_message(delivery, body_s3_uri=f"s3://bucket/{key}")
    store = {("bucket", key): delivery.body}

    queued = contract.queued_delivery(as_lambda_record(message, attributes))

    assert key.startswith("claim-checks/evt%2F1%20%C3%BC/")
    assert contract.read_body(queued, lambda bucket, k: store[(bucket, k)]) == delivery.body


def test_a_body_that_does_not_hash_to_the_recorded_sha256_is_poison() -> None:
    delivery = contract.Delivery.of("evt-1", "t", b"original", "now")
    message, attributes = contract.sqs_message(delivery)

    with pytest.raises(BodyIntegrityError):
        contract.read_body(contract.queued_delivery(as_lambda_record(message + "x", attributes)), lambda b, k: b"")


def test_a_message_without_our_attributes_is_poison() -> None:
    with pytest.raises(PoisonDelivery) as raised:
        contract.queued_delivery({"messageId": "m", "body": "{}", "messageAttributes": {}})
    assert raised.value.reason == "not_a_klikit_delivery"


def test_size_counts_body_and_attributes_in_utf8_bytes() -> None:
    attributes = {"a": {"DataType": "String", "StringValue": "é"}}
    assert contract.sqs_message_size("ü", attributes) == 2 + 1 + 6 + 2
