"""infra/lambda_shapes.py: the environments, context and events every part of the project builds for Lambda."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra import REPO_ROOT, lambda_shapes
from klikit import settings


def test_importing_it_loads_neither_boto3_nor_cdk_nor_the_functions_code() -> None:
    probe = (
        "import sys; import infra.lambda_shapes; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'aws_cdk', 'klikit')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == "[]"


def test_the_environments_name_exactly_what_the_functions_settings_read() -> None:
    receiver = lambda_shapes.receiver_environment(
        secret_id="s", idempotency_table="t", queue_url="q", bucket="b", ttl_days=30, queue_max_bytes=1024
    )
    processor = lambda_shapes.processor_environment(
        orders_table="o", effects_table="e", bucket="b", dlq_url="d", ttl_days=30
    )
    reconciler = lambda_shapes.reconciler_environment(
        orders_table="o",
        queue_url="q",
        checkpoint_table="c",
        partner_secret_id="p",
        klikit_api_url="https://api.example",
        lookback_hours=6,
    )

    assert settings.ReceiverSettings.from_env(receiver).idempotency_ttl_seconds == 30 * 86_400
    assert settings.ProcessorSettings.from_env(processor).dlq_url == "d"
    assert settings.ReconcilerSettings.from_env(reconciler).lookback_hours == 6
    assert settings.EVENT_BUS_NAME not in processor and settings.TRACING_ENABLED not in processor


def test_the_processor_environment_names_the_bus_and_tracing_only_when_they_are_on() -> None:
    processor = lambda_shapes.processor_environment(
        orders_table="o", effects_table="e", bucket="b", dlq_url="d", ttl_days=30, event_bus="bus", tracing=True
    )

    assert processor[settings.EVENT_BUS_NAME] == "bus"
    assert processor[settings.TRACING_ENABLED] == "true"


def test_the_context_counts_down_from_the_timeout_unless_the_time_left_is_pinned() -> None:
    context = lambda_shapes.LambdaContext(function_name="klikit-receiver", timeout_seconds=7, started=0.0)
    pinned = lambda_shapes.LambdaContext(remaining_ms=1234)

    assert context.get_remaining_time_in_millis() == 0  # started long ago
    assert pinned.get_remaining_time_in_millis() == 1234
    assert context.invoked_function_arn.endswith(":function:klikit-receiver")
    assert context.log_group_name == "/aws/lambda/klikit-receiver"
    assert lambda_shapes.LambdaContext().aws_request_id != lambda_shapes.LambdaContext().aws_request_id


def test_the_api_gateway_event_carries_the_exact_bytes_and_every_header_value() -> None:
    body = b'{"orders":[]}\xff'
    event = lambda_shapes.api_gateway_event(
        body, [("X-Klikit-Event-Id", "a"), ("Accept", "x"), ("Accept", "y")], query={"q": ["1", "2"]}
    )

    assert base64.b64decode(event["body"]) == body and event["isBase64Encoded"] is True
    assert event["headers"] == {"X-Klikit-Event-Id": "a", "Accept": "y"}
    assert event["multiValueHeaders"]["Accept"] == ["x", "y"]
    assert event["queryStringParameters"] == {"q": "2"}
    assert event["path"] == event["resource"] == "/webhooks/klikit"
    assert lambda_shapes.response_body({"body": base64.b64encode(b"ok").decode(), "isBase64Encoded": True}) == b"ok"


def test_a_text_api_gateway_event_keeps_the_body_as_text() -> None:
    event = lambda_shapes.api_gateway_event(b'{"a":1}', {"Content-Type": "application/json"}, base64_encoded=False)

    assert event["body"] == '{"a":1}' and event["isBase64Encoded"] is False


def test_an_sqs_record_has_the_shape_of_lambdas_sqs_event() -> None:
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "rh",
        "Body": "hello",
        "MD5OfBody": "5d41402abc4b2a76b9719d911017c592",
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1"},
        "MessageAttributes": {
            "event_id": {"StringValue": "evt", "DataType": "String"},
            "blob": {"BinaryValue": b"\x00", "DataType": "Binary"},
        },
    }

    record = lambda_shapes.record_from_message(message, "arn:aws:sqs:us-east-1:123456789012:q")

    assert record["messageId"] == "m-1" and record["receiptHandle"] == "rh"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"]["event_id"] == {
        "stringValue": "evt",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["blob"]["binaryValue"] == b"\x00"
    assert "stringValue" not in record["messageAttributes"]["blob"]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"].endswith(":q")
    assert record["md5OfBody"] == "5d41402abc4b2a76b9719d911017c592"


def test_only_reported_failures_stay_on_the_queue_and_a_malformed_reply_fails_the_batch() -> None:
    records = [{"messageId": "a"}, {"messageId": "b"}]

    assert lambda_shapes.failed_ids({"batchItemFailures": []}, records) == set()
    assert lambda_shapes.failed_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, records) == {"b"}
    assert lambda_shapes.failed_ids({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, records) == {"a", "b"}
    assert lambda_shapes.failed_ids(None, records) == {"a", "b"}


@pytest.fixture
def queue() -> Any:
    with mock_aws():
        sqs = boto3.client("sqs", region_name=lambda_shapes.REGION)
        yield sqs, sqs.create_queue(QueueName="deliveries")["QueueUrl"]


def _bodies(sqs: Any, url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
    return sorted(message["Body"] for message in messages)


def test_the_event_source_deletes_what_succeeded_and_leaves_the_reported_failures(queue: Any) -> None:
    sqs, url = queue
    for body in ("one", "two", "three"):
        sqs.send_message(
            QueueUrl=url, MessageBody=body, MessageAttributes={"k": {"DataType": "String", "StringValue": body}}
        )
    source = lambda_shapes.EventSourceMapping(sqs, url)
    seen: list[dict[str, Any]] = []

    def processor(event: dict[str, Any]) -> dict[str, Any]:
        seen.extend(event["Records"])
        failed = [r["messageId"] for r in event["Records"] if r["body"] == "two"]
        return {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in failed]}

    batch = source.poll(processor)

    assert batch is not None and len(batch.records) == 3 and len(batch.failed) == 1
    assert {record["messageAttributes"]["k"]["stringValue"] for record in seen} == {"one", "two", "three"}
    assert _bodies(sqs, url) == ["two"]
    assert source.poll(processor) is not None  # "two" again, visible after the (zero) retry delay


def test_a_failed_invocation_leaves_the_whole_batch_on_the_queue(queue: Any) -> None:
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": 1}))
    source = lambda_shapes.EventSourceMapping(sqs, url)

    def crashed(event: dict[str, Any]) -> Any:
        raise lambda_shapes.InvocationFailed("instance died")

    batch = source.poll(crashed)

    assert batch is not None and batch.result is None and len(batch.failed) == 1
    assert _bodies(sqs, url) == ['{"n": 1}']
    assert lambda_shapes.EventSourceMapping(sqs, url).poll(lambda event: {"batchItemFailures": []}) is not None
    assert source.poll(crashed) is None  # deleted by the successful poll
