"""The event types klikit sends in `x-klikit-event-type` (FACTS.md section 3)."""

from __future__ import annotations

ORDER_CREATED = "klikit.order.created.v2"
ORDER_STATUS_UPDATED = "klikit.order.status.updated"
ORDER_CART_UPDATED = "klikit.order.cart.updated"

KNOWN_EVENT_TYPES: frozenset[str] = frozenset({ORDER_CREATED, ORDER_STATUS_UPDATED, ORDER_CART_UPDATED})
