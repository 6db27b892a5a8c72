"""Processor fixtures: a fresh processor per test against the `aws` moto fixture, and a scoped handler registry."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from klikit.observability import PROCESSOR_SERVICE
from processor import handler
from processor.registry import REGISTRY, Registry
from tests.integration.processor.helpers import log_records, metrics
from tools.local.resources import LocalResources


@pytest.fixture
def processor(aws: LocalResources, lambda_context: Any) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    """Invoke `processor.handler.lambda_handler` with an SQS event; dependencies are rebuilt for this test."""
    handler.app.cache_clear()
    yield lambda event: handler.lambda_handler(event, lambda_context)
    handler.app.cache_clear()


@pytest.fixture
def registry() -> Iterator[Registry]:
    """The registry users extend; handlers registered in a test are gone after it."""
    with REGISTRY.scope() as scoped:
        yield scoped


class Output:
    """What the processor emitted during the test: structured log lines and embedded metrics."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._printed = ""
        self.lines: list[str] = []

    def logs(self, message: str | None = None) -> list[dict[str, Any]]:
        return [r for r in log_records("\n".join(self.lines)) if message is None or r.get("message") == message]

    def metrics(self) -> dict[tuple[str, str], float]:
        self._printed += self._capsys.readouterr().out
        return metrics(self._printed)


class _Lines(logging.Handler):
    def __init__(self, lines: list[str], formatter: logging.Formatter | None) -> None:
        super().__init__()
        self._lines = lines
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self._lines.append(self.format(record))


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str]) -> Iterator[Output]:
    """The processor's log lines as Powertools formats them (its own handler keeps the stream it was born with)."""
    captured = Output(capsys)
    service_logger = logging.getLogger(PROCESSOR_SERVICE)
    formatter = next((h.formatter for h in service_logger.handlers if h.formatter is not None), None)
    lines = _Lines(captured.lines, formatter)
    service_logger.addHandler(lines)
    yield captured
    service_logger.removeHandler(lines)
