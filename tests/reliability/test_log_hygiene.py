"""Log hygiene: every reliability test already fails on a leaked secret, signature or customer datum (the autouse
`log_sink` fixture checks each line both functions write). These tests prove the check bites, and walk every
outcome of both functions, the error paths with their tracebacks included, with the fixtures' personal data.
"""

from __future__ import annotations

from klikit.events import ORDER_CREATED
from processor.models import OrderEvent
from processor.registry import Registry
from tests.conftest import OLD_SECRET, SECRET, load_fixture
from tests.conftest import api_event as klikit_event
from tests.reliability.conftest import PERSONAL_DATA, EffectCounter, Faults, LogSink, Pipeline, leaks

CREATED = load_fixture("order_created_v2_batch.json")


def test_the_leak_check_recognises_secrets_signatures_and_personal_data() -> None:
    signature = "3" * 64
    for leaked in (SECRET, OLD_SECRET, signature, "Aisha Rahman", "+971501234567", "aisha.rahman@example.com"):
        assert leaks(f'{{"message":"x","detail":"{leaked}"}}'), leaked
    assert leaks('{"message":"delivery accepted","correlation_id":"evt-1","message_id":"a1b2"}') == []
    assert {"Omar Haddad", "Villa 12", "Jumeirah 1"} <= PERSONAL_DATA


def test_every_outcome_of_both_functions_logs_no_secret_signature_or_personal_data(
    pipeline: Pipeline, faults: Faults, counter: EffectCounter, log_sink: LogSink
) -> None:
    good = klikit_event(CREATED, event_id="evt-hygiene")
    pipeline.send(good)  # received
    pipeline.send(good)  # duplicate
    pipeline.send(klikit_event(CREATED, secret="forged-secret"))  # 401
    pipeline.send(klikit_event(CREATED, headers={"x-klikit-event-id": "evt-x"}))  # 400
    faults.fail("sqs.SendMessage")
    pipeline.send(klikit_event(CREATED))  # 503
    faults.fail("sqs.SendMessage", error=RuntimeError("a bug"))
    pipeline.send(klikit_event(CREATED))  # 500, logged with its traceback
    faults.crash_after("sqs.SendMessage")
    pipeline.send(klikit_event(CREATED))  # crash
    faults.clear()
    pipeline.send(klikit_event(b"signed, not json", base64_encoded=True))  # poison for the processor
    counter.fail_next.add("evt-hygiene")  # a failing handler: its traceback is logged
    pipeline.drain()

    outcomes = {record.get("outcome") for record in log_sink.records()}
    messages = {record.get("message") for record in log_sink.records()}
    assert {"received", "duplicate", "rejected", "unavailable"} <= outcomes
    assert {
        "receiver failed unexpectedly",
        "handler failed",
        "poison delivery quarantined in the DLQ",
        "delivery processed",
    } <= messages
    assert log_sink.count > 0 and log_sink.leaked == []


def test_a_handler_error_that_quotes_customer_data_does_not_put_it_in_the_logs(
    pipeline: Pipeline, scoped_registry: Registry, log_sink: LogSink
) -> None:
    def careless(event: OrderEvent) -> None:
        raise ValueError(f"POS refused the order for {event.order.customer}")

    scoped_registry.on(ORDER_CREATED, name="reliability.careless")(careless)
    pipeline.send(klikit_event(CREATED, event_id="evt-careless"))
    pipeline.process_once()

    found, log_sink.leaked = list(log_sink.leaked), []  # judged here, not by the fixture's teardown
    assert found == []
