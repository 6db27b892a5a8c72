"""Effects happen once per signed order fact: keyed on the order as klikit signed it, not on the unsigned event id
or event type. Replays under new ids, re-typed bodies, the same order twice in one delivery, same-second updates,
news-gated status and cart handlers, and created.v2 handlers that run once per order."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from processor.models import OrderEvent
from processor.registry import Registry
from tests.conftest import load_fixture, load_json
from tests.integration.processor.conftest import Output
from tests.integration.processor.helpers import delivery, failed_ids, order_item, sqs_event, sqs_record
from tools.local.resources import LocalResources

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class Pos:
    """A POS that records every call a handler made: (order id, status or cart skus, effect key)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, str]] = []

    def __call__(self, event: OrderEvent) -> None:
        cart = tuple(line.klikit_sku_id for line in event.order.cart or [])
        self.calls.append(
            (event.order_id, event.order.status if event.event_type != ORDER_CART_UPDATED else cart, event.effect_key)
        )

    def seen(self) -> list[tuple[str, Any]]:
        return [(order_id, what) for order_id, what, _ in self.calls]


def send(processor: Invoke, body: bytes | str, event_type: str, event_id: str, **kwargs: Any) -> None:
    response = processor(sqs_event(sqs_record(delivery(body, event_type, event_id=event_id, **kwargs))))
    assert failed_ids(response) == []


def status_body(status: int, updated_at: str, order_id: int = 7821, **changes: Any) -> bytes:
    document = load_json("order_status_updated.json")
    document["orders"][0].update({"id": order_id, "status": status, "updated_at": updated_at, **changes})
    return json.dumps(document).encode()


# --- finding 1: a captured request under a new event id, or re-typed -------------------------------------


def test_a_captured_delivery_sent_again_under_a_new_event_id_runs_no_handler_again(
    processor: Invoke, registry: Registry, output: Output
) -> None:
    tickets, statuses = Pos(), Pos()
    registry.on(ORDER_CREATED, name="pos.ticket")(tickets)
    registry.on(ORDER_STATUS_UPDATED, name="pos.status")(statuses)

    send(processor, "order_created_v2_batch.json", ORDER_CREATED, "evt-original-created")
    send(processor, "order_status_updated.json", ORDER_STATUS_UPDATED, "evt-original-ready")
    send(processor, "order_created_v2_batch.json", ORDER_CREATED, "evt-replayed-created")
    send(processor, "order_status_updated.json", ORDER_STATUS_UPDATED, "evt-replayed-ready")

    assert tickets.seen() == [("7821", 2), ("7822", 2)]  # one kitchen ticket per order, not two
    assert statuses.seen() == [("7821", 5)]
    replays = output.logs("delivery already processed under another event id: its effects were not repeated")
    assert [(r["event_id"], r["earlier_event_ids"]) for r in replays] == [
        ("evt-replayed-created", ["evt-original-created"]),
        ("evt-replayed-ready", ["evt-original-ready"]),
    ]
    assert "Aisha" not in json.dumps(replays)
    counted = output.metrics()
    assert counted[("ReplayedUnderNewId", "")] == 2
    assert counted[("ReplayedUnderNewId", ORDER_STATUS_UPDATED)] == 1


def test_a_created_body_re_sent_as_a_status_update_runs_no_status_handler(
    processor: Invoke, registry: Registry, aws: LocalResources, output: Output
) -> None:
    statuses = Pos()
    registry.on(ORDER_STATUS_UPDATED, name="pos.status")(statuses)
    send(processor, "order_created_v2_batch.json", ORDER_CREATED, "evt-created")
    send(processor, "order_status_updated.json", ORDER_STATUS_UPDATED, "evt-ready")  # 09:21, status 5

    # the created.v2 body (09:14, status 2) under a status event type and a new id: old content, nothing new
    send(processor, "order_created_v2_batch.json", ORDER_STATUS_UPDATED, "evt-retyped")

    assert statuses.seen() == [("7821", 5)]
    item = order_item(aws, "7821")
    assert item is not None and item["status"] == 5 and item["last_event_id"] == "evt-ready"


def test_a_re_typed_copy_of_the_current_state_is_not_news_either(processor: Invoke, registry: Registry) -> None:
    statuses = Pos()
    registry.on(ORDER_STATUS_UPDATED, name="pos.status")(statuses)
    send(processor, "order_created_v2_batch.json", ORDER_CREATED, "evt-created")

    # nothing newer came: the created body re-typed is at the same clock as what it created, with the same status
    send(processor, "order_created_v2_batch.json", ORDER_STATUS_UPDATED, "evt-retyped")

    assert statuses.seen() == []


def test_the_same_state_from_another_source_with_different_bytes_is_not_news(
    processor: Invoke, registry: Registry, output: Output
) -> None:
    statuses = Pos()
    registry.on(ORDER_STATUS_UPDATED, name="pos.status")(statuses)
    send(processor, "order_status_updated.json", ORDER_STATUS_UPDATED, "evt-ready")

    # the same order state, re-serialized (spacing, key order, 84.5 for "84.50") with a field klikit added later
    document = load_json("order_status_updated.json")
    order = document["orders"][0]
    document["orders"][0] = {"reconciled": True, **dict(reversed(list(order.items())))}
    send(processor, json.dumps(document, indent=2).encode(), ORDER_STATUS_UPDATED, "evt-other-source")

    assert statuses.seen() == [("7821", 5)]


# --- what a handler is given ------------------------------------------------------------------------------


def test_the_effect_key_follows_the_signed_order_not_the_event_id(processor: Invoke, registry: Registry) -> None:
    first, second = Pos(), Pos()
    registry.on(ORDER_STATUS_UPDATED, name="pos.status", include_stale=True)(first)
    registry.on(ORDER_STATUS_UPDATED, name="crm.status", include_stale=True)(second)

    send(processor, status_body(3, "2026-06-25T09:19:00Z"), ORDER_STATUS_UPDATED, "evt-a")
    send(processor, status_body(5, "2026-06-25T09:21:04Z"), ORDER_STATUS_UPDATED, "evt-b")

    (_, _, key_a), (_, _, key_b) = first.calls
    assert len(key_a) == 40 and int(key_a, 16) >= 0  # hex, short enough for a POS's idempotency key
    assert key_a != key_b  # another order fact
    assert {call[2] for call in second.calls}.isdisjoint({key_a, key_b})  # another handler


# --- created.v2: an order is created once -----------------------------------------------------------------


def test_a_second_created_for_an_order_updates_the_projection_but_runs_no_created_handler(
    processor: Invoke, registry: Registry, aws: LocalResources
) -> None:
    tickets = Pos()
    registry.on(ORDER_CREATED, name="pos.ticket")(tickets)
    send(processor, "order_created_v2_batch.json", ORDER_CREATED, "evt-created")

    # klikit (or `replay --as-new` with an edited body) sends a created.v2 again, newer and with another status
    document = load_json("order_created_v2_batch.json")
    document["orders"][0].update({"status": 3, "updated_at": "2026-06-25T09:15:00Z"})
    send(processor, json.dumps(document).encode(), ORDER_CREATED, "evt-created-again")

    assert tickets.seen() == [("7821", 2), ("7822", 2)]
    item = order_item(aws, "7821")
    assert item is not None and item["status"] == 3  # the projection still takes what is newer


# --- status and cart handlers hear only news -----------------------------------------------------------


def test_a_stale_status_update_reaches_only_handlers_that_asked_for_stale_events(
    processor: Invoke, registry: Registry, output: Output
) -> None:
    news_only, everything = Pos(), Pos()
    registry.on(ORDER_STATUS_UPDATED, name="pos.status")(news_only)
    registry.on(ORDER_STATUS_UPDATED, name="audit.status", include_stale=True)(everything)

    send(processor, status_body(5, "2026-06-25T09:21:04Z"), ORDER_STATUS_UPDATED, "evt-ready")
    send(processor, status_body(3, "2026-06-25T09:19:00Z"), ORDER_STATUS_UPDATED, "evt-late")

    assert news_only.seen() == [("7821", 5)]  # the POS never moves backwards
    assert everything.seen() == [("7821", 5), ("7821", 3)]
    assert output.metrics()[("StaleEventsIgnored", ORDER_STATUS_UPDATED)] == 1


def test_a_stale_cart_update_does_not_reach_cart_handlers(processor: Invoke, registry: Registry) -> None:
    carts = Pos()
    registry.on(ORDER_CART_UPDATED, name="kds.cart")(carts)
    send(processor, "order_cart_updated.json", ORDER_CART_UPDATED, "evt-cart")  # 09:17
    document = load_json("order_cart_updated.json")
    document["orders"][0].update({"updated_at": "2026-06-25T09:16:00Z", "cart": []})
    send(processor, json.dumps(document).encode(), ORDER_CART_UPDATED, "evt-older-cart")

    assert carts.seen() == [("7821", ("CBA001", "CBA020"))]


# --- finding 2: the same order twice in one delivery -----------------------------------------------------


def test_the_same_order_twice_in_one_delivery_is_processed_in_array_order_each_its_own_effect(
    processor: Invoke, registry: Registry, aws: LocalResources
) -> None:
    statuses = Pos()
    registry.on(ORDER_STATUS_UPDATED, name="pos.status")(statuses)
    document = load_json("order_status_updated.json")
    order = document["orders"][0]
    document["orders"] = [
        {**order, "status": 3, "updated_at": "2026-06-25T09:19:00Z"},
        {**order, "status": 5, "updated_at": "2026-06-25T09:21:04Z"},
    ]

    send(processor, json.dumps(document).encode(), ORDER_STATUS_UPDATED, "evt-two-states")

    assert statuses.seen() == [("7821", 3), ("7821", 5)]
    item = order_item(aws, "7821")
    assert item is not None and item["status"] == 5


# --- finding 3: two updates within one second ------------------------------------------------------------


def test_same_second_status_updates_processed_in_order_end_with_the_later_one(
    processor: Invoke, registry: Registry, aws: LocalResources
) -> None:
    statuses = Pos()
    registry.on(ORDER_STATUS_UPDATED, name="pos.status")(statuses)
    same_second = "2026-06-25T09:21:04Z"

    send(processor, status_body(4, same_second), ORDER_STATUS_UPDATED, "evt-preparing")
    send(processor, status_body(5, same_second), ORDER_STATUS_UPDATED, "evt-ready")
    # a retry, a replay under a new id and a re-typed copy of the first: already applied, never news again
    send(processor, status_body(4, same_second), ORDER_STATUS_UPDATED, "evt-preparing")
    send(processor, status_body(4, same_second), ORDER_STATUS_UPDATED, "evt-preparing-replayed")

    item = order_item(aws, "7821")
    assert item is not None and (item["status"], item["status_event_id"]) == (5, "evt-ready")
    assert statuses.seen() == [("7821", 4), ("7821", 5)]


def test_a_handler_that_failed_runs_on_the_retry_although_the_projection_already_took_the_event(
    processor: Invoke, registry: Registry
) -> None:
    calls: list[str] = []

    def flaky(event: OrderEvent) -> None:
        calls.append(event.event_id)
        if len(calls) == 1:
            raise ConnectionError("POS unreachable")

    registry.on(ORDER_STATUS_UPDATED, name="pos.flaky")(flaky)
    ready = delivery(status_body(5, "2026-06-25T09:21:04Z"), ORDER_STATUS_UPDATED, event_id="evt-ready")

    first = processor(sqs_event(record := sqs_record(ready)))
    second = processor(sqs_event(sqs_record(ready, receive_count=2)))

    assert failed_ids(first) == [record["messageId"]] and failed_ids(second) == []
    assert calls == ["evt-ready", "evt-ready"]


@pytest.mark.parametrize("event_type", [ORDER_STATUS_UPDATED, ORDER_CART_UPDATED])
def test_a_body_replayed_after_a_newer_update_is_stale_and_runs_nothing(
    processor: Invoke, registry: Registry, event_type: str
) -> None:
    pos = Pos()
    registry.on(event_type, name="pos.any")(pos)
    fixture = "order_status_updated.json" if event_type == ORDER_STATUS_UPDATED else "order_cart_updated.json"
    send(processor, fixture, event_type, "evt-first")
    newer = load_json(fixture)
    newer["orders"][0].update({"updated_at": "2026-06-25T09:30:00Z", "status": 6, "cart": []})
    send(processor, json.dumps(newer).encode(), event_type, "evt-newer")

    send(processor, load_fixture(fixture), event_type, "evt-first-replayed")

    assert len(pos.calls) == 2
