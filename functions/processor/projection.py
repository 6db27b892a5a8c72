"""The built-in order projection: one DynamoDB item per order, correct under reordering, duplicates and replays,
and the judge of what is news for the status and cart handlers.

The item holds independent parts, each with its own clock, so a late event of one kind never undoes a newer
event of another kind:

| part     | written by                 | attributes                                           |
|----------|----------------------------|------------------------------------------------------|
| `status` | created.v2, status.updated | status, status_name                                  |
| `cart`   | created.v2, cart.updated   | cart (replaced whole, never merged), total, currency |
| `last`   | every applied event        | last_event_id, last_event_type, updated_at           |

A part's clock is (`<part>_at_ms`, `<part>_rank`): the event's effective time (klikit's `updated_at`, else the
receive time) in epoch milliseconds, then a rank that puts an update after a created.v2 of the same second
(created.v2 = 0, status.updated / cart.updated = 1), when the update changes the part. With the clock, each part
keeps `<part>_digests`, the digests of the part contents applied at that clock (processor.idempotency), and
`<part>_news`, which order bodies (digest and event type) were taken as news, with the event id that brought each.

The tie rule (klikit's `updated_at` has second precision): an event is news for a part when its time is newer
than the stored one, or equal (and its rank not lower) and its part content is not among the digests applied at
that time (then it is added; a newer clock resets the set). So same-second updates applied in order end with the
later one, while a retry, a replay under a new id, a re-typed copy, or the same state from another source with
different bytes is never news. Every write is one conditional UpdateItem (no read-then-write); the in-order common
case is one write for every part the event carries, and a refused write hands back the stored item to decide from.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from klikit.formats import iso_z
from processor.idempotency import digest
from processor.models import Order, OrderEvent

STATUS = "status"
CART = "cart"
LAST = "last"

PARTS_BY_EVENT_TYPE: dict[str, tuple[str, ...]] = {
    ORDER_CREATED: (STATUS, CART),
    ORDER_STATUS_UPDATED: (STATUS,),
    ORDER_CART_UPDATED: (CART,),
}
TIE_RANK: dict[str, int] = {ORDER_CREATED: 0, ORDER_STATUS_UPDATED: 1, ORDER_CART_UPDATED: 1}
_TYPE_CODES = {ORDER_CREATED: "c", ORDER_STATUS_UPDATED: "s", ORDER_CART_UPDATED: "k"}
_BODY_DIGEST_CHARS = 32  # of the order digest, in a `<part>_news` entry: 128 bits tell bodies apart
MAX_ATTEMPTS = 4  # each refused write is a concurrent change (or the optimistic first guess): decide again


class Verdict(StrEnum):
    NEWS = "news"  # applied now
    REPEAT = "repeat"  # this body, under this event type, was applied as news before: a retry or a replay
    ALREADY_APPLIED = "already_applied"  # the same part content came before in another body or under another type
    STALE = "stale"  # the stored part is newer


class Mode(StrEnum):
    NEWER = "newer"  # the event's clock is newer than the stored one (or there is none): the part starts over
    SAME_CLOCK = "same_clock"  # same clock, content not applied yet: the part's content is added


@dataclass(frozen=True)
class Clock:
    at_ms: int
    rank: int
    event_id: str


@dataclass(frozen=True)
class PartWrite:
    part: str
    values: dict[str, Any]
    mode: Mode
    content_digest: str
    news_entry: str


class OrdersTable(Protocol):
    def update(
        self, order_id: str, writes: list[PartWrite], last: dict[str, Any] | None, clock: Clock
    ) -> dict[str, Any] | None:
        """Every write (and `last`, when given) in one conditional UpdateItem, each under its mode's condition.

        None when applied; else nothing was written and the stored item is returned (plain Python values)."""
        ...


@dataclass(frozen=True)
class Projection:
    """What the projection made of one order event."""

    verdicts: dict[str, Verdict]  # per part the event carries
    earlier_event_ids: frozenset[str]  # other event ids that brought this very order body before (a replay)

    def is_news_for(self, part: str) -> bool:
        """True when handlers of this part should hear of the event: news now, or news when it first came."""
        return self.verdicts.get(part, Verdict.NEWS) in (Verdict.NEWS, Verdict.REPEAT)

    @property
    def stale(self) -> bool:
        return bool(self.verdicts) and all(verdict is Verdict.STALE for verdict in self.verdicts.values())


def _iso(event: OrderEvent, attribute: str) -> str | None:
    value = getattr(event.order, attribute)
    return iso_z(value, "auto") if value is not None else None


def cart_values(order: Order) -> dict[str, Any] | None:
    """The cart part as the projection stores it (the reconciler compares klikit's copy in the same form)."""
    if order.cart is None:
        return None
    return {
        "cart": [line.model_dump(exclude_unset=True) for line in order.cart],
        "total": order.total,
        "currency": order.currency,
    }


def _part_values(part: str, event: OrderEvent) -> dict[str, Any] | None:
    order = event.order
    if part == STATUS:
        return None if order.status is None else {"status": order.status, "status_name": order.status_name}
    return cart_values(order)


def _order_values(event: OrderEvent) -> dict[str, Any]:
    values: dict[str, Any] = {"brand_id": event.brand_id, "branch_id": event.branch_id}
    if event.order.external_id is not None:
        values["external_id"] = event.order.external_id
    placed_at = _iso(event, "placed_at")
    if placed_at is not None:
        values["placed_at"] = placed_at
    return values


def news_entry(order_digest: str, event_type: str, event_id: str) -> str:
    """`<part>_news` entry: which body, under which event type, and the event id that brought it."""
    return f"{order_digest[:_BODY_DIGEST_CHARS]}|{_TYPE_CODES.get(event_type, '?')}|{event_id}"


def _body_and_type(entry: str) -> list[str]:
    return entry.split("|", 2)[:2]  # the event id, last, may itself hold "|"


def _clock_of(item: dict[str, Any], part: str) -> tuple[int, int] | None:
    at = item.get(f"{part}_at_ms")
    return None if at is None else (int(at), int(item.get(f"{part}_rank", 0)))


def _judge(item: dict[str, Any], write: PartWrite, clock: Clock) -> Verdict | Mode:
    """What a part write should be, given the stored item a refused write handed back."""
    stored = _clock_of(item, write.part)
    if stored is None or stored[0] < clock.at_ms:
        return Mode.NEWER
    if stored > (clock.at_ms, clock.rank):
        return Verdict.STALE
    # The same second: news only when this part content was not applied at it (the rank never makes a copy news).
    digests = item.get(f"{write.part}_digests")
    if digests is None:  # written before digests were kept: only its event id tells a duplicate
        if item.get(f"{write.part}_event_id") == clock.event_id:
            return Verdict.REPEAT
    elif write.content_digest in digests:
        news = item.get(f"{write.part}_news") or set()
        taken = any(_body_and_type(entry) == _body_and_type(write.news_entry) for entry in news)
        return Verdict.REPEAT if taken else Verdict.ALREADY_APPLIED
    return Mode.NEWER if stored[1] < clock.rank else Mode.SAME_CLOCK


def _earlier_event_ids(item: dict[str, Any], parts: list[str], entry: str, event_id: str) -> frozenset[str]:
    body = entry.split("|", 1)[0]
    found: set[str] = set()
    for part in parts:
        for stored in item.get(f"{part}_news") or set():
            stored_body, _type, stored_event_id = stored.split("|", 2)
            if stored_body == body and stored_event_id != event_id:
                found.add(stored_event_id)
    return frozenset(found)


def project(event: OrderEvent, order_digest: str, table: OrdersTable) -> Projection:
    """Apply one order event to its projection item and say, per part, whether it was news."""
    clock = Clock(
        at_ms=int(event.effective_time.timestamp() * 1000),
        rank=TIE_RANK.get(event.event_type, 0),
        event_id=event.event_id,
    )
    entry = news_entry(order_digest, event.event_type, event.event_id)
    order_values = _order_values(event)
    candidates: list[PartWrite] = []
    for part in PARTS_BY_EVENT_TYPE.get(event.event_type, ()):
        values = _part_values(part, event)
        if values is not None:
            candidates.append(PartWrite(part, {**values, **order_values}, Mode.NEWER, digest(values), entry))
    last = {
        **order_values,
        "last_event_id": event.event_id,
        "last_event_type": event.event_type,
        "updated_at": iso_z(event.effective_time, "auto"),
    }
    verdicts: dict[str, Verdict] = {}
    stored: dict[str, Any] | None = None  # unknown until a write is refused: the first guess is "all newer"
    earlier: frozenset[str] = frozenset()
    for _attempt in range(MAX_ATTEMPTS):
        writes: list[PartWrite] = []
        for candidate in candidates:
            judged = Mode.NEWER if stored is None else _judge(stored, candidate, clock)
            if isinstance(judged, Verdict):
                verdicts[candidate.part] = judged
            else:
                writes.append(PartWrite(candidate.part, candidate.values, judged, candidate.content_digest, entry))
        last_clock = None if stored is None else _clock_of(stored, LAST)
        write_last = (bool(writes) or not candidates) and (
            last_clock is None or last_clock <= (clock.at_ms, clock.rank)
        )
        if stored is not None:
            earlier = _earlier_event_ids(stored, [c.part for c in candidates], entry, event.event_id)
        if not writes and not write_last:
            return Projection(verdicts, earlier)
        refused = table.update(event.order_id, writes, last if write_last else None, clock)
        if refused is None:
            verdicts.update((write.part, Verdict.NEWS) for write in writes)
            return Projection(verdicts, earlier)
        stored = refused
    raise ProjectionContention(f"the order item changed under {MAX_ATTEMPTS} writes in a row")


class ProjectionContention(Exception):
    """Concurrent writers kept changing the order item; the record fails and SQS retries it."""
