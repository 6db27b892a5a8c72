"""With tracing on, each delivery gets an X-Ray subsegment annotated with its event id (searchable in X-Ray as
`annotation.event_id = "..."`); with tracing off, the X-Ray SDK is never imported."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from klikit.events import ORDER_STATUS_UPDATED
from klikit.settings import ProcessorSettings
from processor import handler
from processor.app import ProcessorApp
from processor.tracing import SUBSEGMENT
from tests.integration.processor.helpers import delivery, sqs_event, sqs_record
from tools import FUNCTIONS_DIR


class FakeSpans:
    def __init__(self) -> None:
        self.opened: list[tuple[str | None, str | None]] = []

    @contextmanager
    def __call__(self, event_id: str | None, event_type: str | None) -> Iterator[None]:
        self.opened.append((event_id, event_type))
        yield


def test_every_delivery_of_a_batch_gets_its_own_span(
    processor: Callable[[dict[str, Any]], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spans = FakeSpans()
    original = handler.build_app

    def with_spans(*args: Any, **kwargs: Any) -> ProcessorApp:
        app = original(*args, **kwargs)
        app._span = spans
        return app

    monkeypatch.setattr(handler, "build_app", with_spans)
    processor(
        sqs_event(
            sqs_record(delivery("order_status_updated.json", ORDER_STATUS_UPDATED, event_id="evt-t1")),
            sqs_record(delivery("order_status_updated.json", ORDER_STATUS_UPDATED, event_id="evt-t2")),
        )
    )

    assert spans.opened == [("evt-t1", ORDER_STATUS_UPDATED), ("evt-t2", ORDER_STATUS_UPDATED)]


LAMBDA_PROBE = """
import json
from processor.tracing import xray_span
with xray_span()("evt-traced", "klikit.order.status.updated") as subsegment:
    print(json.dumps({"name": subsegment.name, "annotations": subsegment.annotations}))
"""


def test_in_lambda_the_xray_span_annotates_the_event_id_and_type() -> None:
    """Run as Lambda runs it (its own process: the X-Ray SDK patches libraries and picks its context at import)."""
    lambda_environment = {
        "PATH": "",
        "LAMBDA_TASK_ROOT": str(FUNCTIONS_DIR),
        "AWS_LAMBDA_FUNCTION_NAME": "klikit-processor",
        "_X_AMZN_TRACE_ID": "Root=1-6760e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",  # nothing listens: subsegments are dropped, never sent anywhere
    }
    result = subprocess.run(
        [sys.executable, "-c", LAMBDA_PROBE],
        cwd=FUNCTIONS_DIR,
        capture_output=True,
        text=True,
        check=True,
        env=lambda_environment,
    )

    assert json.loads(result.stdout.splitlines()[-1]) == {
        "name": SUBSEGMENT,
        "annotations": {"event_id": "evt-traced", "event_type": ORDER_STATUS_UPDATED},
    }


def test_tracing_is_read_from_the_environment_the_stack_sets() -> None:
    base = {"ORDERS_TABLE_NAME": "o", "EFFECTS_TABLE_NAME": "e", "PAYLOAD_BUCKET_NAME": "b", "DLQ_URL": "q"}

    assert ProcessorSettings.from_env({**base, "TRACING_ENABLED": "true"}).tracing is True
    assert ProcessorSettings.from_env(base).tracing is False


def test_without_tracing_the_processor_never_imports_the_xray_sdk() -> None:
    probe = "import sys, processor.handler; print('aws_xray_sdk' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=FUNCTIONS_DIR, capture_output=True, text=True, check=True, env={"PATH": ""}
    )

    assert result.stdout.strip() == "False"
