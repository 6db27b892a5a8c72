"""Receiver fixtures: the real handler wired to in-process moto, a queue reader and AWS fault injection."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from infra.lambda_shapes import LambdaContext
from receiver import handler as receiver_handler
from tools.local.resources import LocalResources

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef


@pytest.fixture
def receive(aws: LocalResources, lambda_context: LambdaContext) -> Iterator[Callable[[dict[str, Any]], Any]]:
    """Invoke the real receiver handler; returns (status, parsed JSON body)."""
    receiver_handler.app.cache_clear()

    def invoke(event: dict[str, Any]) -> tuple[int, Any]:
        reply = receiver_handler.lambda_handler(event, lambda_context)
        assert reply["headers"]["Content-Type"] == "application/json"
        return reply["statusCode"], json.loads(reply["body"])

    yield invoke
    receiver_handler.app.cache_clear()


@pytest.fixture
def queued(aws: LocalResources) -> Callable[[], list[MessageTypeDef]]:
    """Every message on the deliveries queue (received once, with all attributes)."""

    def read() -> list[MessageTypeDef]:
        sqs = boto3.client("sqs")
        messages: list[MessageTypeDef] = []
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
