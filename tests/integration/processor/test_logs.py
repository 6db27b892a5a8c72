"""Logs carry the event id and order id and never the customer's personal data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from processor.models import OrderEvent
from processor.registry import Registry
from tests.integration.processor.conftest import Output
from tests.integration.processor.helpers import delivery, sqs_event, sqs_record

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
PERSONAL_DATA = ("Aisha", "Rahman", "Omar", "+97150", "example.com", "Villa 12", "Jumeirah")


def test_no_log_line_or_metric_carries_customer_personal_data(
    processor: Invoke, registry: Registry, output: Output
) -> None:
    def failing_pos(event: OrderEvent) -> None:
        raise ConnectionError("POS refused the order")

    registry.on(ORDER_STATUS_UPDATED, name="test.failing-pos")(failing_pos)
    bad_field = b'{"brand_id":663,"branch_id":1062,"orders":[{"id":1,"status":"Aisha Rahman +971501234567"}]}'
    processor(
        sqs_event(
            sqs_record(delivery("order_created_v2_batch.json", ORDER_CREATED, event_id="evt-1")),
            sqs_record(delivery("order_status_updated.json", ORDER_STATUS_UPDATED, event_id="evt-2")),
            sqs_record(delivery("order_cart_updated.json", ORDER_CART_UPDATED, event_id="evt-3")),
            sqs_record(delivery(bad_field, ORDER_CREATED, event_id="evt-4")),
        )
    )

    logs = output.logs()
    everything = "\n".join(output.lines) + repr(output.metrics())
    assert logs and not [word for word in PERSONAL_DATA if word in everything]
    order_logs = [log for log in logs if "order_id" in log]
    assert order_logs and all(log.get("event_id", "").startswith("evt-") for log in order_logs)
    assert {log["order_id"] for log in output.logs("handler failed")} == {"7821"}


@pytest.mark.parametrize(("sampled", "logged_trace"), [("0", None), ("1", "1-5759e988-bd862e3fe1be46a994272793")])
def test_the_processed_line_leaves_out_the_code_location_and_an_unsampled_trace_id(
    processor: Invoke, output: Output, monkeypatch: pytest.MonkeyPatch, sampled: str, logged_trace: str | None
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled={sampled}")

    processor(sqs_event(sqs_record(delivery("order_cart_updated.json", ORDER_CART_UPDATED, event_id="evt-lean"))))

    [processed] = output.logs("delivery processed")
    assert (processed["event_id"], processed.get("xray_trace_id")) == ("evt-lean", logged_trace)
    assert "message_id" in processed and "function_request_id" in processed  # `klikit events` joins on them
    assert not {"location", "function_name", "function_arn", "function_memory_size"} & set(processed)
