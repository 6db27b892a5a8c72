"""A `./klikit smoke` delivery (marked inside the signed body) runs the order projection and nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from klikit import settings
from klikit.events import ORDER_CREATED, SMOKE_MARKER
from processor.models import OrderEvent
from processor.registry import Registry
from tests.conftest import load_json
from tests.integration.processor.helpers import delivery, failed_ids, order_item, sqs_event, sqs_record
from tools.local.resources import LocalResources

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def bus_subscriber(aws: LocalResources, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fan-out on, and a queue that receives whatever the processor publishes on the default bus."""
    monkeypatch.setenv(settings.EVENT_BUS_NAME, "default")
    sqs, events = boto3.client("sqs"), boto3.client("events")
    url = sqs.create_queue(QueueName="smoke-subscriber")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="klikit-all", EventPattern=json.dumps({"source": ["klikit.webhooks"]}))
    events.put_targets(Rule="klikit-all", Targets=[{"Id": "subscriber", "Arn": arn}])
    return str(url)


def body(smoke: Any) -> bytes:
    document = load_json("order_created_v2_batch.json")
    if smoke is not None:
        document[SMOKE_MARKER] = smoke
    return json.dumps(document).encode()


def published(url: str) -> int:
    return len(boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []))


def test_smoke_delivery_is_projected_but_never_reaches_handlers_or_the_bus(
    processor: Invoke, aws: LocalResources, registry: Registry, bus_subscriber: str
) -> None:
    called: list[str] = []

    @registry.on(ORDER_CREATED, name="pos.create-ticket")
    def to_pos(event: OrderEvent) -> None:
        called.append(event.order.id)

    response = processor(sqs_event(sqs_record(delivery(body(True), ORDER_CREATED, event_id="evt-smoke"))))

    assert failed_ids(response) == []
    assert (order_item(aws, "7821") or {}).get("last_event_id") == "evt-smoke"
    assert called == []
    assert published(bus_subscriber) == 0


@pytest.mark.parametrize("marker", [None, False, "true", 1])
def test_any_other_delivery_runs_every_handler_and_the_fan_out(
    processor: Invoke, registry: Registry, bus_subscriber: str, marker: Any
) -> None:
    called: list[str] = []

    @registry.on(ORDER_CREATED, name="pos.create-ticket")
    def to_pos(event: OrderEvent) -> None:
        called.append(event.order.id)

    response = processor(sqs_event(sqs_record(delivery(body(marker), ORDER_CREATED))))

    assert failed_ids(response) == []
    assert called == ["7821", "7822"]
    assert published(bus_subscriber) == 2
