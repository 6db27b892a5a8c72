"""Reconciliation: walk a window of klikit's orders page by page and heal every order the projection lacks.

For each order klikit lists, compare it with what the order projection holds (see processor.projection):

| projection holds                                | the reconciler queues                                   |
|-------------------------------------------------|---------------------------------------------------------|
| no item for the order                           | `klikit.order.created.v2` (the created handlers run once) |
| another status, and klikit's `updated_at` is not older than the status part's clock | `klikit.order.status.updated` |
| another cart/total/currency, same rule with the cart part's clock | `klikit.order.cart.updated`                  |
| the same content, or newer content              | nothing                                                 |

Each heal is a klikit-shaped delivery `{brand_id, branch_id, orders: [order]}` with a deterministic event id
(`reconcile:<order id>:<updated_at>:<part>`), so running twice queues the same event, which the processor treats
like a retried webhook. Pages are walked in order with a fixed `until`, so the set of orders in the window cannot
shift under the walk; `on_page` records the next page after each page is fully handled (resume point).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

from pydantic import ValidationError

from klikit.delivery import Delivery
from klikit.errors import PartnerApiError
from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from klikit.formats import iso_z, json_default
from processor.models import Order, loads
from processor.projection import cart_values
from reconciler.partner_api import MAX_WINDOW_DAYS, Page

PAGE_SIZE = 100
CREATED, STATUS, CART = "created", "status", "cart"
EVENT_TYPE_FOR = {CREATED: ORDER_CREATED, STATUS: ORDER_STATUS_UPDATED, CART: ORDER_CART_UPDATED}


class WindowError(ValueError):
    """The window is empty, reversed or longer than klikit allows; the message says how to fix it."""


class Window(NamedTuple):
    since: datetime  # inclusive, over klikit's created_at
    until: datetime  # exclusive
    branch_id: str | None = None

    @classmethod
    def of(cls, since: datetime, until: datetime, branch_id: str | None = None) -> Window:
        # whole seconds: the bounds klikit is asked for are exactly the window reported and checkpointed
        since, until = (moment.astimezone(UTC).replace(microsecond=0) for moment in (since, until))
        if until <= since:
            raise WindowError(f"the window is empty: --until {until:%Y-%m-%dT%H:%M:%SZ} is not after --since")
        if until - since > timedelta(days=MAX_WINDOW_DAYS):
            raise WindowError(f"klikit lists at most {MAX_WINDOW_DAYS} days at a time: split the window")
        return cls(since, until, branch_id or None)


class Stored(NamedTuple):
    """What the projection holds for one order, in the projection's own terms."""

    status: Any
    status_at_ms: int | None
    cart: Mapping[str, Any] | None  # {cart, total, currency} when the cart part was ever written
    cart_at_ms: int | None


class Projection(Protocol):
    def stored(self, order_ids: list[str]) -> dict[str, Stored]:
        """The projection of each order that has one (strongly consistent)."""
        ...


class HealQueue(Protocol):
    def put(self, heal: Heal) -> None: ...


@dataclass(frozen=True)
class Heal:
    order_id: str
    part: str  # created | status | cart
    behind: str  # what was behind, for the log line: status codes at most, never order content
    delivery: Delivery

    @property
    def event_type(self) -> str:
        return self.delivery.event_type

    def summary(self) -> dict[str, str]:
        return {"order_id": self.order_id, "event_type": self.event_type, "behind": self.behind}


@dataclass
class Report:
    window: Window
    start_page: int = 1
    pages: int = 0
    checked: int = 0
    heals: list[Heal] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # order ids klikit listed that cannot be made into a delivery
    next_page: int | None = None  # where to resume; None when the window was walked to its end
    failure: PartnerApiError | None = None
    dry_run: bool = False

    @property
    def complete(self) -> bool:
        return self.next_page is None and self.failure is None


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _behind(ours: Any, theirs: Any, our_clock: int | None, their_clock: int | None) -> bool:
    """klikit's part differs and is not older than ours (an older copy in the list never undoes a newer webhook)."""
    if ours == theirs:
        return False
    return our_clock is None or their_clock is None or their_clock >= our_clock


def _envelope_ids(raw: Mapping[str, Any], order: Order) -> tuple[Any, Any] | None:
    brand = order.brand_id
    if brand is None:
        brands = raw.get("brands")
        if isinstance(brands, list) and brands and isinstance(brands[0], dict):
            brand = brands[0].get("id")
    return None if brand is None or order.branch_id is None else (brand, order.branch_id)


def plan(raw: Mapping[str, Any], order: Order, stored: Stored | None, received_at: str) -> list[Heal]:
    """The events that bring the projection up to klikit's copy of one order (none when it is up to date)."""
    ids = _envelope_ids(raw, order)
    if ids is None:
        return []
    clock = _ms(order.updated_at)
    parts: list[tuple[str, str]] = []
    if stored is None:
        parts.append((CREATED, "order missing from the projection"))
    else:
        if order.status is not None and _behind(stored.status, order.status, stored.status_at_ms, clock):
            parts.append((STATUS, f"status behind: {stored.status} in the projection, {order.status} at klikit"))
        cart = cart_values(order)
        if cart is not None and _behind(stored.cart, cart, stored.cart_at_ms, clock):
            parts.append((CART, "cart behind" if stored.cart is not None else "cart missing from the projection"))
    body = json.dumps(
        {"brand_id": ids[0], "branch_id": ids[1], "orders": [raw]},
        default=json_default,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    stamp = iso_z(order.updated_at, "seconds") if order.updated_at else "no-updated-at"
    return [
        Heal(
            order.id,
            part,
            behind,
            Delivery.of(f"reconcile:{order.id}:{stamp}:{part}", EVENT_TYPE_FOR[part], body, received_at),
        )
        for part, behind in parts
    ]


def parse_page(page: Page) -> tuple[list[tuple[dict[str, Any], Order]], list[str]]:
    """(order as klikit sent it with Decimal numbers, typed order) for each listed order, and the ids skipped."""
    parsed, skipped = [], []
    for listed in page.orders:
        # round-trip through klikit's JSON rules so numbers are Decimal, exactly as the processor reads a webhook
        raw = loads(json.dumps(listed).encode("utf-8"))
        try:
            parsed.append((raw, Order.model_validate(raw)))
        except ValidationError:
            skipped.append(str(listed.get("id", "?"))[:64])
    return parsed, skipped


class Lister(Protocol):
    def list_orders(
        self, since: datetime, until: datetime, page: int, size: int, branch_id: str | None = None
    ) -> Page: ...


def reconcile(
    window: Window,
    api: Lister,
    projection: Projection,
    queue: HealQueue | None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    start_page: int = 1,
    page_size: int = PAGE_SIZE,
    on_page: Callable[[int], None] | None = None,
    on_heal: Callable[[Heal], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Report:
    """Walk the window from `start_page`; queue each heal unless `queue` is None (a dry run).

    A partner API failure ends the walk with `failure` set and `next_page` at the page that failed: nothing after
    it is skipped, a later run resumes there.
    """
    report = Report(window, start_page=start_page, dry_run=queue is None)
    page_number = start_page
    while True:
        if should_stop():
            report.next_page = page_number
            return report
        try:
            page = api.list_orders(window.since, window.until, page_number, page_size, window.branch_id)
        except PartnerApiError as failure:
            report.failure, report.next_page = failure, page_number
            return report
        report.pages += 1
        parsed, skipped = parse_page(page)
        report.skipped.extend(skipped)
        stored = projection.stored([order.id for _, order in parsed]) if parsed else {}
        received_at = iso_z(now())
        for raw, order in parsed:
            report.checked += 1
            heals = plan(raw, order, stored.get(order.id), received_at)
            if not heals and _envelope_ids(raw, order) is None:
                report.skipped.append(order.id)
            for heal in heals:
                if queue is not None:
                    queue.put(heal)
                report.heals.append(heal)
                if on_heal is not None:
                    on_heal(heal)
        last = len(page.orders) < page_size or (page.total is not None and page_number * page_size >= page.total)
        if on_page is not None:
            on_page(page_number + 1)
        if last:
            return report
        page_number += 1
