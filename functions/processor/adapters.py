"""Everything the processor does with AWS: S3 (claim checks, archive), the DLQ, the orders table, EventBridge.

boto3 lives here only. Each adapter takes its client, so tests can hand in any client they like.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from decimal import DecimalException
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from klikit.delivery import (
    BASE64,
    BODY_ENCODING,
    BODY_S3_URI,
    CLAIM_CHECK_PREFIX,
    EVENT_ID,
    QUARANTINE_DETAIL,
    QUARANTINE_REASON,
    UTF8,
    attribute_value,
    key_token,
    send_attributes,
    sqs_message_size,
)
from klikit.errors import PoisonDelivery, PublishFailed
from klikit.formats import json_default
from processor import cart_storage
from processor.projection import Clock, Mode, PartWrite

if TYPE_CHECKING:  # boto3-stubs' client types, for mypy only
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

MAX_QUARANTINE_DETAIL = 240
SQS_MAX_ATTRIBUTES = 10
FANOUT_SOURCE = "klikit.webhooks"


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class PayloadBucket:
    """Claim-checked bodies in, the raw delivery archive out."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def get_object(self, bucket: str, key: str) -> bytes:
        try:
            return bytes(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if _error_code(exc) in {"NoSuchKey", "404"}:
                raise PoisonDelivery("claim_check_missing", "the claim-checked body is not in S3") from None
            raise

    def put_archive(self, key: str, data: bytes) -> None:
        """One archive object (klikit.archive); the same batch written again (a retry) changes nothing."""
        try:
            self._s3.put_object(
                Bucket=self._bucket, Key=key, Body=data, ContentType="application/gzip", IfNoneMatch="*"
            )
        except ClientError as exc:
            # Already archived by an earlier attempt (or a concurrent one): the first copy stays.
            if _error_code(exc) not in {"PreconditionFailed", "ConditionalRequestConflict", "412"}:
                raise


class Quarantine:
    """Moves a poison record to the DLQ itself, with the reason, so it does not burn retries first.

    A body within a few hundred bytes of SQS's limit no longer fits once the reasons are added: its bytes then go
    to S3 as a claim check, like the receiver's large bodies, so the DLQ copy is small and a redrive reads it back
    (trimming the attributes instead would lose the delivery's own ones, which a redrive needs)."""

    def __init__(self, sqs: SQSClient, dlq_url: str, s3: S3Client, bucket: str, max_message_bytes: int) -> None:
        self._sqs = sqs
        self._dlq_url = dlq_url
        self._s3 = s3
        self._bucket = bucket
        self._max_message_bytes = max_message_bytes

    def send(self, record: Mapping[str, Any], reason: str, detail: str) -> None:
        original = record.get("messageAttributes") or record.get("MessageAttributes") or {}
        attributes = send_attributes(original)
        attributes.pop(QUARANTINE_REASON, None)
        attributes.pop(QUARANTINE_DETAIL, None)
        # SQS allows ten attributes: the two reasons always fit, at the cost of a foreign message's extras.
        kept = dict(list(attributes.items())[: SQS_MAX_ATTRIBUTES - 2])
        kept[QUARANTINE_REASON] = {"DataType": "String", "StringValue": reason[:MAX_QUARANTINE_DETAIL]}
        kept[QUARANTINE_DETAIL] = {"DataType": "String", "StringValue": (detail or "-")[:MAX_QUARANTINE_DETAIL]}
        body = str(record.get("body", record.get("Body")) or "") or "(empty body)"
        if sqs_message_size(body, kept) > self._max_message_bytes:
            body = self._claim_check(record, body, kept)
        self._sqs.send_message(QueueUrl=self._dlq_url, MessageBody=body, MessageAttributes=kept)

    def _claim_check(
        self, record: Mapping[str, Any], body: str, attributes: dict[str, MessageAttributeValueTypeDef]
    ) -> str:
        """Put the delivery's bytes in S3 and point `attributes` at them; the claim-check message body."""
        raw = _raw_bytes(body, attribute_value(attributes, BODY_ENCODING))
        owner = attribute_value(attributes, EVENT_ID) or str(record.get("messageId", record.get("MessageId")))
        key = f"{CLAIM_CHECK_PREFIX}{key_token(owner)}/{hashlib.sha256(raw).hexdigest()}"
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=raw, ContentType="application/octet-stream")
        uri = f"s3://{self._bucket}/{key}"
        attributes[BODY_S3_URI] = {"DataType": "String", "StringValue": uri}
        attributes[BODY_ENCODING] = {"DataType": "String", "StringValue": UTF8}
        return json.dumps({"claim_check": uri, "bytes": len(raw)})


def _raw_bytes(body: str, encoding: str | None) -> bytes:
    """The bytes klikit sent, as the message carried them (the text itself, or base64 of them)."""
    if encoding == BASE64:
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            pass  # not base64 after all (that is why it is poison): keep the text as it was
    return body.encode("utf-8")


class DynamoOrdersTable:
    """The order projection's conditional writes (see processor.projection for the rule)."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._serialize = TypeSerializer().serialize
        self._deserialize = TypeDeserializer().deserialize

    def update(
        self, order_id: str, writes: list[PartWrite], last: dict[str, Any] | None, clock: Clock
    ) -> dict[str, Any] | None:
        expression = _Expression()
        at, rank, event_id = (
            expression.value(clock.at_ms),
            expression.value(clock.rank),
            expression.value(clock.event_id),
        )
        for write in writes:
            for name, value in write.values.items():
                expression.set(name, cart_storage.pack(value) if name == cart_storage.CART else value)
            part = write.part
            expression.set(f"{part}_event_id", clock.event_id)
            stored_at, stored_rank = expression.name(f"{part}_at_ms"), expression.name(f"{part}_rank")
            digests, news = f"{part}_digests", f"{part}_news"
            content = expression.value(write.content_digest)
            stored_digests, stored_event = expression.name(digests), expression.name(f"{part}_event_id")
            not_applied = (
                f"NOT contains({stored_digests}, {content}) "
                f"AND (attribute_exists({stored_digests}) OR {stored_event} <> {event_id})"
            )
            if write.mode is Mode.NEWER:
                expression.set(f"{part}_at_ms", clock.at_ms)
                expression.set(f"{part}_rank", clock.rank)
                expression.set(digests, {write.content_digest})
                expression.set(news, {write.news_entry})
                expression.condition(
                    f"(attribute_not_exists({stored_at}) OR {stored_at} < {at} "
                    f"OR ({stored_at} = {at} AND {stored_rank} < {rank} AND {not_applied}))"
                )
            else:
                expression.add(digests, {write.content_digest})
                expression.add(news, {write.news_entry})
                expression.condition(f"{stored_at} = {at} AND {stored_rank} = {rank} AND {not_applied}")
        if last is not None:
            for name, value in last.items():
                expression.set(name, value)
            expression.set("last_at_ms", clock.at_ms)
            expression.set("last_rank", clock.rank)
            last_at, last_rank = expression.name("last_at_ms"), expression.name("last_rank")
            expression.condition(
                f"(attribute_not_exists({last_at}) OR {last_at} < {at} OR ({last_at} = {at} AND {last_rank} <= {rank}))"
            )
        label = "+".join([*(write.part for write in writes), *(["last"] if last is not None else [])])
        try:
            values = {placeholder: self._serialize(value) for placeholder, value in expression.used_values().items()}
        except (DecimalException, TypeError) as exc:
            # e.g. a number with more than the 38 digits DynamoDB keeps: the same body fails the same way every time
            raise PoisonDelivery("unstorable_order", f"{label}: {type(exc).__name__}") from None
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"order_id": {"S": order_id}},
                UpdateExpression=expression.update_expression(),
                ConditionExpression=" AND ".join(expression.conditions),
                ExpressionAttributeNames=expression.names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) == "ValidationException":
                # the item or key is over DynamoDB's limits (400 KB item, 2048-byte key): no retry can store it
                raise PoisonDelivery("unstorable_order", f"{label}: DynamoDB ValidationException") from None
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            # ALL_OLD puts the item in the error response, a key botocore-stubs' error TypedDict does not declare
            stored: dict[str, Any] = dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
            return cart_storage.readable({name: self._deserialize(value) for name, value in stored.items()})
        return None


class _Expression:
    """An UpdateItem's SET and ADD clauses, condition and placeholders, built up one attribute at a time."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.conditions: list[str] = []
        self._aliases: dict[str, str] = {}
        self._set: dict[str, str] = {}
        self._add: dict[str, str] = {}

    def name(self, attribute: str) -> str:
        if attribute not in self._aliases:
            alias = f"#a{len(self._aliases)}"
            self._aliases[attribute] = alias
            self.names[alias] = attribute
        return self._aliases[attribute]

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def set(self, attribute: str, value: Any) -> None:
        if self.name(attribute) not in self._set:  # the order's own fields ride along with every part
            self._set[self.name(attribute)] = self.value(value)

    def add(self, attribute: str, value: Any) -> None:
        self._add[self.name(attribute)] = self.value(value)

    def condition(self, condition: str) -> None:
        self.conditions.append(condition)

    def update_expression(self) -> str:
        clauses = ["SET " + ", ".join(f"{name} = {value}" for name, value in self._set.items())]
        if self._add:
            clauses.append("ADD " + ", ".join(f"{name} {value}" for name, value in self._add.items()))
        return " ".join(clauses)

    def used_values(self) -> dict[str, Any]:
        """The placeholders the expressions use (DynamoDB refuses unused ones)."""
        text = " ".join([self.update_expression(), *self.conditions])
        used = set(re.findall(r":v\d+\b", text))
        return {placeholder: value for placeholder, value in self.values.items() if placeholder in used}


class EventBus:
    """Publishes processed order events for other services (the optional fan-out)."""

    def __init__(self, events: EventBridgeClient, bus_name: str) -> None:
        self._events = events
        self._bus_name = bus_name

    def publish(self, event_type: str, detail: Mapping[str, Any]) -> None:
        entry: PutEventsRequestEntryTypeDef = {
            "Source": FANOUT_SOURCE,
            "DetailType": event_type,
            "Detail": json.dumps(detail, default=json_default, separators=(",", ":")),
            "EventBusName": self._bus_name,
        }
        response = self._events.put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            code = response["Entries"][0].get("ErrorCode", "unknown")
            raise PublishFailed(f"EventBridge refused the event: {code}")
