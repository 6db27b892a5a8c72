"""The order projection: one item per order, correct under reordering, duplicates and ties."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from tests.conftest import load_json
from tests.faults import Faults
from tests.integration.processor.conftest import Output
from tests.integration.processor.helpers import delivery, failed_ids, order_item, sqs_event, sqs_record
from tools.local.resources import LocalResources

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


def body_with(fixture: str, **changes: Any) -> bytes:
    """A fixture's body with fields of its first order changed (None removes the field)."""
    document = load_json(fixture)
    order = document["orders"][0]
    for name, value in changes.items():
        if value is None:
            order.pop(name, None)
        else:
            order[name] = value
    return json.dumps(document).encode()


def send(processor: Invoke, body: bytes | str, event_type: str, **kwargs: Any) -> None:
    response = processor(sqs_event(sqs_record(delivery(body, event_type, **kwargs))))
    assert failed_ids(response) == []


def test_a_two_order_created_batch_projects_each_order_without_customer_data(
    processor: Invoke, aws: LocalResources
) -> None:
    send(processor, "order_created_v2_batch.json", ORDER_CREATED, event_id="evt-created-1")

    first, second = order_item(aws, "7821"), order_item(aws, "7822")
    assert first is not None and second is not None
    assert first["brand_id"] == 663 and first["branch_id"] == 1062
    assert first["status"] == 2 and first["status_name"] is None
    assert first["total"] == Decimal("84.50") and first["currency"] == "AED"
    assert second["total"] == Decimal("12.5")
    assert first["placed_at"] == "2026-06-25T09:14:11Z"
    assert first["updated_at"] == "2026-06-25T09:14:11Z"
    assert [line["klikit_sku_id"] for line in first["cart"]] == ["CBA001", "CBA014"]
    assert first["last_event_id"] == "evt-created-1"
    assert first["last_event_type"] == ORDER_CREATED
    assert "customer" not in first
    assert "Aisha" not in json.dumps(first, default=str)


def test_a_status_update_sets_the_status_and_its_confirmed_name_and_leaves_the_cart(
    processor: Invoke, aws: LocalResources
) -> None:
    send(processor, "order_created_v2_batch.json", ORDER_CREATED)
    send(processor, "order_status_updated.json", ORDER_STATUS_UPDATED, event_id="evt-ready")

    item = order_item(aws, "7821")
    assert item is not None
    assert (item["status"], item["status_name"]) == (5, "READY")
    # The status event carries a one-line cart; only a cart update replaces the cart.
    assert [line["klikit_sku_id"] for line in item["cart"]] == ["CBA001", "CBA014"]
    assert item["last_event_id"] == "evt-ready"
    assert item["updated_at"] == "2026-06-25T09:21:04Z"


def test_out_of_order_status_updates_leave_the_newer_status(
    processor: Invoke, aws: LocalResources, output: Output
) -> None:
    send(processor, "order_status_updated.json", ORDER_STATUS_UPDATED, event_id="evt-ready")
    older = body_with("order_status_updated.json", status=3, updated_at="2026-06-25T09:19:00Z")
    send(processor, older, ORDER_STATUS_UPDATED, event_id="evt-older")

    item = order_item(aws, "7821")
    assert item is not None
    assert item["status"] == 5
    assert item["last_event_id"] == "evt-ready"
    assert output.metrics()[("StaleEventsIgnored", ORDER_STATUS_UPDATED)] == 1


def test_a_created_event_arriving_after_a_newer_status_keeps_the_status_and_fills_the_cart(
    processor: Invoke, aws: LocalResources
) -> None:
    send(processor, "order_status_updated.json", ORDER_STATUS_UPDATED, event_id="evt-ready")
    send(processor, "order_created_v2_batch.json", ORDER_CREATED, event_id="evt-created")

    item = order_item(aws, "7821")
    assert item is not None
    assert item["status"] == 5
    assert [line["klikit_sku_id"] for line in item["cart"]] == ["CBA001", "CBA014"]
    assert item["last_event_id"] == "evt-ready"  # the newest event applied, by klikit's updated_at


def test_a_cart_update_replaces_the_cart_and_never_merges(processor: Invoke, aws: LocalResources) -> None:
    send(processor, "order_created_v2_batch.json", ORDER_CREATED)
    send(processor, "order_cart_updated.json", ORDER_CART_UPDATED, event_id="evt-cart")

    item = order_item(aws, "7821")
    assert item is not None
    assert [(line["klikit_sku_id"], line["quantity"]) for line in item["cart"]] == [("CBA001", 2), ("CBA020", 1)]
    assert item["cart"][1]["price"] == Decimal("12.25")  # sent as a string, kept as a decimal
    assert item["total"] == Decimal("71.75")
    assert item["cart_event_id"] == "evt-cart"


def test_a_late_cart_update_applies_its_cart_without_undoing_a_newer_status(
    processor: Invoke, aws: LocalResources
) -> None:
    send(processor, "order_created_v2_batch.json", ORDER_CREATED)
    send(processor, "order_status_updated.json", ORDER_STATUS_UPDATED)  # 09:21
    send(processor, "order_cart_updated.json", ORDER_CART_UPDATED)  # 09:17, newer than the created cart

    item = order_item(aws, "7821")
    assert item is not None
    assert item["status"] == 5
    assert [line["klikit_sku_id"] for line in item["cart"]] == ["CBA001", "CBA020"]
    assert item["updated_at"] == "2026-06-25T09:21:04Z"


def test_an_older_cart_update_never_replaces_a_newer_cart(processor: Invoke, aws: LocalResources) -> None:
    send(processor, "order_cart_updated.json", ORDER_CART_UPDATED, event_id="evt-newer-cart")
    older = body_with("order_cart_updated.json", updated_at="2026-06-25T09:16:00Z", cart=[], total="0")
    send(processor, older, ORDER_CART_UPDATED, event_id="evt-older-cart")

    item = order_item(aws, "7821")
    assert item is not None
    assert len(item["cart"]) == 2 and item["cart_event_id"] == "evt-newer-cart"


@pytest.mark.parametrize("status_first", [True, False], ids=["status-first", "created-first"])
def test_on_a_tie_in_updated_at_the_status_update_wins_over_created(
    processor: Invoke, aws: LocalResources, status_first: bool
) -> None:
    same_time = "2026-06-25T09:14:11Z"
    status = body_with("order_status_updated.json", updated_at=same_time)
    deliveries: list[tuple[bytes | str, str]] = [
        (status, ORDER_STATUS_UPDATED),
        ("order_created_v2_batch.json", ORDER_CREATED),
    ]
    for body, event_type in deliveries if status_first else reversed(deliveries):
        send(processor, body, event_type)

    item = order_item(aws, "7821")
    assert item is not None
    assert item["status"] == 5


@pytest.mark.parametrize("cart_first", [True, False], ids=["cart-first", "created-first"])
def test_on_a_tie_in_updated_at_the_cart_update_wins_over_created(
    processor: Invoke, aws: LocalResources, cart_first: bool
) -> None:
    cart = body_with("order_cart_updated.json", updated_at="2026-06-25T09:14:11Z")
    deliveries: list[tuple[bytes | str, str]] = [
        (cart, ORDER_CART_UPDATED),
        ("order_created_v2_batch.json", ORDER_CREATED),
    ]
    for body, event_type in deliveries if cart_first else reversed(deliveries):
        send(processor, body, event_type)

    item = order_item(aws, "7821")
    assert item is not None
    assert [line["klikit_sku_id"] for line in item["cart"]] == ["CBA001", "CBA020"]


def test_without_updated_at_the_receive_time_orders_the_events(processor: Invoke, aws: LocalResources) -> None:
    later = body_with("order_status_updated.json", updated_at=None, status=5)
    earlier = body_with("order_status_updated.json", updated_at=None, status=3)
    send(processor, later, ORDER_STATUS_UPDATED, received_at="2026-06-25T09:40:00Z")
    send(processor, earlier, ORDER_STATUS_UPDATED, received_at="2026-06-25T09:35:00.250Z")

    item = order_item(aws, "7821")
    assert item is not None
    assert item["status"] == 5
    assert item["updated_at"] == "2026-06-25T09:40:00Z"


def test_string_order_ids_and_unconfirmed_status_codes_are_stored_verbatim(
    processor: Invoke, aws: LocalResources
) -> None:
    body = body_with("order_status_updated.json", id="ord_9f2k", status=42)
    send(processor, body, ORDER_STATUS_UPDATED)

    item = order_item(aws, "ord_9f2k")
    assert item is not None
    assert (item["status"], item["status_name"]) == (42, None)


def test_the_verify_page_example_with_only_an_order_id_is_projected(processor: Invoke, aws: LocalResources) -> None:
    send(processor, "verify_page_example.json", ORDER_CREATED, event_id="evt-minimal")

    item = order_item(aws, "42")
    assert item is not None
    assert (item["brand_id"], item["branch_id"], item["last_event_id"]) == (1, 2, "evt-minimal")
    assert "status" not in item and "cart" not in item


def test_events_in_order_cost_one_projection_write_each(processor: Invoke, aws: LocalResources, faults: Faults) -> None:
    writes: list[str] = []
    faults.hold(
        "dynamodb.UpdateItem",
        lambda: writes.append("write"),
        times=-1,
        when=lambda params: params.get("TableName") == aws.orders_table,
    )

    send(processor, "order_created_v2_batch.json", ORDER_CREATED, event_id="evt-in-order-1")
    assert len(writes) == 2  # two orders, status + cart + last event in one conditional write each
    send(processor, body_with("order_status_updated.json"), ORDER_STATUS_UPDATED, event_id="evt-in-order-2")
    assert len(writes) == 3

    item = order_item(aws, "7821")
    assert item is not None
    assert (item["status"], item["last_event_id"], item["cart_event_id"]) == (5, "evt-in-order-2", "evt-in-order-1")
