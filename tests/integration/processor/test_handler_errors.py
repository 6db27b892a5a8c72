"""Why a handler failed: a HandlerError's message as written, any other exception's message without the order's
customer data, always with the handler's name (logs, `klikit events`, the local console)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from klikit.events import ORDER_CREATED
from processor.failures import REDACTED, safe_message
from processor.models import OrderEvent
from processor.registry import HandlerError, Registry
from tests.integration.processor.conftest import Output
from tests.integration.processor.helpers import delivery, failed_ids, sqs_event, sqs_record
from tools.events import LogRecord, step_of
from tools.local.console import processor_steps

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
PERSONAL_DATA = ("Aisha", "Rahman", "+971501234567", "971501234567", "aisha.rahman@example.com", "Villa 12", "Jumeirah")


def test_a_handler_error_is_logged_with_its_message_and_the_handlers_name(
    processor: Invoke, registry: Registry, output: Output
) -> None:
    def pos(event: OrderEvent) -> None:
        raise HandlerError(f"422 unknown SKU CBA999 on order {event.order.id}")

    registry.on(ORDER_CREATED, name="pos.create-ticket")(pos)
    record = sqs_record(delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-sku"))

    response = processor(sqs_event(record))

    assert failed_ids(response) == [record["messageId"]]
    failures = output.logs("handler failed")
    assert [(log["handler"], log["error_type"], log["error_message"]) for log in failures] == [
        ("pos.create-ticket", "HandlerError", "422 unknown SKU CBA999 on order 7821"),
        ("pos.create-ticket", "HandlerError", "422 unknown SKU CBA999 on order 7822"),
    ]
    assert all("in pos" in log["frames"] for log in failures)  # the traceback's frames: where it was raised


def test_any_other_exception_keeps_its_message_without_the_customers_data(
    processor: Invoke, registry: Registry, output: Output
) -> None:
    def careless(event: OrderEvent) -> None:
        phone = str((event.order.customer or {}).get("phone", "")).lstrip("+")
        raise ValueError(f"POS refused the order for {event.order.customer} (call {phone})")

    registry.on(ORDER_CREATED, name="pos.careless")(careless)
    processor(sqs_event(sqs_record(delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-pii"))))

    [first, _] = output.logs("handler failed")
    assert first["error_message"].startswith("POS refused the order for {'name': '[customer data]'")
    assert "(call [customer data])" in first["error_message"]
    everything = "\n".join(output.lines)
    assert not [datum for datum in PERSONAL_DATA if datum in everything]


def test_scrubbing_takes_the_customers_words_and_any_email_and_keeps_the_rest() -> None:
    raw_order = {"id": 7821, "customer": {"name": "Aisha Rahman", "phone": "+971 50 123 4567"}}
    error = RuntimeError("rahman's ticket 7821 failed; mail ops@pos.example, phone 971501234567")

    assert safe_message(error, raw_order) == (f"{REDACTED}'s ticket 7821 failed; mail {REDACTED}, phone {REDACTED}")
    assert safe_message(RuntimeError("x" * 1000), None).endswith("...")
    assert len(safe_message(RuntimeError("x" * 1000), None)) == 300


def test_events_and_the_local_console_show_the_handler_and_its_message() -> None:
    log = {
        "level": "ERROR",
        "message": "handler failed",
        "message_id": "m-1",
        "event_id": "evt-sku",
        "order_id": "7821",
        "handler": "pos.create-ticket",
        "error_type": "HandlerError",
        "error_message": "422 unknown SKU CBA999",
    }
    from datetime import UTC, datetime

    step = step_of(LogRecord(datetime.now(UTC), "processor", log))
    record = {"messageId": "m-1", "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}}
    [(word, _, _, detail)] = processor_steps([record], {"m-1"}, [log], 5, None)

    assert step is not None
    assert (step.word, step.detail) == (
        "failed",
        "pos.create-ticket (order 7821): HandlerError: 422 unknown SKU CBA999",
    )
    assert (word, detail) == ("retrying", "attempt 1/5: pos.create-ticket: HandlerError: 422 unknown SKU CBA999")
