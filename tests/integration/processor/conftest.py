"""Processor fixtures: a fresh processor per test against the `aws` moto fixture, and a scoped handler registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from processor import handler
from processor.registry import REGISTRY, Registry
from tools.local.resources import LocalResources


@pytest.fixture
def processor(aws: LocalResources, lambda_context: Any) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    """Invoke `processor.handler.lambda_handler` with an SQS event; dependencies are rebuilt for this test."""
    handler.reset()
    yield lambda event: handler.lambda_handler(event, lambda_context)
    handler.reset()


@pytest.fixture
def registry() -> Iterator[Registry]:
    """The registry users extend; handlers registered in a test are gone after it."""
    with REGISTRY.scope() as scoped:
        yield scoped
