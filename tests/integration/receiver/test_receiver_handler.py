"""The receiver as klikit and the user see it: the reply, what landed in DynamoDB, SQS and S3, and the logs."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from klikit import delivery as contract
from klikit import limits
from klikit.signature import sign
from tests.conftest import OLD_SECRET, SECRET, StructuredLogs, api_event, load_fixture
from tests.faults import Faults
from tools.local.resources import LocalResources

Receive = Callable[[dict[str, Any]], tuple[int, Any]]
Queued = Callable[[], list[dict[str, Any]]]
Items = Callable[[], list[dict[str, Any]]]

CREATED = load_fixture("order_created_v2_batch.json")


def attr(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    return value["StringValue"] if value else None


def set_secret(aws: LocalResources, value: str) -> None:
    boto3.client("secretsmanager").put_secret_value(SecretId=aws.secret_id, SecretString=value)


# --- the happy path ---------------------------------------------------------------------------------------


def test_signed_delivery_is_acknowledged_and_queued_with_its_raw_body(
    receive: Receive, queued: Queued, idempotency_items: Items
) -> None:
    status, body = receive(api_event(CREATED, event_id="evt-created-1"))

    assert (status, body) == (200, {"status": "received"})
    [message] = queued()
    assert message["Body"].encode() == CREATED  # unchanged bytes, never re-serialized
    assert attr(message, contract.EVENT_ID) == "evt-created-1"
    assert attr(message, contract.EVENT_TYPE) == "klikit.order.created.v2"
    assert attr(message, contract.BODY_SHA256) == hashlib.sha256(CREATED).hexdigest()
    assert attr(message, contract.BODY_ENCODING) == contract.UTF8
    assert (attr(message, contract.RECEIVED_AT) or "").endswith("Z")
    [record] = idempotency_items()
    assert record["status"]["S"] == "COMPLETED"


def test_idempotency_record_expires_after_the_configured_ttl(receive: Receive, idempotency_items: Items) -> None:
    receive(api_event(CREATED))

    [record] = idempotency_items()
    days = (int(record["expiration"]["N"]) - time.time()) / 86_400
    assert 29.9 < days <= 30


def test_verify_page_recipe_gets_the_documented_reply(receive: Receive, queued: Queued) -> None:
    body = b'{"brand_id":1,"branch_id":2,"orders":[{"id":42}]}'
    status, reply = receive(api_event(body, event_id="test-5f0c9b1e"))

    assert (status, reply) == (200, {"status": "received"})
    assert [m["Body"] for m in queued()] == [body.decode()]


@pytest.mark.parametrize(
    "names",
    [
        ("X-Klikit-Signature", "X-Klikit-Event-Id", "X-Klikit-Event-Type"),
        ("X-KLIKIT-SIGNATURE", "x-klikit-event-id", "X-KlIkIt-EvEnT-TyPe"),
    ],
)
def test_header_names_are_read_case_insensitively(receive: Receive, queued: Queued, names: tuple[str, ...]) -> None:
    headers = dict(zip(names, (sign(SECRET, CREATED), "evt-case", "klikit.order.created.v2"), strict=True))

    status, _ = receive(api_event(CREATED, headers=headers))

    assert status == 200
    assert len(queued()) == 1


def test_headers_given_only_as_multi_value_headers_are_accepted(receive: Receive, queued: Queued) -> None:
    event = api_event(CREATED)
    event["headers"] = None

    status, _ = receive(event)

    assert status == 200
    assert len(queued()) == 1


def test_base64_encoded_body_is_verified_and_queued_as_the_original_bytes(receive: Receive, queued: Queued) -> None:
    status, _ = receive(api_event(CREATED, base64_encoded=True))

    assert status == 200
    [message] = queued()
    assert message["Body"].encode() == CREATED


def test_body_that_is_not_utf8_text_travels_base64_and_reads_back_byte_exact(receive: Receive, queued: Queued) -> None:
    raw = b"\xff\xfe not json \x00\x01"
    status, _ = receive(api_event(raw, base64_encoded=True, event_type="klikit.order.mystery"))

    assert status == 200
    [message] = queued()
    assert attr(message, contract.BODY_ENCODING) == contract.BASE64
    assert contract.read_body(contract.queued_delivery(message), lambda bucket, key: b"") == raw


@pytest.mark.parametrize(
    ("body", "event_type"),
    [(b"this is not json", "klikit.order.created.v2"), (CREATED, "klikit.order.refunded.v9"), (b"", "x")],
    ids=["not-json", "unknown-type", "empty-body"],
)
def test_signed_delivery_with_unknown_type_or_non_json_body_is_still_queued_unchanged(
    receive: Receive, queued: Queued, body: bytes, event_type: str
) -> None:
    status, reply = receive(api_event(body, event_type=event_type, base64_encoded=True))

    assert (status, reply) == (200, {"status": "received"})
    [message] = queued()
    assert attr(message, contract.EVENT_TYPE) == event_type
    assert contract.read_body(contract.queued_delivery(message), lambda bucket, key: b"") == body


# --- rejections: nothing is written anywhere --------------------------------------------------------------


@pytest.mark.parametrize(
    "missing",
    [
        ["x-klikit-signature"],
        ["x-klikit-event-id"],
        ["x-klikit-event-type"],
        ["x-klikit-signature", "x-klikit-event-id"],
    ],
)
def test_missing_klikit_headers_are_rejected_naming_them(
    receive: Receive, queued: Queued, idempotency_items: Items, missing: list[str]
) -> None:
    event = api_event(CREATED)
    headers = {k: v for k, v in event["headers"].items() if k not in missing}

    status, body = receive(api_event(CREATED, headers=headers))

    assert (status, body) == (400, {"error": "missing klikit headers", "missing": missing})
    assert queued() == []
    assert idempotency_items() == []


def test_empty_header_counts_as_missing(receive: Receive) -> None:
    event = api_event(CREATED)
    event["headers"]["x-klikit-event-id"] = "  "
    event["multiValueHeaders"]["x-klikit-event-id"] = ["  "]

    status, body = receive(event)

    assert (status, body) == (400, {"error": "missing klikit headers", "missing": ["x-klikit-event-id"]})


def test_a_klikit_header_sent_twice_with_different_values_is_rejected(receive: Receive, queued: Queued) -> None:
    event = api_event(CREATED)
    event["multiValueHeaders"]["x-klikit-event-id"] = ["evt-a", "evt-b"]

    status, body = receive(event)

    assert (status, body) == (400, {"error": "invalid klikit headers", "invalid": ["x-klikit-event-id"]})
    assert queued() == []


def test_body_over_the_configured_maximum_is_rejected_with_413(
    receive: Receive, queued: Queued, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "1000")

    status, body = receive(api_event(CREATED))

    assert status == 413
    assert body == {"error": "body too large", "size_bytes": len(CREATED), "limit_bytes": 1000}
    assert queued() == []


def test_body_just_over_what_api_gateway_can_pass_base64_gets_the_receivers_own_413(
    receive: Receive, queued: Queued
) -> None:
    body = b"x" * (limits.MAX_BODY_BYTES + 1)

    status, reply = receive(api_event(body))

    assert status == 413
    assert reply == {"error": "body too large", "size_bytes": len(body), "limit_bytes": 4_669_440}
    assert queued() == []


def test_forged_signature_is_rejected_and_nothing_is_queued(
    receive: Receive, queued: Queued, idempotency_items: Items
) -> None:
    status, body = receive(api_event(CREATED, secret="not-the-secret"))

    assert (status, body) == (401, {"error": "invalid signature"})
    assert queued() == []
    assert idempotency_items() == []


def test_tampered_body_byte_is_rejected(receive: Receive, queued: Queued) -> None:
    event = api_event(CREATED)
    event["body"] = CREATED.replace(b'"total":"84.50"', b'"total":"04.50"').decode()

    status, body = receive(event)

    assert (status, body) == (401, {"error": "invalid signature"})
    assert queued() == []


def test_reserialized_json_with_the_same_content_fails_verification(receive: Receive, queued: Queued) -> None:
    event = api_event(CREATED)
    event["body"] = json.dumps(json.loads(CREATED), indent=2)

    status, _ = receive(event)

    assert status == 401
    assert queued() == []


@pytest.mark.parametrize(
    "signature",
    ["", "abc", "Z" * 64, "é" * 64, "sha256=" + "0" * 64],
    ids=["empty", "short", "non-hex", "non-ascii", "prefixed"],
)
def test_malformed_signatures_are_rejected_without_error(receive: Receive, queued: Queued, signature: str) -> None:
    status, body = receive(api_event(CREATED, signature=signature))

    assert status in (400, 401)
    assert "error" in body
    assert queued() == []


def test_uppercase_hex_signature_is_rejected(receive: Receive) -> None:
    status, _ = receive(api_event(CREATED, signature=sign(SECRET, CREATED).upper()))

    assert status == 401


def test_a_secret_with_a_trailing_newline_is_the_wrong_secret(receive: Receive, aws: LocalResources) -> None:
    set_secret(aws, SECRET + "\n")

    assert receive(api_event(CREATED))[0] == 401
    assert receive(api_event(CREATED, secret=SECRET + "\n"))[0] == 200


def test_invalid_base64_body_is_rejected_with_400(receive: Receive, queued: Queued) -> None:
    event = api_event(CREATED, base64_encoded=True)
    event["body"] = "!!!not base64!!!"

    status, body = receive(event)

    assert (status, body) == (400, {"error": "invalid body encoding"})
    assert queued() == []


# --- secret rotation --------------------------------------------------------------------------------------


def test_during_a_rotation_both_active_secrets_are_accepted_and_a_retired_one_is_not(
    receive: Receive, queued: Queued, aws: LocalResources
) -> None:
    set_secret(aws, json.dumps({"active": [SECRET, OLD_SECRET]}))

    assert receive(api_event(CREATED, secret=SECRET))[0] == 200
    assert receive(api_event(CREATED, secret=OLD_SECRET))[0] == 200
    assert receive(api_event(CREATED, secret="whsec_retired_long_ago"))[0] == 401
    assert len(queued()) == 2


def test_a_secret_rotated_after_it_was_cached_is_picked_up_on_the_first_mismatch(
    receive: Receive, aws: LocalResources, capsys: pytest.CaptureFixture[str]
) -> None:
    assert receive(api_event(CREATED, secret=SECRET))[0] == 200  # caches SECRET
    set_secret(aws, "whsec_new_after_rotation")

    status, _ = receive(api_event(CREATED, secret="whsec_new_after_rotation"))

    assert status == 200
    assert '"SecretRefreshes":[1' in capsys.readouterr().out.replace(" ", "")


def test_forged_traffic_refreshes_the_secret_at_most_once_per_interval(receive: Receive, faults: Faults) -> None:
    for _ in range(20):
        assert receive(api_event(CREATED, secret="forger"))[0] == 401

    # one read to fill the cache, one forced refresh; the next 19 forgeries cost no Secrets Manager call
    assert faults.calls.get("secretsmanager.GetSecretValue") == 2


def test_a_secrets_manager_outage_keeps_verifying_with_the_last_good_secret_and_still_refuses_forgeries(
    receive: Receive,
    queued: Queued,
    faults: Faults,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SECRET_CACHE_SECONDS", "0")  # every delivery reads Secrets Manager: the cache has expired
    assert receive(api_event(CREATED, secret=SECRET))[0] == 200
    faults.fail("secretsmanager.GetSecretValue", code="InternalServiceError", times=-1)

    assert receive(api_event(CREATED, secret=SECRET))[0] == 200
    assert receive(api_event(CREATED, secret="forger"))[0] == 401

    assert len(queued()) == 2
    assert '"SecretGraceUsed":[1' in capsys.readouterr().out.replace(" ", "")


@pytest.mark.parametrize(
    "value",
    [" " + json.dumps({"active": [SECRET]}), json.dumps({"active": SECRET}), '{"active": []}', '{"Active": ["x"]}'],
    ids=["leading-space", "active-not-a-list", "active-empty", "wrong-case"],
)
def test_malformed_rotation_json_is_a_configuration_error_with_its_log_line_and_metric(
    receive: Receive,
    aws: LocalResources,
    structured_logs: StructuredLogs,
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    set_secret(aws, value)

    status, body = receive(api_event(CREATED, secret=SECRET))

    assert (status, body["error"]) == (503, "temporarily unavailable")  # klikit retries once the value is fixed
    [line] = [r for r in structured_logs.records() if "malformed rotation JSON" in r["message"]]
    assert line["level"] == "ERROR" and line["expected"] == '{"active": ["<new secret>", "<old secret>"]}'
    assert SECRET not in structured_logs.text
    assert '"SecretMisconfigured":[1' in capsys.readouterr().out.replace(" ", "")


# --- idempotency ------------------------------------------------------------------------------------------


def test_repeat_after_success_is_acknowledged_as_duplicate_and_not_queued_again(
    receive: Receive, queued: Queued
) -> None:
    first = receive(api_event(CREATED, event_id="evt-dup"))
    second = receive(api_event(CREATED, event_id="evt-dup"))

    assert first == (200, {"status": "received"})
    assert second == (200, {"status": "duplicate-ignored"})
    assert len(queued()) == 1


def test_repeat_with_a_different_body_is_a_duplicate_and_is_flagged_in_logs(
    receive: Receive, queued: Queued, structured_logs: StructuredLogs
) -> None:
    receive(api_event(CREATED, event_id="evt-reused"))
    status, body = receive(api_event(load_fixture("order_status_updated.json"), event_id="evt-reused"))

    assert (status, body) == (200, {"status": "duplicate-ignored"})
    assert len(queued()) == 1
    [warning] = [r for r in structured_logs.records() if "different body" in r["message"]]
    assert warning["correlation_id"] == "evt-reused"


def test_log_lines_leave_out_what_the_log_group_already_says(
    receive: Receive, structured_logs: StructuredLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0")

    receive(api_event(CREATED, event_id="evt-lean"))

    [accepted] = [r for r in structured_logs.records() if r["message"] == "delivery accepted"]
    assert accepted["correlation_id"] == "evt-lean" and accepted["outcome"] == "received"
    assert "function_request_id" in accepted and "cold_start" in accepted and accepted["body_bytes"] > 0
    # the log group names the function and the REPORT line its memory, a traceback says where: not paid for again;
    # the SQS message id is the processor's to log, and `offloaded_to_s3` appears only when true
    assert not {"function_name", "function_arn", "function_memory_size", "location"} & set(accepted)
    assert not {"message_id", "offloaded_to_s3", "xray_trace_id"} & set(accepted)


def test_a_sampled_invocation_keeps_its_xray_trace_id_on_the_log_line(
    receive: Receive, structured_logs: StructuredLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")

    receive(api_event(CREATED, event_id="evt-traced"))

    [accepted] = [r for r in structured_logs.records() if r["message"] == "delivery accepted"]
    assert accepted["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"  # `klikit events` links the trace


def test_concurrent_repeat_while_the_first_is_in_flight_gets_409(
    receive: Receive, queued: Queued, faults: Faults
) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold_first_send() -> None:
        entered.set()
        release.wait(10)

    faults.hold("sqs.SendMessage", hold_first_send)
    results: list[tuple[int, Any]] = []
    first = threading.Thread(target=lambda: results.append(receive(api_event(CREATED, event_id="evt-race"))))
    first.start()
    assert entered.wait(10)

    second = receive(api_event(CREATED, event_id="evt-race"))
    release.set()
    first.join(10)

    assert second[0] == 409
    assert second[1]["error"] == "delivery in progress"
    assert results == [(200, {"status": "received"})]
    assert len(queued()) == 1


# --- failures: a signed delivery is never lost ------------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    ["sqs.SendMessage", "dynamodb.PutItem", "secretsmanager.GetSecretValue"],
)
def test_aws_failure_answers_503_and_klikits_retry_is_queued_exactly_once(
    receive: Receive, queued: Queued, idempotency_items: Items, faults: Faults, operation: str
) -> None:
    faults.fail(operation, times=1)

    failed = receive(api_event(CREATED, event_id="evt-retry"))
    assert failed[0] == 503
    assert failed[1]["error"] == "temporarily unavailable"
    assert queued() == []
    assert all(item["status"]["S"] != "COMPLETED" for item in idempotency_items())

    retried = receive(api_event(CREATED, event_id="evt-retry"))

    assert retried == (200, {"status": "received"})
    assert len(queued()) == 1


def test_body_above_the_sqs_limit_round_trips_byte_exact_through_s3(
    receive: Receive, queued: Queued, aws: LocalResources, capsys: pytest.CaptureFixture[str]
) -> None:
    order = json.loads(CREATED)["orders"][0]
    big = json.dumps({"brand_id": 663, "branch_id": 1062, "orders": [order] * 500}).encode()
    assert len(big) > 1024 * 1024

    status, _ = receive(api_event(big, event_id="evt-big"))

    assert status == 200
    [message] = queued()
    queued_delivery = contract.queued_delivery(message)
    assert queued_delivery.body_s3_uri is not None
    assert queued_delivery.body_s3_uri.startswith(f"s3://{aws.bucket}/claim-checks/evt-big/")
    s3 = boto3.client("s3")
    restored = contract.read_body(queued_delivery, lambda b, k: s3.get_object(Bucket=b, Key=k)["Body"].read())
    assert restored == big
    assert '"OffloadedToS3":[1' in capsys.readouterr().out.replace(" ", "")


def test_s3_failure_for_a_large_body_answers_503_and_queues_nothing(
    receive: Receive, queued: Queued, faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQS_MAX_MESSAGE_BYTES", "2048")
    faults.fail("s3.PutObject", times=1)

    assert receive(api_event(CREATED, event_id="evt-s3"))[0] == 503
    assert queued() == []
    assert receive(api_event(CREATED, event_id="evt-s3"))[0] == 200
    assert len(queued()) == 1


# --- logs -------------------------------------------------------------------------------------------------


def test_logs_never_contain_the_secret_the_signature_or_the_body(
    receive: Receive, structured_logs: StructuredLogs
) -> None:
    good = api_event(CREATED, event_id="evt-log-1")
    forged = api_event(CREATED, event_id="evt-log-2", secret="forged-secret-value")
    receive(good)
    receive(good)
    receive(forged)

    out = structured_logs.text
    outcomes = [(r.get("correlation_id"), r.get("outcome")) for r in structured_logs.records()]
    assert outcomes == [
        ("evt-log-1", "received"),
        ("evt-log-1", "duplicate"),
        ("evt-log-2", "rejected"),
    ]  # the event id is the correlation id
    for leaked in (
        SECRET,
        "forged-secret-value",
        good["headers"]["x-klikit-signature"],
        forged["headers"]["x-klikit-signature"],
        "Aisha",
        "+971501234567",
        "Villa 12",
    ):
        assert leaked not in out
    assert base64.b64encode(CREATED).decode()[:40] not in out
