"""The orders table keeps the cart compressed: exact, complete, and a fraction of the size it was."""

from __future__ import annotations

import json
from decimal import Decimal

from boto3.dynamodb.types import Binary, TypeSerializer

from bench.prices import item_bytes
from processor.cart_storage import pack, readable, unpack
from tests.conftest import load_fixture


def cart() -> list[dict[str, object]]:
    order = json.loads(load_fixture("order_created_v2_batch.json"), parse_float=Decimal)["orders"][0]
    return list(order["cart"])


def test_a_packed_cart_reads_back_exactly_with_every_key_klikit_sent() -> None:
    lines = cart()

    restored = unpack(Binary(pack(lines)))  # as boto3 hands a binary attribute back

    assert restored == lines
    assert restored[0]["unit_price"] == Decimal("29.75") and isinstance(restored[0]["unit_price"], Decimal)
    assert restored[0]["title_v2"] == {"en": "Nasi Goreng"} and restored[1]["comment"] == ""


def test_the_packed_cart_is_a_fraction_of_the_stored_list() -> None:
    lines = [dict(line, item_id=9000 + n) for n, line in enumerate(cart() * 2)]  # a typical 4-line cart
    as_list = item_bytes({"cart": TypeSerializer().serialize(lines)})
    packed = item_bytes({"cart": {"B": pack(lines)}})

    assert packed * 3 < as_list  # each write of the order item is billed per started KB of the whole item


def test_items_written_before_keep_their_cart_list() -> None:
    item = {"order_id": "7821", "cart": [{"klikit_sku_id": "CBA001"}], "status": Decimal(2)}

    assert readable(item) == item
    assert readable({"order_id": "7821"}) == {"order_id": "7821"}
