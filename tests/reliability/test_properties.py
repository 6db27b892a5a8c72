"""Property: whatever klikit sends, in any order, repeated, concurrently, replayed under new event ids or re-typed,
through injected faults and crashes, the pipeline ends with an order projection equal to a simple model (per order
and part, the values of the event with the newest updated_at) and with the handlers' effects as the contract says:

- a created.v2 handler ran exactly once per order, whatever copies of its created.v2 came;
- a status or cart handler ran at most once per signed order fact, never for an event older than one it already
  heard of for that order (its calls move forward in time), and exactly once for the newest update of the order;
- a captured body sent again under a new event id, or re-typed (a created.v2 body as a status or cart update),
  never ran a handler a second time.

A scenario is a list of steps: klikit sends an event (maybe with a receiver fault armed, maybe with a concurrent
repeat racing it), someone replays a captured event under a new event id (maybe re-typed), or the event source
mapping polls the queue (maybe with a processor fault armed). Then klikit retries every event it never got a 2xx
for, time passes, and the queue drains. `make soak` raises the example count.

Not in the property (see the fault matrix): a crash between a user handler's effect and the save of its record,
which runs that handler again (the documented at-least-once window).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from tests.conftest import api_event as klikit_event
from tests.reliability.conftest import SOAK_EXAMPLES, EffectCounter, Faults, Pipeline, key_under, record_stats, table_is
from tools.local.resources import LocalResources

CUSTOMER = {"name": "Aisha Rahman", "phone": "+971501234567"}  # personal data rides along; logs must not show it
BASE_MS = 1_782_378_000_000  # 2026-06-25T09:00:00Z


@dataclass(frozen=True)
class KlikitEvent:
    index: int
    event_type: str
    orders: tuple[int, ...]  # order indexes; a created.v2 may batch two
    minute: int  # updated_at = 09:00 + minute
    status: int
    cart: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Send:
    event: int
    fault: str | None
    concurrent_repeat: bool


@dataclass(frozen=True)
class Replay:
    event: int
    as_type: str | None  # a created.v2 body re-sent as another event type; None keeps the type


@dataclass(frozen=True)
class Poll:
    batch: int
    fault: str | None


RECEIVER_FAULTS = [
    "secret-error",
    "put-error",
    "send-error",
    "send-throttled",
    "update-error",
    "send-and-delete-error",
    "crash-before-send",
    "crash-after-send",
    "send-response-lost",
    "put-response-lost",
    "handler-bug",
]
PROCESSOR_FAULTS = [
    "archive-error",
    "effects-put-error",
    "orders-update-error",
    "orders-update-response-lost",
    "handler-exception",
    "crash-after-archive",
    "crash-after-projection-write",
]


def _arm_receiver(fault: str, faults: Faults, aws: LocalResources) -> None:
    idempotency = table_is(aws.idempotency_table)
    match fault:
        case "secret-error":
            faults.fail("secretsmanager.GetSecretValue")
        case "put-error":
            faults.fail("dynamodb.PutItem", when=idempotency)
        case "send-error":
            faults.fail("sqs.SendMessage")
        case "send-throttled":
            faults.throttle("sqs.SendMessage")
        case "update-error":
            faults.fail("dynamodb.UpdateItem", when=idempotency)
        case "send-and-delete-error":
            faults.fail("sqs.SendMessage")
            faults.fail("dynamodb.DeleteItem", when=idempotency)
        case "crash-before-send":
            faults.crash_before("sqs.SendMessage")
        case "crash-after-send":
            faults.crash_after("sqs.SendMessage")
        case "send-response-lost":
            faults.lose_response("sqs.SendMessage")
        case "put-response-lost":
            faults.lose_response("dynamodb.PutItem", when=idempotency)
        case "handler-bug":
            faults.fail("sqs.SendMessage", error=RuntimeError("bug"))


def _arm_processor(fault: str, faults: Faults, aws: LocalResources, counter: EffectCounter, events: list[str]) -> None:
    match fault:
        case "archive-error":
            faults.fail("s3.PutObject", when=key_under("archive/"))
        case "effects-put-error":
            faults.fail("dynamodb.PutItem", when=table_is(aws.effects_table))
        case "orders-update-error":
            faults.fail("dynamodb.UpdateItem", when=table_is(aws.orders_table))
        case "orders-update-response-lost":
            faults.lose_response("dynamodb.UpdateItem", when=table_is(aws.orders_table))
        case "handler-exception":
            counter.fail_next.update(events)
        case "crash-after-archive":
            faults.crash_after("s3.PutObject", when=key_under("archive/"))
        case "crash-after-projection-write":
            faults.crash_after("dynamodb.UpdateItem", when=table_is(aws.orders_table))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[KlikitEvent], list[Send | Replay | Poll]]:
    order_count = draw(st.integers(1, 3))
    count = draw(st.integers(1, 7))
    events: list[KlikitEvent] = []
    used: set[tuple[int, int]] = set()  # (order, minute): two events of one order never share a second
    for index in range(count):
        event_type = draw(st.sampled_from([ORDER_CREATED, ORDER_STATUS_UPDATED, ORDER_CART_UPDATED]))
        first = draw(st.integers(0, order_count - 1))
        orders: tuple[int, ...] = (first,)
        if event_type == ORDER_CREATED and order_count > 1 and draw(st.booleans()):
            orders = (first, (first + 1) % order_count)
        taken = {m for (o, m) in used if o in orders}
        minute = draw(st.sampled_from(sorted(set(range(31)) - taken)))
        used.update((o, minute) for o in orders)
        cart = tuple(
            draw(st.lists(st.tuples(st.sampled_from(["CBA001", "CBA014", "CBA020"]), st.integers(1, 3)), max_size=3))
        )
        events.append(KlikitEvent(index, event_type, orders, minute, draw(st.integers(1, 9)), cart))
    steps: list[Send | Replay | Poll] = []
    faulted_polls = 0
    for _ in range(draw(st.integers(count, count * 3))):
        kind = draw(st.integers(0, 7))
        if kind == 0:
            replayed = draw(st.integers(0, count - 1))
            retypes: list[str | None] = [None]
            if events[replayed].event_type == ORDER_CREATED:
                retypes += [ORDER_STATUS_UPDATED, ORDER_CART_UPDATED]
            steps.append(Replay(replayed, draw(st.sampled_from(retypes))))
        elif kind <= 2:
            # fewer faulted polls than the queue's maxReceiveCount (5): more would be the redrive's job
            fault = draw(st.none() | st.sampled_from(PROCESSOR_FAULTS)) if faulted_polls < 3 else None
            faulted_polls += fault is not None
            steps.append(Poll(draw(st.integers(1, 10)), fault))
        else:
            steps.append(
                Send(
                    draw(st.integers(0, count - 1)),
                    draw(st.none() | st.none() | st.sampled_from(RECEIVER_FAULTS)),
                    draw(st.integers(0, 5)) == 0,
                )
            )
    return events, steps


# --- the model --------------------------------------------------------------------------------------------


def _iso(minute: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((BASE_MS + minute * 60_000) / 1000))


def expected_projection(events: list[KlikitEvent], order: int) -> dict[str, Any]:
    """Per part, the values of the newest event carrying it."""
    mine = [e for e in events if order in e.orders]
    model: dict[str, Any] = {}
    status_events = [e for e in mine if e.event_type in (ORDER_CREATED, ORDER_STATUS_UPDATED)]
    cart_events = [e for e in mine if e.event_type in (ORDER_CREATED, ORDER_CART_UPDATED)]
    if status_events:
        model["status"] = max(status_events, key=lambda e: e.minute).status
    if cart_events:
        model["cart"] = [(sku, qty) for sku, qty in max(cart_events, key=lambda e: e.minute).cart]
    if mine:
        newest = max(mine, key=lambda e: e.minute)
        model["last"] = (newest.index, _iso(newest.minute))
    return model


PART_EVENT_TYPES = {"status": ORDER_STATUS_UPDATED, "cart": ORDER_CART_UPDATED}


def check_effects(events: list[KlikitEvent], calls: list[tuple[int, str, int]]) -> None:
    """The handler contract, from the counted handler's calls: (event index, event type it came under, order)."""
    by_index = {e.index: e for e in events}
    once: Counter[tuple[Any, ...]] = Counter()
    for index, event_type, order in calls:
        once[("created", order) if event_type == ORDER_CREATED else (index, order)] += 1
    assert max(once.values(), default=1) == 1, once  # no signed order fact ran a handler twice
    for order in {o for e in events for o in e.orders}:
        created = [c for c in calls if c[2] == order and c[1] == ORDER_CREATED]
        assert len(created) == int(any(e.event_type == ORDER_CREATED and order in e.orders for e in events))
        for part, event_type in PART_EVENT_TYPES.items():
            minutes = [by_index[c[0]].minute for c in calls if c[2] == order and c[1] == event_type]
            assert minutes == sorted(set(minutes)), (order, part, minutes)  # handlers never move backwards
            carriers = [e for e in events if order in e.orders and e.event_type in (ORDER_CREATED, event_type)]
            newest = max(carriers, key=lambda e: e.minute, default=None)
            if newest is not None and newest.event_type == event_type:
                assert minutes and minutes[-1] == newest.minute, (order, part, minutes)


# --- the run ----------------------------------------------------------------------------------------------


class Soak:
    def __init__(self, pipeline: Pipeline, faults: Faults, counter: EffectCounter, aws: LocalResources) -> None:
        self.pipeline = pipeline
        self.faults = faults
        self.counter = counter
        self.aws = aws
        self.examples = 0
        self.steps = 0
        self.deliveries = 0
        self.faults_armed = 0
        self.concurrent = 0
        self.replays = 0
        self._ids = itertools.count()

    def event_id(self, n: int, index: int) -> str:
        return f"ex{n}-evt{index}"

    @staticmethod
    def index_of(event_id: str) -> int:
        """The klikit event an event id belongs to: its own id, or a replay of it (`ex0-evt3-replay1`)."""
        return int(event_id.split("-evt", 1)[1].split("-", 1)[0])

    def order_id(self, n: int, order: int) -> str:
        return f"ex{n}-order{order}"

    def body(self, n: int, event: KlikitEvent) -> bytes:
        orders = [
            {
                "id": self.order_id(n, order),
                "status": event.status,
                "updated_at": _iso(event.minute),
                "currency": "AED",
                "total": "10.00",
                "customer": CUSTOMER,
                "cart": [{"klikit_sku_id": sku, "quantity": qty, "price": "5.00"} for sku, qty in event.cart],
            }
            for order in event.orders
        ]
        return json.dumps({"brand_id": 663, "branch_id": 1062, "orders": orders}).encode()

    def run(self, events: list[KlikitEvent], steps: list[Send | Replay | Poll]) -> None:
        n = next(self._ids)
        self.examples += 1
        self.faults.clear()
        self.counter.fail_next.clear()
        self.counter.effects.clear()
        self.counter.calls.clear()
        self.faults.put_keys.clear()
        requests = {
            e.index: klikit_event(self.body(n, e), event_id=self.event_id(n, e.index), event_type=e.event_type)
            for e in events
        }
        acknowledged: set[int] = set()
        for step in steps:
            self.steps += 1
            if isinstance(step, Send):
                self.send(requests[step.event], step, acknowledged)
            elif isinstance(step, Replay):
                self.replays += 1
                event = events[step.event]
                replay_id = f"{self.event_id(n, event.index)}-replay{next(self._ids)}"
                copy = klikit_event(
                    self.body(n, event), event_id=replay_id, event_type=step.as_type or event.event_type
                )
                self.pipeline.send_until_acknowledged(copy)
            else:
                if step.fault:
                    self.faults_armed += 1
                    ids = [self.event_id(n, e.index) for e in events]
                    _arm_processor(step.fault, self.faults, self.aws, self.counter, ids)
                self.pipeline.process_once(step.batch)
                self.faults.clear()
                self.counter.fail_next.clear()
        for e in events:  # klikit retries whatever it never got a 2xx for
            if e.index not in acknowledged:
                self.pipeline.send_until_acknowledged(requests[e.index])
        self.pipeline.let_in_flight_records_expire()
        self.pipeline.drain()
        self.check(n, events)

    def send(self, request: dict[str, Any], step: Send, acknowledged: set[int]) -> None:
        self.deliveries += 1
        if step.fault:
            self.faults_armed += 1
            _arm_receiver(step.fault, self.faults, self.aws)
        racing: list[tuple[int, Any]] = []
        if step.concurrent_repeat:
            self.concurrent += 1

            def repeat_while_in_flight() -> None:
                worker = threading.Thread(target=lambda: racing.append(self.pipeline.send(request)))
                worker.start()
                worker.join(30)

            self.faults.hold("sqs.SendMessage", repeat_while_in_flight)
        status, body = self.pipeline.send(request)
        self.faults.clear()
        event_index = int(request["headers"]["x-klikit-event-id"].rsplit("evt", 1)[1])
        for reply_status, _ in [(status, body), *racing]:
            assert reply_status in {200, 409, 500, 502, 503}, (reply_status, body)
            if 200 <= reply_status < 300:
                acknowledged.add(event_index)
        if racing and status == 200:
            assert racing[0][0] == 409  # the repeat raced an in-flight first attempt

    def check(self, n: int, events: list[KlikitEvent]) -> None:
        assert self.pipeline.queue_depth() == 0
        assert self.pipeline.dlq() == []
        order_numbers = {self.order_id(n, o): o for e in events for o in e.orders}
        calls = [(self.index_of(e), t, order_numbers[o]) for e, t, o in self.counter.calls]
        check_effects(events, calls)
        for order in sorted(set(order_numbers.values())):
            model = expected_projection(events, order)
            item = self.pipeline.order(self.order_id(n, order))
            assert item is not None
            if "status" in model:
                assert item["status"] == model["status"], (order, item, model)
            if "cart" in model:
                assert [(line["klikit_sku_id"], line["quantity"]) for line in item["cart"]] == model["cart"]
            index, updated_at = model["last"]
            assert self.index_of(item["last_event_id"]) == index  # the newest event, or a copy of it
            assert item["updated_at"] == updated_at


def test_property_any_interleaving_of_deliveries_faults_and_retries_ends_exactly_once_and_as_modelled(
    pipeline: Pipeline, faults: Faults, counter: EffectCounter, aws: LocalResources
) -> None:
    soak = Soak(pipeline, faults, counter, aws)
    started = time.perf_counter()

    @settings(settings.get_profile("reliability"), max_examples=SOAK_EXAMPLES)
    @given(scenario=scenarios())
    def run(scenario: tuple[list[KlikitEvent], list[Send | Replay | Poll]]) -> None:
        soak.run(*scenario)

    run()
    record_stats(
        f"properties-{SOAK_EXAMPLES}",  # by size: make test keeps make soak and make fuzz figures
        {
            "examples": soak.examples,
            "max_examples": SOAK_EXAMPLES,
            "steps": soak.steps,
            "deliveries": soak.deliveries,
            "faults_armed": soak.faults_armed,
            "concurrent_repeats": soak.concurrent,
            "replays_under_new_ids": soak.replays,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    assert soak.examples >= min(SOAK_EXAMPLES, 10)
