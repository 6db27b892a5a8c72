"""Reconciler fixtures: klikit's fake partner API over real loopback HTTP, in-process moto, the real adapters."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from reconciler import handler as reconciler_handler
from reconciler.app import ScheduledReconciler, metrics
from reconciler.wiring import build_reconciler
from tools.fake_klikit import FakeKlikit
from tools.local.resources import LocalResources

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef

NOW = datetime(2026, 6, 25, 12, 0, tzinfo=UTC)
PAGE_SIZE = 10  # small pages keep multi-page windows small (moto's SendMessage slows as the queue grows)


@pytest.fixture(autouse=True)
def fresh_metrics() -> Iterator[None]:
    """The reconciler's Metrics is module-global (as in Lambda): runs outside the handler must not leak into others."""
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture
def klikit() -> Iterator[FakeKlikit]:
    with FakeKlikit() as fake:
        yield fake


@pytest.fixture
def reconciler_env(aws: LocalResources, klikit: FakeKlikit, monkeypatch: pytest.MonkeyPatch) -> LocalResources:
    for name, value in aws.reconciler_env(klikit.url).items():
        monkeypatch.setenv(name, value)
    return aws


class Sleeps(list[float]):
    """Records each backoff instead of sleeping (how long is the client's business, not the test's)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def scheduled(reconciler_env: LocalResources, sleeps: Sleeps) -> Callable[..., ScheduledReconciler]:
    """The scheduled reconciler as the handler builds it, with the clock at NOW and backoff recorded, not slept."""

    def build(now: datetime = NOW) -> ScheduledReconciler:
        return build_reconciler(now=lambda: now, sleep=sleeps, page_size=PAGE_SIZE)

    return build


@pytest.fixture
def reconciler_lambda(reconciler_env: LocalResources) -> Iterator[Callable[[Any], dict[str, Any]]]:
    """The real handler; the context must leave it time (a run stops with 90 s left)."""
    reconciler_handler.app.cache_clear()
    yield lambda context: reconciler_handler.lambda_handler({"source": "aws.scheduler"}, context)
    reconciler_handler.app.cache_clear()


def drain(queue_url: str) -> list[MessageTypeDef]:
    """Every message on a queue (received once, all attributes), deleted."""
    sqs = boto3.client("sqs")
    messages: list[MessageTypeDef] = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=300
    ).get("Messages", []):
        messages.extend(batch)
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return messages


def attributes(message: MessageTypeDef) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()}


def order(order_id: int, *, status: int = 2, updated_at: str = "2026-06-25T09:14:11Z", **extra: Any) -> dict[str, Any]:
    """A klikit order record as the list endpoint returns it."""
    return {
        "id": order_id,
        "external_id": f"GF-{order_id}",
        "brand_id": 663,
        "branch_id": 1062,
        "status": status,
        "placed_at": "2026-06-25T09:14:11Z",
        "updated_at": updated_at,
        "currency": "AED",
        "total": "84.50",
        "customer": {"name": "Aisha Rahman", "phone": "+971501234567"},
        "cart": [{"item_id": 9001, "klikit_sku_id": "CBA001", "price": 59.5, "quantity": 2, "vat": 2.83}],
        **extra,
    }


def body_of(message: MessageTypeDef) -> Any:
    return json.loads(message["Body"])
