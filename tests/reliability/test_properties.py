"""Property: whatever klikit sends, in any order, repeated, concurrently, through injected faults and crashes,
the pipeline ends with every signed event's effects done exactly once and an order projection equal to a simple
model (per order and part, the values of the event with the newest (updated_at, rank) clock).

A scenario is a list of steps: klikit sends an event (maybe with a receiver fault armed, maybe with a concurrent
repeat racing it), or the event source mapping polls the queue (maybe with a processor fault armed). Then klikit
retries every event it never got a 2xx for, time passes, and the queue drains. `make soak` raises the example count.

Not in the property (see the fault matrix): a crash between a user handler's effect and the save of its record,
which runs that handler again (the documented at-least-once window).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from processor.projection import TIE_RANK
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
def scenarios(draw: st.DrawFn) -> tuple[list[KlikitEvent], list[Send | Poll]]:
    order_count = draw(st.integers(1, 3))
    count = draw(st.integers(1, 7))
    events: list[KlikitEvent] = []
    used: set[tuple[int, int, int]] = set()  # (order, rank, minute): two events of one rank never tie
    for index in range(count):
        event_type = draw(st.sampled_from([ORDER_CREATED, ORDER_STATUS_UPDATED, ORDER_CART_UPDATED]))
        first = draw(st.integers(0, order_count - 1))
        orders: tuple[int, ...] = (first,)
        if event_type == ORDER_CREATED and order_count > 1 and draw(st.booleans()):
            orders = (first, (first + 1) % order_count)
        rank = TIE_RANK[event_type]
        taken = {m for (o, r, m) in used if o in orders and r == rank}
        minute = draw(st.sampled_from(sorted(set(range(31)) - taken)))
        used.update((o, rank, minute) for o in orders)
        cart = tuple(
            draw(st.lists(st.tuples(st.sampled_from(["CBA001", "CBA014", "CBA020"]), st.integers(1, 3)), max_size=3))
        )
        events.append(KlikitEvent(index, event_type, orders, minute, draw(st.integers(1, 9)), cart))
    steps: list[Send | Poll] = []
    faulted_polls = 0
    for _ in range(draw(st.integers(count, count * 3))):
        if draw(st.integers(0, 3)) == 0:
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
    """Per part, the values of the newest event carrying it, by (minute, rank)."""
    mine = [e for e in events if order in e.orders]
    model: dict[str, Any] = {}
    clock: Callable[[KlikitEvent], tuple[int, int]] = lambda e: (e.minute, TIE_RANK[e.event_type])  # noqa: E731
    status_events = [e for e in mine if e.event_type in (ORDER_CREATED, ORDER_STATUS_UPDATED)]
    cart_events = [e for e in mine if e.event_type in (ORDER_CREATED, ORDER_CART_UPDATED)]
    if status_events:
        model["status"] = max(status_events, key=clock).status
    if cart_events:
        model["cart"] = [(sku, qty) for sku, qty in max(cart_events, key=clock).cart]
    if mine:
        newest = max(mine, key=clock)
        model["last"] = (newest.index, _iso(newest.minute))
    return model


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
        self._ids = itertools.count()

    def event_id(self, n: int, index: int) -> str:
        return f"ex{n}-evt{index}"

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

    def run(self, events: list[KlikitEvent], steps: list[Send | Poll]) -> None:
        n = next(self._ids)
        self.examples += 1
        self.faults.clear()
        self.counter.fail_next.clear()
        self.counter.effects.clear()
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
        expected_effects = {(self.event_id(n, e.index), self.order_id(n, o)): 1 for e in events for o in e.orders}
        assert dict(self.counter.effects) == expected_effects  # every signed event, every order, exactly once
        for order in sorted({o for e in events for o in e.orders}):
            model = expected_projection(events, order)
            item = self.pipeline.order(self.order_id(n, order))
            assert item is not None
            if "status" in model:
                assert item["status"] == model["status"], (order, item, model)
            if "cart" in model:
                assert [(line["klikit_sku_id"], line["quantity"]) for line in item["cart"]] == model["cart"]
            index, updated_at = model["last"]
            assert item["last_event_id"] == self.event_id(n, index)
            assert item["updated_at"] == updated_at


def test_property_any_interleaving_of_deliveries_faults_and_retries_ends_exactly_once_and_as_modelled(
    pipeline: Pipeline, faults: Faults, counter: EffectCounter, aws: LocalResources
) -> None:
    soak = Soak(pipeline, faults, counter, aws)
    started = time.perf_counter()

    @settings(settings.get_profile("reliability"), max_examples=SOAK_EXAMPLES)
    @given(scenario=scenarios())
    def run(scenario: tuple[list[KlikitEvent], list[Send | Poll]]) -> None:
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
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    assert soak.examples >= min(SOAK_EXAMPLES, 10)
