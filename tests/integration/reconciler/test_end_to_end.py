"""Reconciled events through the real processor (moto, the fake API over HTTP): each stands in for the webhook.

A created.v2 klikit never delivered is projected after a reconcile and its created handler runs once; a lost status
update is healed and its status handler runs once; the webhook arriving after the heal changes nothing and runs
nothing again; handlers can tell a reconciled event by `event.source`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from infra import lambda_shapes
from infra.lambda_shapes import LambdaContext
from klikit.delivery import RECONCILER
from klikit.events import ORDER_CREATED, ORDER_STATUS_UPDATED
from processor import handler as processor_handler
from processor.models import OrderEvent
from processor.registry import REGISTRY, Registry
from reconciler.app import ScheduledReconciler
from tests.integration.processor.helpers import delivery, order_item, sqs_event, sqs_record
from tests.integration.reconciler.conftest import NOW, drain, order
from tools.fake_klikit import FakeKlikit
from tools.local.resources import LocalResources

Build = Callable[..., ScheduledReconciler]


class Handled:
    """A user handler that records what it was called for."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.sources: list[str] = []

    def __call__(self, event: OrderEvent) -> None:
        self.calls[(event.order_id, str(event.order.status))] += 1
        self.sources.append(event.source)


@pytest.fixture
def registry() -> Any:
    with REGISTRY.scope() as scoped:
        yield scoped


@pytest.fixture
def process(aws: LocalResources, lambda_context: LambdaContext) -> Callable[[list[dict[str, Any]]], None]:
    """Feed records to the real processor handler, as the SQS event source does."""
    processor_handler.app.cache_clear()

    def run(records: list[dict[str, Any]]) -> None:
        if not records:
            return
        # infra.lambda_shapes' fake context has the attributes Lambda's has, not Powertools' LambdaContext's type
        result = processor_handler.lambda_handler(sqs_event(*records), lambda_context)  # type: ignore[arg-type]
        assert result["batchItemFailures"] == []

    return run


def queued_records(aws: LocalResources) -> list[dict[str, Any]]:
    """What the reconciler put on the queue, as the processor's event source hands it over."""
    arn = lambda_shapes.queue_arn(aws.queue_url.rsplit("/", 1)[-1])
    return [lambda_shapes.record_from_message(message, arn) for message in drain(aws.queue_url)]


def webhook(listed: dict[str, Any], event_type: str, event_id: str) -> dict[str, Any]:
    body = json.dumps({"brand_id": listed["brand_id"], "branch_id": listed["branch_id"], "orders": [listed]})
    return sqs_record(delivery(body.encode(), event_type, event_id=event_id))


def run(build: Build) -> dict[str, Any]:
    return build().run(lambda: 600_000)


def test_a_created_order_klikit_never_delivered_is_projected_and_its_created_handler_runs_once(
    scheduled: Build, klikit: FakeKlikit, aws: LocalResources, registry: Registry, process: Any
) -> None:
    kitchen = Handled()
    registry.on(ORDER_CREATED, name="test.kitchen")(kitchen)
    listed = order(8801)
    klikit.add(listed, created_at=NOW - timedelta(hours=1))

    run(scheduled)
    process(queued_records(aws))
    # klikit's own delivery finally arrives, after the heal
    process([webhook(listed, ORDER_CREATED, "evt-klikit-late-created")])
    run(scheduled)  # and a later run finds nothing to heal
    process(queued_records(aws))

    item = order_item(aws, "8801")
    assert item is not None and item["status"] == 2
    assert kitchen.calls == {("8801", "2"): 1}
    assert kitchen.sources == [RECONCILER]


def test_a_lost_status_update_is_healed_its_status_handler_runs_once_and_the_late_webhook_runs_nothing(
    scheduled: Build, klikit: FakeKlikit, aws: LocalResources, registry: Registry, process: Any
) -> None:
    pos = Handled()
    registry.on(ORDER_STATUS_UPDATED, name="test.pos-status")(pos)
    placed = order(8802)
    process([webhook(placed, ORDER_CREATED, "evt-placed")])
    ready = {**placed, "status": 5, "updated_at": "2026-06-25T09:30:00Z"}
    klikit.add(ready, created_at=NOW - timedelta(hours=1))  # the READY webhook never arrived

    run(scheduled)
    process(queued_records(aws))
    process([webhook(ready, ORDER_STATUS_UPDATED, "evt-klikit-late-ready")])

    item = order_item(aws, "8802")
    assert item is not None and item["status"] == 5
    assert item["status_event_id"] == "reconcile:8802:2026-06-25T09:30:00Z:status"
    assert pos.calls == {("8802", "5"): 1}


def test_a_heal_after_the_webhook_changes_nothing_and_runs_nothing(
    scheduled: Build, klikit: FakeKlikit, aws: LocalResources, registry: Registry, process: Any
) -> None:
    pos = Handled()
    registry.on(ORDER_STATUS_UPDATED, name="test.pos-status")(pos)
    placed = order(8803)
    ready = {**placed, "status": 5, "updated_at": "2026-06-25T09:30:00Z"}
    process([webhook(placed, ORDER_CREATED, "evt-placed-3")])
    klikit.add(ready, created_at=NOW - timedelta(hours=1))
    run(scheduled)  # reads klikit's list while the READY webhook is still on its way
    healing = queued_records(aws)
    process([webhook(ready, ORDER_STATUS_UPDATED, "evt-ready-3")])  # the webhook lands first

    process(healing)  # then the heal

    assert pos.calls == {("8803", "5"): 1}
    item = order_item(aws, "8803")
    assert item is not None and item["status_event_id"] == "evt-ready-3"
