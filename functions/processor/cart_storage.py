"""The cart as the orders table keeps it: compressed, because it is most of an order item's size.

Every write to an order item is billed per started KB of the whole item (before or after the write), so a ~2 KB
cart made a status update cost 3 write units where the rest of the item needs 1. The cart is stored as one binary
attribute: zlib over its DynamoDB JSON (numbers stay exact decimals, every key klikit sent is kept). `readable`
gives an item back with its cart as a list again; items written before hold the list itself and pass unchanged.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

CART = "cart"
_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


def pack(cart: list[Any]) -> bytes:
    wire = _serialize(cart)["L"]
    return zlib.compress(json.dumps(wire, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), 9)


def unpack(stored: Any) -> Any:
    """The cart list from what the table holds: packed bytes (a Binary when read through boto3), or a plain list."""
    if isinstance(stored, Binary):
        stored = stored.value  # type: ignore[attr-defined]  # the stubs leave out Binary.value
    if isinstance(stored, bytes | bytearray):
        return [_deserialize(line) for line in json.loads(zlib.decompress(stored))]
    return stored


def readable(item: Mapping[str, Any]) -> dict[str, Any]:
    """A deserialized order item with its cart unpacked."""
    return {name: unpack(value) if name == CART else value for name, value in item.items()}
