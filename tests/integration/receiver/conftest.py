"""Receiver fixtures: the real handler wired to in-process moto, a queue reader and AWS fault injection."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from receiver import handler as receiver_handler
from tests.conftest import FakeLambdaContext
from tools.local.resources import LocalResources


@pytest.fixture
def receive(aws: LocalResources, lambda_context: FakeLambdaContext) -> Iterator[Callable[[dict[str, Any]], Any]]:
    """Invoke the real receiver handler; returns (status, parsed JSON body)."""
    receiver_handler.reset()

    def invoke(event: dict[str, Any]) -> tuple[int, Any]:
        reply = receiver_handler.lambda_handler(event, lambda_context)
        assert reply["headers"]["Content-Type"] == "application/json"
        return reply["statusCode"], json.loads(reply["body"])

    yield invoke
    receiver_handler.reset()


@pytest.fixture
def queued(aws: LocalResources) -> Callable[[], list[dict[str, Any]]]:
    """Every message on the deliveries queue (received once, with all attributes)."""

    def read() -> list[dict[str, Any]]:
        sqs = boto3.client("sqs")
        messages: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=aws.queue_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=300,
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)

    return read


@pytest.fixture
def idempotency_items(aws: LocalResources) -> Callable[[], list[dict[str, Any]]]:
    def scan() -> list[dict[str, Any]]:
        return list(boto3.client("dynamodb").scan(TableName=aws.idempotency_table)["Items"])

    return scan


class AwsFaults:
    """Make chosen AWS operations fail for clients created after it is armed (moto cannot inject failures)."""

    def __init__(self) -> None:
        self.failing: dict[str, int] = {}  # "sqs.SendMessage" -> how many more calls fail (-1: all)
        self.calls: dict[str, int] = {}
        self.before: dict[str, Callable[[], None]] = {}

    def fail(self, operation: str, times: int = -1, code: str = "InternalError") -> None:
        self.failing[operation] = times
        self.code = code

    def _hook(self, event_name: str, **_: Any) -> None:
        # event_name: "before-call.<service>.<Operation>"
        _prefix, service, operation = event_name.split(".", 2)
        key = f"{service.replace('-', '')}.{operation}"  # secrets-manager -> secretsmanager
        self.calls[key] = self.calls.get(key, 0) + 1
        if key in self.before:
            self.before[key]()
        remaining = self.failing.get(key, 0)
        if remaining:
            self.failing[key] = remaining - 1 if remaining > 0 else -1
            raise ClientError({"Error": {"Code": self.code, "Message": f"injected {key} failure"}}, operation)


@pytest.fixture
def faults(aws: LocalResources) -> Iterator[AwsFaults]:
    injected = AwsFaults()
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call", injected._hook)
    yield injected
    boto3.DEFAULT_SESSION.events.unregister("before-call", injected._hook)
