"""The CLI's and the local stack's pieces on their own: signing and send options, the gateway's event, the worker's
batch bookkeeping, and the DLQ list/redrive on in-process moto."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from klikit import delivery
from klikit.archive import ArchiveRecord, batch_key, encode, id_hash
from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from klikit.signature import matches_any, sign
from tests.conftest import SECRET
from tools import REPO_ROOT, archive, dlq, sender
from tools.cli import main
from tools.local import config as local_config
from tools.local.console import processor_steps, receiver_step
from tools.local.gateway import api_gateway_event
from tools.local.logs import parse_since
from tools.local.resources import LOCAL_REGION, LocalResources
from tools.local.state import keep_previous_logs

BODY = b'{"brand_id":1,"branch_id":2,"orders":[{"id":42}]}'


def a_delivery(body: bytes = BODY) -> sender.Delivery:
    return sender.Delivery(body, "evt-1", ORDER_CREATED)


# --- signing and send options --------------------------------------------------------------------------------


def test_signed_headers_carry_klikits_signature_of_the_exact_body() -> None:
    headers = sender.signed_headers(a_delivery(), sender.SignOptions(secret=SECRET))

    assert headers["x-klikit-signature"] == sign(SECRET, BODY)
    assert matches_any(headers["x-klikit-signature"], BODY, [SECRET])
    assert headers["x-klikit-event-id"] == "evt-1"
    assert headers["x-klikit-event-type"] == ORDER_CREATED
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("option", ["tamper", "wrong_secret"])
def test_forging_options_produce_a_signature_the_secret_does_not_match(option: str) -> None:
    options = sender.SignOptions(secret=SECRET, tamper=option == "tamper", wrong_secret=option == "wrong_secret")

    signature = sender.signed_headers(a_delivery(), options)["x-klikit-signature"]

    assert len(signature) == 64
    assert not matches_any(signature, BODY, [SECRET])


def test_without_header_leaves_exactly_those_headers_out_whatever_their_case() -> None:
    options = sender.SignOptions(secret=SECRET, omit=("X-Klikit-Signature", "content-type"))

    headers = sender.signed_headers(a_delivery(), options)

    assert "x-klikit-signature" not in headers
    assert "Content-Type" not in headers
    assert "x-klikit-event-id" in headers


@pytest.mark.parametrize(
    ("alias", "event_type"),
    [("created", ORDER_CREATED), ("status", ORDER_STATUS_UPDATED), ("cart", ORDER_CART_UPDATED)],
)
def test_each_sample_is_a_klikit_envelope_of_its_event_type(alias: str, event_type: str) -> None:
    document = json.loads(sender.sample_body(alias))

    assert sender.event_type_for(alias) == event_type
    assert isinstance(document["brand_id"], int) and isinstance(document["branch_id"], int)
    assert document["orders"] and all(isinstance(order["id"], int) for order in document["orders"])


def test_created_sample_is_a_two_order_batch_renumbered_by_order_id() -> None:
    document = json.loads(sender.sample_body("created", order_id=500))

    assert [order["id"] for order in document["orders"]] == [500, 501]


def test_unknown_event_types_are_sent_as_given() -> None:
    assert sender.event_type_for("klikit.order.refunded.v9") == "klikit.order.refunded.v9"


@pytest.mark.parametrize(
    ("text", "size"),
    [("1200000", 1_200_000), ("900KB", 900_000), ("1.5MB", 1_500_000), ("2MiB", 2 * 1024 * 1024), ("64k", 64_000)],
)
def test_sizes_read_like_people_write_them(text: str, size: int) -> None:
    assert sender.parse_size(text) == size


def test_a_size_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a size"):
        sender.parse_size("big")


@pytest.mark.parametrize("text", ["1.2", "1200000"])
def test_large_needs_a_unit_rather_than_padding_to_one_byte(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["send", "created", "--large", text, "--url", "http://127.0.0.1:9/webhooks/klikit"])

    assert code == 1
    assert f"--large: {text} has no unit: write {text}MB" in capsys.readouterr().err


def test_the_previous_runs_function_logs_are_kept(tmp_path: Path) -> None:
    (tmp_path / "receiver.log").write_text("last run\n")
    (tmp_path / "processor.log").write_text("last run too\n")

    keep_previous_logs(tmp_path)

    assert (tmp_path / "receiver.previous.log").read_text() == "last run\n"
    assert (tmp_path / "processor.previous.log").read_text() == "last run too\n"
    assert not (tmp_path / "receiver.log").exists()


def test_make_help_shows_the_port_not_a_make_variable() -> None:
    shown = subprocess.run(["make", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout

    assert "$(PORT)" not in shown
    assert "http://127.0.0.1:3000" in shown


def test_a_bad_cdk_json_value_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({"dlq_max_receive_count": "many"}), "CDK_OUTDIR": str(tmp_path)}

    synth = subprocess.run(
        [sys.executable, "-m", "infra.app"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )

    assert synth.returncode == 1
    assert "Traceback" not in synth.stderr
    assert synth.stderr.strip().splitlines()[-1] == (  # after any warning of jsii's about the Node version
        "cdk.json: invalid cdk.json context 'dlq_max_receive_count': 'many' (expected an integer from 1 to 1000)"
    )


def test_local_with_a_bad_cdk_json_says_which_value_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "cdk.json"
    bad.write_text(json.dumps({"app": "x", "context": {"dlq_max_receive_count": 0}}))
    monkeypatch.setattr(local_config, "CDK_JSON", bad)

    code = main(["local", "--port", "0", "--state-dir", str(tmp_path)])

    err = capsys.readouterr().err
    assert code == 1
    assert "invalid cdk.json context 'dlq_max_receive_count': 0" in err
    assert "Traceback" not in err


def test_a_deployed_stack_without_credentials_is_told_about_credentials_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [*os.environ]:
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    code = main(["dlq", "list", "--stack", "KlikitWebhooks"])

    assert code == 1
    assert "no AWS credentials" in capsys.readouterr().err


def test_large_body_is_exactly_the_size_asked_and_still_the_same_envelope() -> None:
    padded = sender.pad_to(sender.sample_body("status"), 1_100_000)

    assert len(padded) == 1_100_000
    document = json.loads(padded)
    assert document["orders"] == json.loads(sender.sample_body("status"))["orders"]


def test_hints_explain_refusals_and_duplicates() -> None:
    plain = sender.SignOptions(secret=SECRET)
    forged = sender.SignOptions(secret=SECRET, tamper=True)
    unauthorized = sender.Reply(401, b'{"error":"invalid signature"}')

    assert "secret" in (sender.hint(unauthorized, plain) or "")
    assert "as it should be" in (sender.hint(unauthorized, forged) or "")
    assert "received before" in (sender.hint(sender.Reply(200, b'{"status":"duplicate-ignored"}'), plain) or "")
    assert sender.hint(sender.Reply(200, b'{"status":"received"}'), plain) is None


# --- the local gateway's event -------------------------------------------------------------------------------


def test_gateway_event_carries_the_exact_bytes_base64_encoded_and_every_header_value() -> None:
    body = b'{"a": 1}\r\n\xff'
    pairs = [("X-Klikit-Event-Id", "one"), ("x-klikit-event-id", "two"), ("Content-Type", "application/json")]

    event = api_gateway_event("POST", "/webhooks/klikit?x=1&x=2", pairs, body, "127.0.0.1")

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body
    assert event["headers"]["X-Klikit-Event-Id"] == "one"  # sender's casing
    assert event["headers"]["x-klikit-event-id"] == "two"
    assert event["multiValueHeaders"]["Content-Type"] == ["application/json"]
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["path"] == "/webhooks/klikit"
    assert event["resource"] == "/webhooks/klikit"


def test_gateway_event_for_an_empty_body_is_an_empty_base64_string() -> None:
    event = api_gateway_event("POST", "/webhooks/klikit", [], b"", "127.0.0.1")

    assert event["body"] == ""
    assert event["isBase64Encoded"] is True


# --- console lines -------------------------------------------------------------------------------------------


def test_receiver_step_names_the_outcome_and_the_reason() -> None:
    reason = [{"level": "WARNING", "reason": "missing klikit headers: x-klikit-signature"}]

    assert receiver_step(200, b'{"status":"received"}', [], 10)[0] == "received"
    assert receiver_step(200, b'{"status":"duplicate-ignored"}', [], 10)[0] == "duplicate"
    assert receiver_step(400, b'{"error":"missing klikit headers"}', reason, 10) == (
        "rejected",
        "400 missing klikit headers: x-klikit-signature",
    )
    assert receiver_step(503, b'{"error":"temporarily unavailable"}', [], 10)[0] == "unavailable"


def _record(message_id: str, receive_count: int = 1, body: str = '{"orders":[{"id":7}]}') -> dict[str, Any]:
    return {
        "messageId": message_id,
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count)},
        "messageAttributes": {"event_id": {"stringValue": f"evt-{message_id}", "dataType": "String"}},
    }


def test_processor_steps_tell_processed_quarantined_retrying_and_dead_letter_apart() -> None:
    records = [_record("a"), _record("b"), _record("c", 1), _record("d", 3)]
    logs = [{"level": "ERROR", "message_id": "b", "reason": "not_json", "message": "poison delivery quarantined"}]

    steps = processor_steps(records, {"c", "d"}, logs, max_receive_count=3, crashed=None)

    assert [(word, event_id) for word, event_id, _, _ in steps] == [
        ("processed", "evt-a"),
        ("quarantined", "evt-b"),
        ("retrying", "evt-c"),
        ("dead-letter", "evt-d"),
    ]
    assert steps[0][3] == "orders 7"
    assert "not_json" in steps[1][3]


# --- DLQ list and redrive (in-process moto) -------------------------------------------------------------------


def _quarantine(sqs: Any, resources: LocalResources, event_id: str, reason: str | None) -> None:
    body, attributes = delivery.sqs_message(delivery.Delivery.of(event_id, ORDER_CREATED, BODY, "2026-06-25T09:14:11Z"))
    if reason:
        attributes[delivery.QUARANTINE_REASON] = {"DataType": "String", "StringValue": reason}
        attributes[delivery.QUARANTINE_DETAIL] = {"DataType": "String", "StringValue": "why"}
    sqs.send_message(QueueUrl=resources.dlq_url, MessageBody=body, MessageAttributes=attributes)


def _drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while messages := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=60
    ).get("Messages"):
        found.extend(messages)
    return found


def test_dlq_list_says_why_each_is_there_and_leaves_them_in_place(aws: LocalResources) -> None:
    sqs = boto3.client("sqs", region_name=LOCAL_REGION)
    _quarantine(sqs, aws, "evt-poison", "not_json")
    _quarantine(sqs, aws, "evt-tired", None)

    letters = dlq.list_dead_letters(sqs, aws.dlq_url, wait_seconds=0)

    assert {letter.summary()["event_id"]: letter.summary()["reason"] for letter in letters} == {
        "evt-poison": "not_json",
        "evt-tired": "receive_limit",
    }
    assert "quarantined: not_json (why)" in {letter.reason for letter in letters}
    assert dlq.depth(sqs, aws.dlq_url) == 2
    assert len(dlq.list_dead_letters(sqs, aws.dlq_url, wait_seconds=0)) == 2


def test_redrive_moves_body_and_delivery_attributes_back_without_the_quarantine_reason(aws: LocalResources) -> None:
    sqs = boto3.client("sqs", region_name=LOCAL_REGION)
    _quarantine(sqs, aws, "evt-1", "not_json")
    _quarantine(sqs, aws, "evt-2", None)
    progress: list[int] = []

    redriven = dlq.redrive(sqs, aws.dlq_url, aws.queue_url, progress=progress.append, wait_seconds=0)

    assert redriven == (2, 0)
    assert progress == [1, 2]
    assert _drain(sqs, aws.dlq_url) == []
    back = _drain(sqs, aws.queue_url)
    assert sorted(m["MessageAttributes"]["event_id"]["StringValue"] for m in back) == ["evt-1", "evt-2"]
    for message in back:
        assert delivery.QUARANTINE_REASON not in message["MessageAttributes"]
        assert delivery.QUARANTINE_DETAIL not in message["MessageAttributes"]
        queued = delivery.queued_delivery(message)
        assert delivery.read_body(queued, lambda bucket, key: b"") == BODY


def test_redrive_of_chosen_event_ids_leaves_the_others_in_the_dlq(aws: LocalResources) -> None:
    sqs = boto3.client("sqs", region_name=LOCAL_REGION)
    for event_id in ("evt-keep", "evt-move", "evt-keep-2"):
        _quarantine(sqs, aws, event_id, "not_json")

    redriven = dlq.redrive(sqs, aws.dlq_url, aws.queue_url, event_ids={"evt-move"}, wait_seconds=0)

    assert redriven.moved == 1
    assert [m["MessageAttributes"]["event_id"]["StringValue"] for m in _drain(sqs, aws.queue_url)] == ["evt-move"]
    assert dlq.depth(sqs, aws.dlq_url) == 2


def test_redrive_of_an_empty_dlq_moves_nothing(aws: LocalResources) -> None:
    assert dlq.redrive(boto3.client("sqs", region_name=LOCAL_REGION), aws.dlq_url, aws.queue_url, wait_seconds=0) == (
        0,
        0,
    )


class FakeQuarantiningProcessor:
    """The SQS client a redrive uses, with a processor behind the main queue that quarantines every delivery it
    gets again (the cause is not fixed yet): each message sent to the queue reappears in the DLQ, new message id."""

    def __init__(self, sqs: Any, aws: LocalResources) -> None:
        self._sqs = sqs
        self._aws = aws

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def send_message(self, **params: Any) -> Any:
        sent = self._sqs.send_message(**params)
        if params["QueueUrl"] == self._aws.queue_url:
            _drain(self._sqs, self._aws.queue_url)
            self._sqs.send_message(**{**params, "QueueUrl": self._aws.dlq_url})
        return sent


def test_redrive_moves_each_delivery_once_even_when_everything_it_moves_comes_back(aws: LocalResources) -> None:
    sqs = boto3.client("sqs", region_name=LOCAL_REGION)
    _quarantine(sqs, aws, "evt-poison", "not_json")
    _quarantine(sqs, aws, "evt-poison-2", "not_json")

    redriven = dlq.redrive(FakeQuarantiningProcessor(sqs, aws), aws.dlq_url, aws.queue_url, wait_seconds=0)

    assert redriven.moved == 2  # not "moved 1000 deliveries": at most what the DLQ held when the run began
    assert dlq.depth(sqs, aws.dlq_url) == 2  # both were quarantined again, nothing lost


def test_redrive_stops_when_a_delivery_it_moved_comes_back_and_counts_it(aws: LocalResources) -> None:
    sqs = boto3.client("sqs", region_name=LOCAL_REGION)
    for event_id in ("evt-poison", "evt-other", "evt-other-2"):
        _quarantine(sqs, aws, event_id, "not_json")

    redriven = dlq.redrive(
        FakeQuarantiningProcessor(sqs, aws), aws.dlq_url, aws.queue_url, event_ids={"evt-poison"}, wait_seconds=0
    )

    assert redriven == (1, 1)
    assert dlq.depth(sqs, aws.dlq_url) == 3


# --- logs ------------------------------------------------------------------------------------------------------


def test_since_reads_durations_and_times() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 6, 25, 9, 0, tzinfo=UTC)

    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("2026-06-25T08:00:00Z", now) == datetime(2026, 6, 25, 8, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a time"):
        parse_since("yesterday-ish", now)


# --- replay: finding an archived delivery by event id (in-process moto) -------------------------------------


def _archive(aws: LocalResources, event_id: str, day: date, body: bytes, *others: str) -> str:
    """Archive `event_id` as the processor does: in a batch object of its received minute, with `others`."""
    received = f"{day.isoformat()}T09:30:12.500Z"
    records = [
        ArchiveRecord(name, "klikit.order.created.v2", received, hashlib.sha256(data).hexdigest(), "klikit", data)
        for name, data in [(event_id, body), *[(other, b"{}") for other in others]]
    ]
    key = batch_key(records)
    boto3.client("s3", region_name=LOCAL_REGION).put_object(Bucket=aws.bucket, Key=key, Body=encode(records))
    return key


@pytest.mark.parametrize("event_id", ["evt-replay-1", "evt/with spaces ü", "订单事件" * 64])
def test_replay_finds_an_archived_delivery_by_event_id_in_its_batch_on_any_day_the_archive_keeps(
    aws: LocalResources, event_id: str
) -> None:
    today = date(2026, 6, 25)
    key = _archive(aws, event_id, today - timedelta(days=12), BODY, "evt-batched-with-it", "evt-also")
    _archive(aws, "evt-other", today, b"not this one")
    s3 = boto3.client("s3", region_name=LOCAL_REGION)

    found = archive.find_archived(s3, aws.bucket, event_id, today, today - timedelta(days=30))

    assert found is not None
    assert (found.key, found.body, found.event_type) == (key, BODY, "klikit.order.created.v2")
    assert found.received_at == "2026-06-13T09:30:12.500Z"
    assert archive.find_archived(s3, aws.bucket, event_id, today, today - timedelta(days=11)) is None  # --since


def test_replay_reads_only_objects_whose_names_carry_the_id_and_checks_the_id_inside(aws: LocalResources) -> None:
    today = date(2026, 6, 25)
    s3 = boto3.client("s3", region_name=LOCAL_REGION)
    key = _archive(aws, "evt-someone-else", today, b"{}")
    # an object whose name carries evt-1's short hash, as a hash collision would: it does not hold evt-1
    colliding = key.replace(id_hash("evt-someone-else"), id_hash("evt-1"))
    s3.copy_object(Bucket=aws.bucket, Key=colliding, CopySource={"Bucket": aws.bucket, "Key": key})

    assert archive.find_archived(s3, aws.bucket, "evt-1", today, today) is None


def test_replay_still_finds_deliveries_archived_one_per_object_before_batches(aws: LocalResources) -> None:
    today = date(2026, 6, 25)
    s3 = boto3.client("s3", region_name=LOCAL_REGION)
    s3.put_object(
        Bucket=aws.bucket,
        Key="archive/2026-06-24/evt-day",
        Body=BODY,
        Metadata={"event-type": "klikit.order.status.updated", "received-at": "2026-06-24T10:00:00Z"},
    )
    s3.put_object(Bucket=aws.bucket, Key="archive/evt-flat", Body=BODY)

    by_day = archive.find_archived(s3, aws.bucket, "evt-day", today, today - timedelta(days=30))
    flat = archive.find_archived(s3, aws.bucket, "evt-flat", today, today)

    assert by_day == archive.Archived(
        "archive/2026-06-24/evt-day", BODY, "klikit.order.status.updated", "2026-06-24T10:00:00Z"
    )
    assert flat is not None and flat.key == "archive/evt-flat"
    assert archive.days_newest_first(today, today - timedelta(days=2)) == [
        date(2026, 6, 26),  # a clock a little ahead of the operator's
        date(2026, 6, 25),
        date(2026, 6, 24),
        date(2026, 6, 23),
    ]
