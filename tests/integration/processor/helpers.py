"""Build what SQS hands the processor from the real message contract, and read back what it left behind."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra import lambda_shapes
from klikit.archive import ArchiveRecord, decode
from klikit.delivery import ARCHIVE_PREFIX, Delivery, sqs_message
from processor.cart_storage import readable
from tests.conftest import load_fixture
from tools.local.resources import LocalResources


def delivery(
    body: bytes | str,
    event_type: str,
    *,
    event_id: str | None = None,
    received_at: str = "2026-06-25T09:30:00Z",
) -> Delivery:
    """A verified delivery; `body` is a fixture file name or the raw bytes."""
    raw = load_fixture(body) if isinstance(body, str) else body
    return Delivery.of(event_id or f"evt-{uuid.uuid4()}", event_type, raw, received_at)


def sqs_record(item: Delivery, *, body_s3_uri: str | None = None, receive_count: int = 1) -> dict[str, Any]:
    """The record SQS hands the processor for `item`, queued as the receiver queues it."""
    body, attributes = sqs_message(item, body_s3_uri=body_s3_uri)
    return lambda_shapes.sqs_record(body, attributes, receive_count=receive_count)


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    return lambda_shapes.sqs_event(records)


def failed_ids(response: Mapping[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def order_item(aws: LocalResources, order_id: str) -> dict[str, Any] | None:
    import boto3

    table = boto3.resource("dynamodb").Table(aws.orders_table)
    item: dict[str, Any] | None = table.get_item(Key={"order_id": order_id}, ConsistentRead=True).get("Item")
    return None if item is None else readable(item)


@dataclass(frozen=True)
class DlqMessage:
    body: str
    attributes: dict[str, str]


def dlq_messages(aws: LocalResources) -> list[DlqMessage]:
    import boto3

    response = boto3.client("sqs").receive_message(
        QueueUrl=aws.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
    )
    return [
        DlqMessage(
            body=message["Body"],
            attributes={name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()},
        )
        for message in response.get("Messages", [])
    ]


def metrics(stdout: str) -> dict[tuple[str, str], float]:
    """{(metric name, event_type dimension or "" for the service-wide series): value} from the EMF lines."""
    found: dict[tuple[str, str], float] = {}
    for line in stdout.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                key = (metric["Name"], document.get("event_type", ""))
                found[key] = found.get(key, 0) + sum(document[metric["Name"]])
    return found


def log_records(stdout: str) -> list[dict[str, Any]]:
    """The processor's structured log lines."""
    records = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' not in line:
            records.append(json.loads(line))
    return records


def archive_objects(aws: LocalResources) -> dict[str, list[ArchiveRecord]]:
    """Every archive object in the bucket: its key -> the deliveries it holds."""
    import boto3

    s3 = boto3.client("s3")
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=aws.bucket, Prefix=ARCHIVE_PREFIX):
        for item in page.get("Contents", []):
            objects[item["Key"]] = decode(s3.get_object(Bucket=aws.bucket, Key=item["Key"])["Body"].read())
    return objects


def archived(aws: LocalResources) -> dict[str, ArchiveRecord]:
    """The archived deliveries by event id (the first copy where a retry archived one twice)."""
    found: dict[str, ArchiveRecord] = {}
    for records in archive_objects(aws).values():
        for record in records:
            found.setdefault(record.event_id, record)
    return found
