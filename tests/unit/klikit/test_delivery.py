"""The SQS message contract: any signed body travels to the processor and back byte for byte."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra import lambda_shapes
from klikit import delivery as contract
from klikit.errors import BodyIntegrityError, PoisonDelivery


def as_lambda_record(body: str, attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, object]:
    return lambda_shapes.sqs_record(body, attributes, message_id="m-1")


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


# --- S3 keys: under S3's 1,024-byte limit whatever the (unsigned) event id ------------------------------------

LONG_NON_ASCII_ID = "订单事件" * 64  # 256 characters, the most a header may hold; 768 bytes in UTF-8, 2,304 quoted


def test_a_short_event_id_is_kept_readable_in_its_keys() -> None:
    delivery = contract.Delivery.of("evt/1 ü", "t", b"{}", "2026-06-25T23:59:59.999Z")

    assert contract.archive_key(delivery.event_id, contract.received_day(delivery.received_at)) == (
        "archive/2026-06-25/evt%2F1%20%C3%BC"
    )


def test_a_long_non_ascii_event_id_is_hashed_so_every_key_fits_s3() -> None:
    delivery = contract.Delivery.of(LONG_NON_ASCII_ID, "t", b"{}", "2026-06-25T09:30:00Z")

    archive = contract.archive_key(delivery.event_id, contract.received_day(delivery.received_at))
    claim_check = contract.claim_check_key(delivery)

    assert archive.startswith("archive/2026-06-25/sha256-")
    assert claim_check.startswith("claim-checks/sha256-")
    assert max(len(archive.encode()), len(claim_check.encode())) <= contract.S3_MAX_KEY_BYTES
    assert contract.key_token(LONG_NON_ASCII_ID) != contract.key_token(LONG_NON_ASCII_ID[:-1])


@given(st.text(min_size=1, max_size=256))
def test_every_key_fits_s3s_limit_for_any_event_id(event_id: str) -> None:
    delivery = contract.Delivery.of(event_id, "t", b"{}", "2026-06-25T09:30:00Z")

    for key in (
        contract.archive_key(event_id, contract.received_day(delivery.received_at)),
        contract.claim_check_key(delivery),
    ):
        assert len(key.encode("utf-8")) <= contract.S3_MAX_KEY_BYTES


@pytest.mark.parametrize(
    ("received_at", "day"),
    [
        ("2026-06-25T23:59:59Z", "2026-06-25"),
        ("2026-06-26T01:00:00+02:00", "2026-06-25"),
        ("2026-06-25T00:00:00", "2026-06-25"),
    ],
)
def test_the_archive_day_is_the_utc_day_the_delivery_was_received(received_at: str, day: str) -> None:
    assert contract.received_day(received_at).isoformat() == day
