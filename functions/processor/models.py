"""Typed models of klikit's delivery body (docs/klikit.md, Delivery body) and of what a handler receives.

Lenient where klikit is vague: unknown fields are ignored, the order id may be an integer or a string (kept as a
string), money may be a JSON number or a decimal string (kept as Decimal, never float), and a status code we have no
name for is kept as it is. Strict only where a wrong value would corrupt what we store: such a body is poison.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from klikit.delivery import KLIKIT
from klikit.errors import PoisonDelivery
from klikit.events import SMOKE_MARKER

MAX_DETAIL_LENGTH = 240


class OrderStatus(IntEnum):
    """The OrderStatus codes klikit has confirmed. Only 5 = READY is documented today (docs/klikit.md)."""

    READY = 5


def status_name(code: int | None) -> str | None:
    """The confirmed name of a status code, or None when klikit has not published it."""
    if code is None:
        return None
    try:
        return OrderStatus(code).name
    except ValueError:
        return None


def _money(value: Any) -> Any:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError("money must be a number or a decimal string")
    if isinstance(value, int | float | str):
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError("money must be a number or a decimal string") from None
        if not amount.is_finite():
            raise ValueError("money must be finite")
        return amount
    raise ValueError("money must be a number or a decimal string")


def _identifier(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("id must be an integer or a string")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError("id must be an integer or a non-empty string")


def _text(value: Any) -> Any:
    # klikit's examples send text fields as strings, but a number there (an external id 12345) is still usable
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    return value


def _utc(value: Any) -> Any:
    if isinstance(value, str) and value.endswith("Z"):
        value = value[:-1] + "+00:00"
    return value


Money = Annotated[Decimal | None, BeforeValidator(_money)]
Identifier = Annotated[str, BeforeValidator(_identifier)]
Text = Annotated[str | None, BeforeValidator(_text)]
Timestamp = Annotated[datetime | None, BeforeValidator(_utc)]


class CartLine(BaseModel):
    """One line of `cart`. The common keys are typed; every other key klikit sends is kept as sent."""

    model_config = ConfigDict(extra="allow", frozen=True)

    item_id: int | str | None = None
    klikit_id: int | str | None = None
    klikit_sku_id: Text = None
    title: Text = None
    quantity: int | Decimal | None = None
    price: Money = None
    unit_price: Money = None


class Order(BaseModel):
    """One record of `orders[]`, shaped like klikit's GET-order model. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Identifier
    external_id: Text = None
    brand_id: int | None = None
    branch_id: int | None = None
    status: int | None = None
    placed_at: Timestamp = None
    updated_at: Timestamp = None
    currency: Text = None
    total: Money = None
    cart: list[CartLine] | None = None
    # Personal data: handlers may need it (a delivery address for the POS); it is never logged or projected.
    customer: dict[str, Any] | None = Field(default=None, repr=False)

    @field_validator("placed_at", "updated_at")
    @classmethod
    def _assume_utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def status_name(self) -> str | None:
        return status_name(self.status)


class Envelope(BaseModel):
    """klikit's body for every event type: `{brand_id, branch_id, orders[]}` with one or more orders.

    The orders are checked one by one (`parse_orders`): one unusable order does not make the others unusable."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    brand_id: int
    branch_id: int
    orders: list[Any] = Field(min_length=1)
    # a `./klikit smoke` delivery only when the field is JSON true; any other value is ignored, never poison
    smoke: Annotated[bool, BeforeValidator(lambda value: value is True)] = Field(
        default=False, validation_alias=SMOKE_MARKER
    )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(body: bytes) -> Any:
    """klikit JSON with every non-integer number as Decimal (DynamoDB and money both need it)."""
    return json.loads(body, parse_float=Decimal, parse_constant=_no_constants)


def _validation_detail(error: ValidationError, prefix: str = "") -> str:
    # Locations and error types only: pydantic's messages echo the input, which may be customer data.
    parts = [prefix + ".".join(str(part) for part in e["loc"]) + ":" + e["type"] for e in error.errors()]
    return ", ".join(parts)[:MAX_DETAIL_LENGTH]


def parse_envelope(body: bytes) -> Envelope:
    """The envelope with its orders as klikit sent them (check each with `parse_order`), or PoisonDelivery."""
    try:
        document = loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: nested deeper than the parser can go; no retry will parse it either
        detail = type(exc).__name__ if isinstance(exc, (UnicodeDecodeError, RecursionError)) else str(exc)
        raise PoisonDelivery("not_json", detail[:MAX_DETAIL_LENGTH]) from None
    try:
        return Envelope.model_validate(document)
    except ValidationError as exc:
        raise PoisonDelivery("invalid_envelope", _validation_detail(exc)) from None


def parse_order(index: int, raw_order: Any) -> Order:
    """One order of the envelope, typed; PoisonDelivery("invalid_order") naming its index and fields if unusable."""
    try:
        return Order.model_validate(raw_order)
    except ValidationError as exc:
        raise PoisonDelivery("invalid_order", _validation_detail(exc, f"orders.{index}.")) from None


@dataclass(frozen=True)
class OrderEvent:
    """What a handler receives: one order of one delivery, with the delivery's metadata.

    `order` is typed; `raw_order` is the order exactly as klikit sent it (numbers as Decimal), for fields the
    model does not name. Both contain customer personal data: use it, never log it.
    """

    event_id: str
    event_type: str
    received_at: datetime
    brand_id: int
    branch_id: int
    order: Order
    raw_order: Mapping[str, Any] = field(repr=False)
    order_digest: str = field(default="", repr=False)  # SHA-256 of the order's canonical form (what klikit signed)
    effect_key: str = ""  # this handler's effect key: pass it to your POS as its idempotency key
    # "reconciler" when the reconciler made this event from klikit's orders API (the webhook never came), else "klikit"
    source: str = KLIKIT

    @property
    def order_id(self) -> str:
        return self.order.id

    @property
    def effective_time(self) -> datetime:
        """klikit's `updated_at`, or the time the receiver took the delivery when klikit sent none."""
        return self.order.updated_at or self.received_at


@dataclass(frozen=True)
class UnknownEvent:
    """What the catch-all handler receives: a verified delivery of an event type this code does not know."""

    event_id: str
    event_type: str
    received_at: datetime
    body: bytes = field(repr=False)
    effect_key: str = ""  # this handler's effect key: pass it on as an idempotency key

    def json(self) -> Any | None:
        """The body parsed like klikit's JSON (Decimal numbers), or None when it is not JSON."""
        try:
            return loads(self.body)
        except (UnicodeDecodeError, ValueError):
            return None


def parse_received_at(text: str) -> datetime:
    """The receiver's `received_at` attribute; a malformed one makes the delivery poison."""
    try:
        value = datetime.fromisoformat(_utc(text))
    except ValueError:
        raise PoisonDelivery("invalid_received_at", "received_at is not an ISO-8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
