"""Everything the processor does with AWS: S3 (claim checks, archive), the DLQ, the orders table, EventBridge.

boto3 lives here only. Each adapter takes its client, so tests can hand in any client they like.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from decimal import Decimal, DecimalException
from typing import Any
from urllib.parse import quote

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from klikit.delivery import QUARANTINE_DETAIL, QUARANTINE_REASON, QueuedDelivery, archive_key
from klikit.errors import PoisonDelivery, PublishFailed
from processor.projection import Clock, Outcome

MAX_QUARANTINE_DETAIL = 240
SQS_MAX_ATTRIBUTES = 10
FANOUT_SOURCE = "klikit.webhooks"


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class PayloadBucket:
    """Claim-checked bodies in, the raw delivery archive out."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def get_object(self, bucket: str, key: str) -> bytes:
        try:
            return bytes(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if _error_code(exc) in {"NoSuchKey", "404"}:
                raise PoisonDelivery("claim_check_missing", "the claim-checked body is not in S3") from None
            raise

    def archive(self, queued: QueuedDelivery, body: bytes) -> None:
        """The raw bytes at `archive_key(event_id)`; a second write of the same delivery changes nothing."""
        metadata = {
            "event-type": quote(queued.event_type, safe=""),  # S3 metadata must be ASCII
            "received-at": queued.received_at,
            "body-sha256": queued.body_sha256,
        }
        try:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=archive_key(queued.event_id),
                Body=body,
                ContentType="application/json",
                Metadata=metadata,
                IfNoneMatch="*",
            )
        except ClientError as exc:
            # Already archived by an earlier attempt (or a concurrent one): the first copy stays.
            if _error_code(exc) not in {"PreconditionFailed", "ConditionalRequestConflict", "412"}:
                raise


def _boto3_attributes(attributes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Lambda's record attributes ({stringValue, dataType}) or boto3's, in SendMessage's shape."""
    converted: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        if not isinstance(value, Mapping):
            continue
        data_type = value.get("dataType") or value.get("DataType") or "String"
        text = value.get("stringValue", value.get("StringValue"))
        binary = value.get("binaryValue", value.get("BinaryValue"))
        if text is not None:
            converted[name] = {"DataType": data_type, "StringValue": str(text)}
        elif binary is not None:
            raw = base64.b64decode(binary) if isinstance(binary, str) else bytes(binary)
            converted[name] = {"DataType": data_type, "BinaryValue": raw}
    return converted


class Quarantine:
    """Moves a poison record to the DLQ itself, with the reason, so it does not burn retries first."""

    def __init__(self, sqs: Any, dlq_url: str) -> None:
        self._sqs = sqs
        self._dlq_url = dlq_url

    def send(self, record: Mapping[str, Any], reason: str, detail: str) -> None:
        original = record.get("messageAttributes") or record.get("MessageAttributes") or {}
        attributes = _boto3_attributes(original)
        attributes.pop(QUARANTINE_REASON, None)
        attributes.pop(QUARANTINE_DETAIL, None)
        # SQS allows ten attributes: the two reasons always fit, at the cost of a foreign message's extras.
        kept = dict(list(attributes.items())[: SQS_MAX_ATTRIBUTES - 2])
        kept[QUARANTINE_REASON] = {"DataType": "String", "StringValue": reason[:MAX_QUARANTINE_DETAIL]}
        kept[QUARANTINE_DETAIL] = {"DataType": "String", "StringValue": (detail or "-")[:MAX_QUARANTINE_DETAIL]}
        body = record.get("body", record.get("Body"))
        self._sqs.send_message(QueueUrl=self._dlq_url, MessageBody=body or "(empty body)", MessageAttributes=kept)


class DynamoOrdersTable:
    """The order projection's conditional writes (see processor.projection for the rule)."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._serialize = TypeSerializer().serialize
        self._deserialize = TypeDeserializer().deserialize

    def apply_if_newer(self, order_id: str, part: str, clock: Clock, values: dict[str, Any]) -> Outcome:
        stored = self._update(order_id, {part: values}, clock)
        if stored is None:
            return Outcome.APPLIED
        event_id = f"{part}_event_id"
        stored_event = self._deserialize(stored[event_id]) if event_id in stored else None
        return Outcome.ALREADY_APPLIED if stored_event == clock.event_id else Outcome.STALE

    def apply_all_if_newer(self, order_id: str, parts: dict[str, dict[str, Any]], clock: Clock) -> bool:
        return self._update(order_id, parts, clock) is None

    def _update(self, order_id: str, parts: dict[str, dict[str, Any]], clock: Clock) -> dict[str, Any] | None:
        """One conditional UpdateItem: every part's values and clock, when each part's stored clock is older.

        None when it was applied, else the stored item (nothing was written).
        """
        assignments: dict[str, Any] = {}
        for part, values in parts.items():
            assignments.update(values)
            assignments.update(
                {f"{part}_at_ms": clock.at_ms, f"{part}_rank": clock.rank, f"{part}_event_id": clock.event_id}
            )
        names = {f"#a{i}": name for i, name in enumerate(assignments)}
        alias = {name: f"a{i}" for i, name in enumerate(assignments)}
        newer = []
        for part in parts:
            at, rk = alias[f"{part}_at_ms"], alias[f"{part}_rank"]
            newer.append(f"(attribute_not_exists(#{at}) OR #{at} < :{at} OR (#{at} = :{at} AND #{rk} < :{rk}))")
        label = "+".join(parts)
        try:
            values_in = {f":{alias[n]}": self._serialize(v) for n, v in assignments.items()}
        except (DecimalException, TypeError) as exc:
            # e.g. a number with more than the 38 digits DynamoDB keeps: the same body fails the same way every time
            raise PoisonDelivery("unstorable_order", f"{label}: {type(exc).__name__}") from None
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"order_id": {"S": order_id}},
                UpdateExpression="SET " + ", ".join(f"#{a} = :{a}" for a in alias.values()),
                ConditionExpression=" AND ".join(newer),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values_in,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) == "ValidationException":
                # the item or key is over DynamoDB's limits (400 KB item, 2048-byte key): no retry can store it
                raise PoisonDelivery("unstorable_order", f"{label}: DynamoDB ValidationException") from None
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            return dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
        return None


def _json_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Only JSON numbers become Decimal when klikit's body is parsed: float() gives back the same number text.
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class EventBus:
    """Publishes processed order events for other services (the optional fan-out)."""

    def __init__(self, events: Any, bus_name: str) -> None:
        self._events = events
        self._bus_name = bus_name

    def publish(self, event_type: str, detail: Mapping[str, Any]) -> None:
        entry = {
            "Source": FANOUT_SOURCE,
            "DetailType": event_type,
            "Detail": json.dumps(detail, default=_json_number, separators=(",", ":")),
            "EventBusName": self._bus_name,
        }
        response = self._events.put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            code = response["Entries"][0].get("ErrorCode", "unknown")
            raise PublishFailed(f"EventBridge refused the event: {code}")
