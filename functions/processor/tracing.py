"""X-Ray in the processor when the stack turns tracing on: one subsegment per delivery, annotated with its event id.

Imported only when tracing is on: Powertools' Tracer loads the X-Ray SDK (~230 ms of cold start, see
docs/performance.md). The receiver never imports it: klikit waits on its cold start, and Lambda's own segment
(active tracing) covers it; its log lines carry `xray_trace_id` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from klikit.observability import PROCESSOR_SERVICE

Span = Callable[[str | None, str | None], AbstractContextManager[Any]]

SUBSEGMENT = "## klikit delivery"


def no_span(event_id: str | None, event_type: str | None) -> AbstractContextManager[Any]:
    return nullcontext()


def xray_span() -> Span:
    """A subsegment per delivery with `event_id` and `event_type` annotations (searchable: annotation.event_id)."""
    from aws_lambda_powertools import Tracer

    tracer = Tracer(service=PROCESSOR_SERVICE)

    @contextmanager
    def span(event_id: str | None, event_type: str | None) -> Any:
        with tracer.provider.in_subsegment(SUBSEGMENT) as subsegment:
            if event_id:
                subsegment.put_annotation("event_id", event_id)
            if event_type:
                subsegment.put_annotation("event_type", event_type)
            yield subsegment

    return span
