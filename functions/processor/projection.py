"""The built-in handler: one DynamoDB item per order, correct under reordering and duplicates.

The item holds independent parts, each with its own clock, so a late event of one kind never undoes a newer
event of another kind:

| part     | written by                 | attributes                                   |
|----------|----------------------------|----------------------------------------------|
| `status` | created.v2, status.updated | status, status_name                          |
| `cart`   | created.v2, cart.updated   | cart (replaced whole, never merged), total, currency |
| `last`   | every applied event        | last_event_id, last_event_type, updated_at   |

A part's clock is (`<part>_at_ms`, `<part>_rank`): the event's effective time (klikit's `updated_at`, else the
receive time) in epoch milliseconds, then a rank that breaks ties in favour of the event about that part
(created.v2 = 0, status.updated / cart.updated = 1). A write applies only when its clock is strictly newer, as a
conditional UpdateItem (no read-then-write). In the common case (events in order) every part the event carries is
newer, and one UpdateItem writes them all; only when that is refused does each part get its own conditional write.
A rejected part write whose part already carries this event id was a duplicate; otherwise the event was stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from processor.models import OrderEvent


class Outcome(StrEnum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    STALE = "stale"


STATUS = "status"
CART = "cart"
LAST = "last"

PARTS_BY_EVENT_TYPE: dict[str, tuple[str, ...]] = {
    ORDER_CREATED: (STATUS, CART),
    ORDER_STATUS_UPDATED: (STATUS,),
    ORDER_CART_UPDATED: (CART,),
}
TIE_RANK: dict[str, int] = {ORDER_CREATED: 0, ORDER_STATUS_UPDATED: 1, ORDER_CART_UPDATED: 1}


@dataclass(frozen=True)
class Clock:
    at_ms: int
    rank: int
    event_id: str


class OrdersTable(Protocol):
    def apply_if_newer(self, order_id: str, part: str, clock: Clock, values: dict[str, Any]) -> Outcome:
        """Set `values` and the part's clock when `clock` is newer than the stored one for `part`."""
        ...

    def apply_all_if_newer(self, order_id: str, parts: dict[str, dict[str, Any]], clock: Clock) -> bool:
        """Set every part's values and clock in one write when `clock` is newer for each; False writes nothing."""
        ...


def _iso(event: OrderEvent, attribute: str) -> str | None:
    value = getattr(event.order, attribute)
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _part_values(part: str, event: OrderEvent) -> dict[str, Any] | None:
    order = event.order
    if part == STATUS:
        return None if order.status is None else {"status": order.status, "status_name": order.status_name}
    if order.cart is None:
        return None
    return {
        "cart": [line.model_dump(exclude_unset=True) for line in order.cart],
        "total": order.total,
        "currency": order.currency,
    }


def _order_values(event: OrderEvent) -> dict[str, Any]:
    values: dict[str, Any] = {"brand_id": event.brand_id, "branch_id": event.branch_id}
    if event.order.external_id is not None:
        values["external_id"] = event.order.external_id
    placed_at = _iso(event, "placed_at")
    if placed_at is not None:
        values["placed_at"] = placed_at
    return values


def project(event: OrderEvent, table: OrdersTable) -> Outcome:
    """Apply one order event to its projection item; STALE when every part it carries is already newer."""
    clock = Clock(
        at_ms=int(event.effective_time.timestamp() * 1000),
        rank=TIE_RANK.get(event.event_type, 0),
        event_id=event.event_id,
    )
    order_values = _order_values(event)
    parts: dict[str, dict[str, Any]] = {}
    for part in PARTS_BY_EVENT_TYPE.get(event.event_type, ()):
        values = _part_values(part, event)
        if values is not None:
            parts[part] = {**values, **order_values}
    last = {
        **order_values,
        "last_event_type": event.event_type,
        "updated_at": event.effective_time.isoformat().replace("+00:00", "Z"),
    }
    if table.apply_all_if_newer(event.order_id, {**parts, LAST: last}, clock):
        return Outcome.APPLIED  # the common case: one write
    outcomes = [table.apply_if_newer(event.order_id, part, clock, values) for part, values in parts.items()]
    if outcomes and all(outcome is Outcome.STALE for outcome in outcomes):
        return Outcome.STALE
    # Runs again after an earlier attempt applied a part and then failed, so the item always ends complete.
    last_outcome = table.apply_if_newer(event.order_id, LAST, clock, last)
    if not outcomes:
        return last_outcome
    return Outcome.APPLIED if Outcome.APPLIED in outcomes else Outcome.ALREADY_APPLIED
