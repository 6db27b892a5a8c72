"""The event types klikit sends in `x-klikit-event-type` (docs/klikit.md, Event types)."""

from __future__ import annotations

ORDER_CREATED = "klikit.order.created.v2"
ORDER_STATUS_UPDATED = "klikit.order.status.updated"
ORDER_CART_UPDATED = "klikit.order.cart.updated"

KNOWN_EVENT_TYPES: frozenset[str] = frozenset({ORDER_CREATED, ORDER_STATUS_UPDATED, ORDER_CART_UPDATED})

# Top-level field of a `./klikit smoke` delivery, inside the signed body: the processor runs only the built-in order
# projection for it (never your handlers, never the EventBridge fan-out), so a smoke test never reaches a POS.
SMOKE_MARKER = "klikit_webhooks_smoke"
