"""User handlers: each effect once per (event id, order id, handler), failures retried record by record."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from processor.models import OrderEvent
from processor.registry import Registry
from tests.conftest import load_json
from tests.integration.processor.conftest import Output
from tests.integration.processor.helpers import (
    delivery,
    failed_ids,
    order_item,
    sqs_event,
    sqs_record,
)
from tools.local.resources import LocalResources

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class Recorder:
    """A handler that records each call (an effect a test can count) and can be told to fail."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.fail_for: set[str] = set()

    def __call__(self, event: OrderEvent) -> None:
        if event.order_id in self.fail_for:
            raise ConnectionError("POS unreachable")
        self.calls[(event.event_id, event.order_id)] += 1


def test_the_same_delivery_twice_runs_each_handler_once_per_order(
    processor: Invoke, registry: Registry, aws: LocalResources
) -> None:
    pos = Recorder()
    registry.on(ORDER_CREATED, name="test.pos")(pos)
    created = delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-dup")

    # Twice in one batch, then again in a later invocation (a redelivery gets a new SQS message id).
    first = processor(sqs_event(sqs_record(created), sqs_record(created)))
    second = processor(sqs_event(sqs_record(created, receive_count=2)))

    assert failed_ids(first) == [] and failed_ids(second) == []
    assert pos.calls == {("evt-dup", "7821"): 1, ("evt-dup", "7822"): 1}
    item = order_item(aws, "7821")
    assert item is not None and item["last_event_id"] == "evt-dup"


def test_the_worked_example_logs_one_kitchen_ticket_per_order_without_customer_data(
    processor: Invoke, output: Output
) -> None:
    created = delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-kitchen")
    processor(sqs_event(sqs_record(created)))
    processor(sqs_event(sqs_record(created)))

    tickets = [r["ticket"] for r in output.logs("kitchen ticket")]
    assert [ticket["order_id"] for ticket in tickets] == ["7821", "7822"]
    assert tickets[0]["lines"][0] == {"sku": "CBA001", "title": "Nasi Goreng", "quantity": "2"}
    assert "Aisha" not in json.dumps(tickets)


def test_a_failing_handler_is_retried_without_repeating_the_handler_that_succeeded(
    processor: Invoke, registry: Registry, aws: LocalResources, output: Output
) -> None:
    pos, loyalty = Recorder(), Recorder()
    registry.on(ORDER_STATUS_UPDATED, name="test.pos")(pos)
    registry.on(ORDER_STATUS_UPDATED, name="test.loyalty")(loyalty)
    loyalty.fail_for = {"7821"}
    ready = delivery("order_status_updated.json", ORDER_STATUS_UPDATED, event_id="evt-ready")
    record = sqs_record(ready)

    first = processor(sqs_event(record))
    assert failed_ids(first) == [record["messageId"]]
    assert pos.calls == {("evt-ready", "7821"): 1} and loyalty.calls == {}
    item = order_item(aws, "7821")
    assert item is not None and item["status"] == 5  # the projection ran too

    loyalty.fail_for = set()
    second = processor(sqs_event(sqs_record(ready, receive_count=2)))
    assert failed_ids(second) == []
    assert pos.calls == {("evt-ready", "7821"): 1}
    assert loyalty.calls == {("evt-ready", "7821"): 1}

    failures = output.logs("handler failed")
    assert [(f["handler"], f["error_type"], f["event_id"], f["order_id"]) for f in failures] == [
        ("test.loyalty", "ConnectionError", "evt-ready", "7821")
    ]
    counted = output.metrics()
    assert counted[("EventsFailed", ORDER_STATUS_UPDATED)] == 1
    assert counted[("EventsProcessed", ORDER_STATUS_UPDATED)] == 1
    assert (counted[("EventsFailed", "")], counted[("EventsProcessed", "")]) == (1, 1)


def test_one_failing_record_in_a_batch_of_ten_is_the_only_one_reported(
    processor: Invoke, registry: Registry, aws: LocalResources
) -> None:
    pos = Recorder()
    registry.on(ORDER_CART_UPDATED, name="test.pos")(pos)
    pos.fail_for = {"1005"}
    records = []
    for n in range(10):
        document = load_json("order_cart_updated.json")
        document["orders"][0]["id"] = 1000 + n
        body = json.dumps(document).encode()
        records.append(sqs_record(delivery(body, ORDER_CART_UPDATED, event_id=f"evt-cart-{n}")))

    response = processor(sqs_event(*records))

    assert failed_ids(response) == [records[5]["messageId"]]
    assert sorted(order for _, order in pos.calls) == [str(1000 + n) for n in range(10) if n != 5]
    assert all(order_item(aws, str(1000 + n)) is not None for n in range(10))


def test_a_handler_registered_for_one_type_does_not_run_for_another(processor: Invoke, registry: Registry) -> None:
    pos = Recorder()
    registry.on(ORDER_CREATED, name="test.pos")(pos)

    processor(sqs_event(sqs_record(delivery("order_status_updated.json", ORDER_STATUS_UPDATED))))

    assert pos.calls == {}


def test_handlers_receive_typed_orders_and_the_order_as_klikit_sent_it(processor: Invoke, registry: Registry) -> None:
    received: list[OrderEvent] = []
    registry.on(ORDER_CREATED, name="test.capture")(received.append)

    processor(sqs_event(sqs_record(delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-typed"))))

    first, second = received
    assert (first.event_id, first.brand_id, first.branch_id, first.order_id) == ("evt-typed", 663, 1062, "7821")
    assert str(first.order.total) == "84.50" and str(second.order.total) == "12.5"
    assert first.order.customer is not None and first.raw_order["provider_delivery_fee"] == "0.00"
    assert "Aisha" not in repr(first)
