"""What the workers send: klikit-shaped signed deliveries, SQS records, a Lambda context, and AWS on moto.

The Lambda shapes themselves come from infra/lambda_shapes.py (standard library only).

Deliberately light on imports (hmac, json, uuid): a cold-start worker builds its events after the timed import
phase, and nothing here may pre-load a module the measured code would have to import itself.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import REGION, REPO
from infra import lambda_shapes

SECRET = "whsec_bench_5d1c2b3a4f6e7d8c"
ORDER_CREATED = "klikit.order.created.v2"
RECEIVED_AT = "2026-06-25T09:30:00.000Z"
ORDER_STATUS_UPDATED = "klikit.order.status.updated"
FIXTURE = REPO / "tests" / "fixtures" / "order_created_v2_batch.json"
STATUS_FIXTURE = REPO / "tests" / "fixtures" / "order_status_updated.json"


def lambda_context(memory_mb: int = 256, function_name: str = "klikit-bench") -> lambda_shapes.LambdaContext:
    """A context with 10 s left, whatever the measured code takes."""
    return lambda_shapes.LambdaContext(function_name, memory_mb, remaining_ms=10_000)


def order_body(target_bytes: int, order_id: int = 7821, fixture: Path = FIXTURE) -> bytes:
    """A created.v2 body with one order whose cart is repeated until the body is at least `target_bytes`."""
    document = json.loads(fixture.read_bytes())
    order = copy.deepcopy(document["orders"][0])
    order["id"] = order_id
    lines = order["cart"]
    document["orders"] = [order]
    body = json.dumps(document, separators=(",", ":")).encode()
    while len(body) < target_bytes:
        order["cart"] = order["cart"] + [dict(lines[len(order["cart"]) % len(lines)])]
        body = json.dumps(document, separators=(",", ":")).encode()
    return body


def status_body(order_id: int) -> bytes:
    """A status.updated body (~0.6 KB) about `order_id`."""
    document = json.loads(STATUS_FIXTURE.read_bytes())
    document["orders"][0]["id"] = order_id
    return json.dumps(document, separators=(",", ":")).encode()


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def api_event(body: bytes, event_id: str | None = None, signature: str | None = None) -> dict[str, Any]:
    """An API Gateway REST proxy event for POST /webhooks/klikit, signed like klikit signs."""
    headers = {
        "Content-Type": "application/json",
        "X-Klikit-Signature": signature if signature is not None else sign(SECRET, body),
        "X-Klikit-Event-Id": event_id or f"bench-{uuid.uuid4()}",
        "X-Klikit-Event-Type": ORDER_CREATED,
    }
    return lambda_shapes.api_gateway_event(body, headers, stage="bench")


def sqs_record(
    body: bytes, event_id: str | None = None, received_at: str = RECEIVED_AT, event_type: str = ORDER_CREATED
) -> dict[str, Any]:
    """One record of Lambda's SQS event carrying a verified delivery inline, as the receiver queues it."""
    attributes = {
        "event_id": event_id or f"bench-{uuid.uuid4()}",
        "event_type": event_type,
        "received_at": received_at,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_encoding": "utf-8",
    }
    return lambda_shapes.sqs_record(
        body.decode(), {name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()}
    )


def sqs_batch(size: int, body_bytes: int, first_order_id: int) -> dict[str, Any]:
    """A batch of `size` records, each a new event about a new order."""
    return {"Records": [sqs_record(order_body(body_bytes, order_id=first_order_id + index)) for index in range(size)]}


def start_moto() -> dict[str, str]:
    """In-process moto with the stack's resources (tools/local); the functions' environment points at them."""
    import boto3
    from moto import mock_aws

    from tools.local.resources import create_resources

    mock_aws().start()
    resources = create_resources(boto3.Session(region_name=REGION), [SECRET])
    env = resources.env()
    os.environ.update(env)
    return env


class CallCounter:
    """Counts the AWS operations made through boto3's default session (register before creating clients)."""

    def __init__(self) -> None:
        import boto3

        self.calls: dict[str, int] = {}
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-call", self._count)

    def _count(self, event_name: str, **_: Any) -> None:
        _prefix, service, operation = event_name.split(".", 2)
        key = f"{service}.{operation}"
        self.calls[key] = self.calls.get(key, 0) + 1

    def take(self) -> dict[str, int]:
        calls, self.calls = self.calls, {}
        return calls


class AwsTimer:
    """Adds up the time spent inside boto3 API calls (moto included), so the rest is the handler's own code."""

    def __init__(self) -> None:
        import botocore.client

        self.spent = 0.0
        original = getattr(botocore.client.BaseClient, "_make_api_call")  # noqa: B009 - private, untyped

        def timed(client: Any, operation: str, params: dict[str, Any]) -> Any:
            started = time.perf_counter()
            try:
                return original(client, operation, params)
            finally:
                self.spent += time.perf_counter() - started

        setattr(botocore.client.BaseClient, "_make_api_call", timed)  # noqa: B010 - private, untyped

    def take(self) -> float:
        spent, self.spent = self.spent, 0.0
        return spent
