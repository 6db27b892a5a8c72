"""Parsing klikit's body: lenient where klikit is vague, Decimal money, string ids, no customer data in errors."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from klikit.errors import PoisonDelivery
from processor.models import CartLine, Order, parse_envelope, parse_order, status_name
from tests.conftest import load_fixture


def _order(**fields: object) -> bytes:
    return json.dumps({"brand_id": 1, "branch_id": 2, "orders": [{"id": 7, **fields}]}).encode()


def _orders(body: bytes) -> list[Order]:
    return [parse_order(index, raw) for index, raw in enumerate(parse_envelope(body).orders)]


def test_the_created_batch_fixture_parses_into_two_typed_orders() -> None:
    raw_orders = parse_envelope(load_fixture("order_created_v2_batch.json")).orders
    orders = _orders(load_fixture("order_created_v2_batch.json"))

    assert [order.id for order in orders] == ["7821", "7822"]
    assert orders[0].total == Decimal("84.50") and orders[1].total == Decimal("12.5")
    assert orders[0].cart is not None and orders[0].cart[0].price == Decimal("59.5")
    assert raw_orders[0]["cart_v2"][0]["price"] == "59.50"  # the order as klikit sent it, untouched


@pytest.mark.parametrize("total", ["84.50", 84.5, 84, "1e3"])
def test_money_is_a_decimal_whether_sent_as_a_number_or_a_string(total: object) -> None:
    [order] = _orders(_order(total=total))

    assert isinstance(order.total, Decimal)
    assert order.total == Decimal(str(total))


def test_numbers_are_never_floats_anywhere_in_the_raw_order() -> None:
    raw_orders = parse_envelope(b'{"brand_id":1,"branch_id":2,"orders":[{"id":7,"vat":0.1,"x":{"y":[2.5]}}]}').orders

    assert raw_orders[0]["vat"] == Decimal("0.1") and raw_orders[0]["x"]["y"] == [Decimal("2.5")]


def test_numbers_in_text_fields_are_kept_as_the_text_klikit_sent() -> None:
    body = b'{"brand_id":1,"branch_id":2,"orders":[{"id":7,"external_id":12345,"currency":978,'
    body += b'"cart":[{"klikit_sku_id":1001,"title":12.50,"quantity":1}]}]}'

    [order] = _orders(body)

    assert (order.external_id, order.currency) == ("12345", "978")
    assert order.cart == [CartLine(klikit_sku_id="1001", title="12.50", quantity=1)]


@pytest.mark.parametrize("sent", [True, [1], {"a": 1}])
def test_a_text_field_that_is_not_a_scalar_still_makes_the_order_unusable(sent: object) -> None:
    with pytest.raises(PoisonDelivery) as raised:
        _orders(_order(external_id=sent))

    assert (raised.value.reason, raised.value.detail.split(":")[0]) == ("invalid_order", "orders.0.external_id")


@pytest.mark.parametrize(("sent", "kept"), [(7821, "7821"), ("ord_9f2k", "ord_9f2k"), (" 42 ", "42")])
def test_order_ids_are_strings_whatever_klikit_sends(sent: object, kept: str) -> None:
    assert Order.model_validate({"id": sent}).id == kept


@pytest.mark.parametrize("sent", [None, True, "", 1.5, {"id": 1}])
def test_an_unusable_order_id_makes_that_order_unusable(sent: object) -> None:
    with pytest.raises(PoisonDelivery) as raised:
        _orders(json.dumps({"brand_id": 1, "branch_id": 2, "orders": [{"id": sent}]}).encode())

    assert raised.value.reason == "invalid_order"


def test_unknown_fields_are_ignored_and_unknown_status_codes_kept() -> None:
    [order] = _orders(_order(status=42, brand_new_field={"a": 1}, provider_tip="1.00"))

    assert order.status == 42
    assert order.status_name is None


def test_only_ready_has_a_confirmed_status_name() -> None:
    assert [status_name(code) for code in (5, 2, 4, None)] == ["READY", None, None, None]


def test_timestamps_without_a_zone_are_utc() -> None:
    order = Order.model_validate({"id": 1, "updated_at": "2026-06-25T09:21:04", "placed_at": "2026-06-25T09:14:11Z"})

    assert order.updated_at is not None and order.updated_at.utcoffset() is not None
    assert order.placed_at is not None and order.placed_at.isoformat() == "2026-06-25T09:14:11+00:00"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b'{"brand_id":1,"branch_id":2,"orders":[{"id":1,"total":NaN}]}', "not_json"),
        (b"[]", "invalid_envelope"),
        (b'{"brand_id":"x","branch_id":2,"orders":[{"id":1}]}', "invalid_envelope"),
        (b'{"brand_id":1,"branch_id":2,"orders":[{"id":1,"total":"Infinity"}]}', "invalid_order"),
    ],
)
def test_bodies_that_are_not_klikit_envelopes_are_poison(body: bytes, reason: str) -> None:
    with pytest.raises(PoisonDelivery) as raised:
        _orders(body)

    assert raised.value.reason == reason


def test_a_poison_detail_never_echoes_what_the_customer_typed() -> None:
    body = _order(customer="Aisha Rahman, +971501234567", status="Aisha")

    with pytest.raises(PoisonDelivery) as raised:
        _orders(body)

    assert "Aisha" not in raised.value.detail and "+971" not in raised.value.detail
    assert "orders.0.status" in raised.value.detail


def test_the_customer_is_available_to_handlers_but_not_in_the_repr() -> None:
    order = Order.model_validate({"id": 1, "customer": {"name": "Aisha Rahman"}})

    assert order.customer == {"name": "Aisha Rahman"}
    assert "Aisha" not in repr(order)
