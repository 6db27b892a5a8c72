"""The baselines: the same AWS calls as the receiver and the processor, hand-written with raw boto3.

No Powertools, no klikit package, no logging: the floor a function doing this work cannot go under. Each
benchmark measures one of these next to the real handler, in the same run, on the same moto.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

CONFIG = Config(connect_timeout=2, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 3})
TTL_SECONDS = 30 * 86_400
SERIALIZE = TypeSerializer().serialize


# The same requests Powertools idempotency makes (persistence/dynamodb.py), so moto does the same work for both.
CLAIM: dict[str, Any] = {
    "ConditionExpression": (
        "attribute_not_exists(#id) OR #expiry < :now OR "
        "(#status = :inprogress AND attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_in_millis)"
    ),
    "ExpressionAttributeNames": {
        "#id": "id",
        "#expiry": "expiration",
        "#in_progress_expiry": "in_progress_expiration",
        "#status": "status",
    },
    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
}


def in_progress(key: dict[str, Any], now: float) -> dict[str, Any]:
    return {
        **key,
        "expiration": {"N": str(int(now) + TTL_SECONDS)},
        "status": {"S": "INPROGRESS"},
        "in_progress_expiration": {"N": str(int(now * 1000) + 10_000)},
    }


def claim_values(now: float) -> dict[str, Any]:
    return {
        ":now": {"N": str(int(now))},
        ":now_in_millis": {"N": str(int(now * 1000))},
        ":inprogress": {"S": "INPROGRESS"},
    }


def completed(now: float, response: str) -> dict[str, Any]:
    return {
        "UpdateExpression": "SET #response_data = :response_data, #expiry = :expiry, #status = :status",
        "ExpressionAttributeNames": {"#response_data": "data", "#expiry": "expiration", "#status": "status"},
        "ExpressionAttributeValues": {
            ":expiry": {"N": str(int(now) + TTL_SECONDS)},
            ":response_data": {"S": response},
            ":status": {"S": "COMPLETED"},
        },
    }


def _reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


class BaselineReceiver:
    """Verify the HMAC, claim the event id with a conditional PutItem, SendMessage, mark it complete."""

    def __init__(self, env: dict[str, str]) -> None:
        self.secretsmanager = boto3.client("secretsmanager", config=CONFIG)
        self.dynamodb = boto3.client("dynamodb", config=CONFIG)
        self.sqs = boto3.client("sqs", config=CONFIG)
        self.secret_id = env["WEBHOOK_SECRET_ID"]
        self.table = env["IDEMPOTENCY_TABLE_NAME"]
        self.queue_url = env["QUEUE_URL"]
        self._secret: bytes | None = None
        self._fetched_at = 0.0

    def secret(self) -> bytes:
        if self._secret is None or time.monotonic() - self._fetched_at > 300:
            value = self.secretsmanager.get_secret_value(SecretId=self.secret_id)["SecretString"]
            self._secret, self._fetched_at = value.encode(), time.monotonic()
        return self._secret

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
        body = (event.get("body") or "").encode()
        event_id, event_type = headers["x-klikit-event-id"], headers["x-klikit-event-type"]
        expected = hmac.new(self.secret(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("x-klikit-signature", "")):
            return _reply(401, {"error": "invalid signature"})
        key = {"id": {"S": "baseline#" + hashlib.sha256(event_id.encode()).hexdigest()}}
        now = time.time()
        try:
            self.dynamodb.put_item(
                TableName=self.table, Item=in_progress(key, now), ExpressionAttributeValues=claim_values(now), **CLAIM
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return _reply(200, {"status": "duplicate-ignored"})
            raise
        received_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        attributes = {
            "event_id": event_id,
            "event_type": event_type,
            "received_at": received_at,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_encoding": "utf-8",
        }
        sent = self.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body.decode(),
            MessageAttributes={name: {"DataType": "String", "StringValue": v} for name, v in attributes.items()},
        )
        self.dynamodb.update_item(
            TableName=self.table, Key=key, **completed(now, json.dumps({"message_id": sent["MessageId"]}))
        )
        return _reply(200, {"status": "received"})


class BaselineProcessor:
    """Per record: archive to S3; per order: claim an effect, write the order's parts, complete it; a second effect."""

    def __init__(self, env: dict[str, str]) -> None:
        self.s3 = boto3.client("s3", config=CONFIG)
        self.dynamodb = boto3.client("dynamodb", config=CONFIG)
        self.sqs = boto3.client("sqs", config=CONFIG)  # the DLQ, unused on the happy path (the processor has it too)
        self.bucket = env["PAYLOAD_BUCKET_NAME"]
        self.orders = env["ORDERS_TABLE_NAME"]
        self.effects = env["EFFECTS_TABLE_NAME"]

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            try:
                self.record(record)
            except Exception:  # noqa: BLE001 - the baseline reports a failed record like the processor does
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    def record(self, record: dict[str, Any]) -> None:
        attributes = {name: value["stringValue"] for name, value in record["messageAttributes"].items()}
        event_id = attributes["event_id"]
        body = record["body"].encode()
        if hashlib.sha256(body).hexdigest() != attributes["body_sha256"]:
            raise ValueError("body hash mismatch")
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=f"archive/{event_id}",
                Body=body,
                ContentType="application/json",
                Metadata={"event-type": attributes["event_type"], "body-sha256": attributes["body_sha256"]},
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "PreconditionFailed":
                raise
        document = json.loads(body, parse_float=Decimal)
        now = time.time()
        for order in document["orders"]:
            order_id = str(order["id"])
            keys = [  # two effects per order, as the processor has: the projection and the example integration
                {"id": {"S": "baseline#" + hashlib.sha256(f"{event_id}#{order_id}#{effect}".encode()).hexdigest()}}
                for effect in ("projection", "integration")
            ]
            self.claim(keys[0], now)
            at_ms = int(datetime.fromisoformat(order["updated_at"].replace("Z", "+00:00")).timestamp() * 1000)
            common = {"brand_id": document["brand_id"], "branch_id": document["branch_id"]}
            parts = {
                "status": {"status": order["status"]},
                "cart": {"cart": order["cart"], "total": order["total"], "currency": order["currency"]},
                "last": {"last_event_type": attributes["event_type"], "updated_at": order["updated_at"]},
            }
            # the processor's projection: in order, one conditional write sets every part
            self.set_if_newer(order_id, {part: {**values, **common} for part, values in parts.items()}, at_ms, event_id)
            self.complete(keys[0], now)
            self.claim(keys[1], now)
            self.complete(keys[1], now)

    def claim(self, key: dict[str, Any], now: float) -> None:
        self.dynamodb.put_item(
            TableName=self.effects, Item=in_progress(key, now), ExpressionAttributeValues=claim_values(now), **CLAIM
        )

    def complete(self, key: dict[str, Any], now: float) -> None:
        self.dynamodb.update_item(TableName=self.effects, Key=key, **completed(now, '{"outcome":"applied"}'))

    def set_if_newer(self, order_id: str, parts: dict[str, dict[str, Any]], at_ms: int, event_id: str) -> None:
        values: dict[str, Any] = {}
        for part, part_values in parts.items():
            values.update({**part_values, f"{part}_at_ms": at_ms, f"{part}_rank": 0, f"{part}_event_id": event_id})
        names = {f"#a{i}": name for i, name in enumerate(values)}
        alias = {name: f"a{i}" for i, name in enumerate(values)}
        newer = []
        for part in parts:
            at, rank = alias[f"{part}_at_ms"], alias[f"{part}_rank"]
            newer.append(f"(attribute_not_exists(#{at}) OR #{at} < :{at} OR (#{at} = :{at} AND #{rank} < :{rank}))")
        try:
            self.dynamodb.update_item(
                TableName=self.orders,
                Key={"order_id": {"S": order_id}},
                UpdateExpression="SET " + ", ".join(f"#{a} = :{a}" for a in alias.values()),
                ConditionExpression=" AND ".join(newer),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={f":{alias[n]}": SERIALIZE(v) for n, v in values.items()},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
