"""The reconciler against klikit's fake partner API (real HTTP on loopback) and in-process moto."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from infra.lambda_shapes import LambdaContext
from klikit import delivery as contract
from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from processor import handler as processor_handler
from reconciler.adapters import CHECKPOINT_KEY
from reconciler.app import ScheduledReconciler
from tests.conftest import StructuredLogs, load_fixture
from tests.integration.processor.helpers import delivery, metrics, sqs_event, sqs_record
from tests.integration.reconciler.conftest import NOW, Sleeps, attributes, body_of, drain, order
from tools.fake_klikit import FakeKlikit
from tools.local.resources import LocalResources

Build = Callable[..., ScheduledReconciler]
RUN_TIME_LEFT_MS = 600_000


def run(build: Build, **kwargs: Any) -> dict[str, Any]:
    return build(**kwargs).run(lambda: RUN_TIME_LEFT_MS)


def project(body: bytes | str, event_type: str, context: Any, event_id: str = "evt-webhook") -> None:
    """What the stack did with a webhook klikit did deliver: the processor applied it."""
    processor_handler.app.cache_clear()
    result = processor_handler.lambda_handler(
        sqs_event(sqs_record(delivery(body, event_type, event_id=event_id))), context
    )
    assert result["batchItemFailures"] == []


def in_window(klikit: FakeKlikit, *orders: dict[str, Any]) -> None:
    for index, listed in enumerate(orders):
        klikit.add(listed, created_at=NOW - timedelta(hours=1) + timedelta(seconds=index))


def test_an_order_klikit_never_delivered_is_queued_as_created_v2_marked_as_reconciled(
    scheduled: Build, klikit: FakeKlikit, aws: LocalResources
) -> None:
    in_window(klikit, order(7821))

    summary = run(scheduled)

    [message] = drain(aws.queue_url)
    sent = attributes(message)
    assert sent[contract.EVENT_TYPE] == ORDER_CREATED
    assert sent[contract.SOURCE] == contract.RECONCILER
    assert sent[contract.EVENT_ID] == "reconcile:7821:2026-06-25T09:14:11Z:created"
    assert sent[contract.BODY_SHA256] == hashlib.sha256(message["Body"].encode()).hexdigest()
    envelope = body_of(message)
    assert (envelope["brand_id"], envelope["branch_id"], [o["id"] for o in envelope["orders"]]) == (663, 1062, [7821])
    assert envelope["orders"][0]["cart"][0]["vat"] == 2.83  # klikit's numbers, unchanged
    queued = contract.queued_delivery(message)
    assert queued.source == contract.RECONCILER
    assert summary | {"since": None, "until": None} == {
        "since": None,
        "until": None,
        "branch_id": None,
        "start_page": 1,
        "pages": 1,
        "checked": 1,
        "healed": 1,
        "events": 1,
        "skipped": 0,
        "complete": True,
        "next_page": None,
    }


def test_a_lost_status_update_is_queued_as_status_updated_only(
    scheduled: Build, klikit: FakeKlikit, aws: LocalResources, lambda_context: LambdaContext
) -> None:
    project("order_created_v2_batch.json", ORDER_CREATED, lambda_context)  # projection: 7821 status 2 at 09:14:11
    created = json.loads(load_fixture("order_created_v2_batch.json"))["orders"][0]
    in_window(klikit, {**created, "status": 5, "updated_at": "2026-06-25T09:40:00Z"})  # the READY webhook was lost

    run(scheduled)

    [message] = drain(aws.queue_url)
    assert attributes(message)[contract.EVENT_TYPE] == ORDER_STATUS_UPDATED
    assert attributes(message)[contract.EVENT_ID] == "reconcile:7821:2026-06-25T09:40:00Z:status"
    assert body_of(message)["orders"][0]["status"] == 5


def test_a_lost_cart_update_is_queued_as_cart_updated_and_both_parts_when_both_are_behind(
    scheduled: Build, klikit: FakeKlikit, aws: LocalResources, lambda_context: LambdaContext
) -> None:
    project(
        json.dumps({"brand_id": 663, "branch_id": 1062, "orders": [order(1)]}).encode(), ORDER_CREATED, lambda_context
    )
    project(
        json.dumps({"brand_id": 663, "branch_id": 1062, "orders": [order(2)]}).encode(),
        ORDER_CREATED,
        lambda_context,
        "e2",
    )
    later = "2026-06-25T10:00:00Z"
    new_cart = [{"item_id": 9002, "klikit_sku_id": "TEA01", "price": 25, "quantity": 1}]
    in_window(
        klikit,
        order(1, updated_at=later, cart=new_cart, total="25.00"),
        order(2, updated_at=later, cart=new_cart, total="25.00", status=5),
    )

    run(scheduled)

    types = sorted((body_of(m)["orders"][0]["id"], attributes(m)[contract.EVENT_TYPE]) for m in drain(aws.queue_url))
    assert types == [(1, ORDER_CART_UPDATED), (2, ORDER_CART_UPDATED), (2, ORDER_STATUS_UPDATED)]


@pytest.mark.parametrize(
    "listed",
    [
        pytest.param({}, id="same content"),
        pytest.param({"updated_at": "2026-06-25T10:00:00Z"}, id="same content, later updated_at"),
        pytest.param({"status": 2, "updated_at": "2026-06-25T09:00:00Z"}, id="klikit's copy is older"),
    ],
)
def test_an_order_the_projection_has_or_is_ahead_on_queues_nothing(
    scheduled: Build, klikit: FakeKlikit, aws: LocalResources, lambda_context: LambdaContext, listed: dict[str, Any]
) -> None:
    project("order_status_updated.json", ORDER_STATUS_UPDATED, lambda_context)
    project("order_cart_updated.json", ORDER_CART_UPDATED, lambda_context, "evt-cart")
    projected = json.loads(load_fixture("order_cart_updated.json"))["orders"][0]
    status = json.loads(load_fixture("order_status_updated.json"))["orders"][0]["status"]
    in_window(klikit, {**projected, "status": status, **listed})

    summary = run(scheduled)

    assert drain(aws.queue_url) == []
    assert (summary["checked"], summary["healed"]) == (1, 0)


def test_a_window_spanning_several_pages_is_walked_whole_each_order_once(
    scheduled: Build, klikit: FakeKlikit, aws: LocalResources
) -> None:
    in_window(klikit, *(order(10_000 + n) for n in range(23)))
    klikit.add(order(1), created_at=NOW - timedelta(days=2))  # outside the 24 h look-back

    summary = run(scheduled)

    ids = [body_of(message)["orders"][0]["id"] for message in drain(aws.queue_url)]
    assert sorted(ids) == [10_000 + n for n in range(23)]
    assert klikit.list_pages_served() == [1, 2, 3]
    assert (summary["pages"], summary["checked"], summary["healed"], summary["complete"]) == (3, 23, 23, True)


def test_429s_and_5xx_on_some_pages_lose_no_page(
    scheduled: Build, klikit: FakeKlikit, aws: LocalResources, sleeps: Sleeps
) -> None:
    in_window(klikit, *(order(20_000 + n) for n in range(25)))
    klikit.fail(429, times=2, page=2, retry_after=3)
    klikit.fail(503, times=1, page=3)
    klikit.fail(502, times=1, page=1)

    summary = run(scheduled)

    ids = [body_of(message)["orders"][0]["id"] for message in drain(aws.queue_url)]
    assert sorted(ids) == [20_000 + n for n in range(25)]
    assert klikit.list_pages_served() == [1, 2, 3]
    assert len(sleeps) == 4 and all(seconds >= 3 for seconds in sleeps[1:3])  # Retry-After is honoured
    assert summary["complete"] is True


def test_klikit_down_stops_at_the_failing_page_and_the_next_run_resumes_there(
    scheduled: Build, klikit: FakeKlikit, aws: LocalResources
) -> None:
    in_window(klikit, *(order(30_000 + n) for n in range(25)))
    klikit.fail(503, times=6, page=2)  # every attempt of one run

    first = run(scheduled)
    second = run(scheduled, now=NOW + timedelta(minutes=15))

    assert (first["complete"], first["next_page"], first["pages"]) == (False, 2, 1)
    assert (second["start_page"], second["pages"], second["complete"]) == (2, 2, True)
    assert second["since"] == first["since"] and second["until"] == first["until"]  # the same window, resumed
    assert klikit.list_pages_served() == [1, 2, 3]
    ids = [body_of(message)["orders"][0]["id"] for message in drain(aws.queue_url)]
    assert sorted(ids) == [30_000 + n for n in range(25)]
    item = boto3.client("dynamodb").get_item(TableName=aws.idempotency_table, Key={"id": {"S": CHECKPOINT_KEY}})
    assert "Item" not in item  # a finished window leaves no checkpoint


def test_wrong_credentials_queue_nothing_and_log_one_line_naming_klikits_code_and_the_fix(
    reconciler_lambda: Callable[[Any], dict[str, Any]],
    klikit: FakeKlikit,
    aws: LocalResources,
    lambda_context: LambdaContext,
    structured_logs: StructuredLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    in_window(klikit, order(7821))
    klikit.rotate_secret("the-new-secret-klikit-issued")  # the stored one stopped working at once

    lambda_context.remaining_ms = RUN_TIME_LEFT_MS
    summary = reconciler_lambda(lambda_context)

    assert drain(aws.queue_url) == []
    assert summary["complete"] is False and summary["next_page"] == 1
    [stopped] = [r for r in structured_logs.records() if r["message"] == "reconciliation stopped"]
    assert stopped["level"] == "ERROR"
    assert "401 auth_invalid_credential" in stopped["reason"]
    assert f"aws secretsmanager put-secret-value --secret-id {aws.partner_secret_id}" in stopped["reason"]
    assert "local-partner-secret" not in structured_logs.text  # the secret_key is never logged
    assert metrics(capsys.readouterr().out)[("ReconcileAuthFailures", "")] == 1


def test_the_scheduled_lambda_logs_each_heal_without_customer_data_and_counts_it(
    reconciler_lambda: Callable[[Any], dict[str, Any]],
    klikit: FakeKlikit,
    aws: LocalResources,
    lambda_context: LambdaContext,
    structured_logs: StructuredLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    klikit.add(order(7821), created_at=datetime.now(UTC) - timedelta(minutes=1))  # the Lambda runs on the real clock

    lambda_context.remaining_ms = RUN_TIME_LEFT_MS
    reconciler_lambda(lambda_context)

    [healed] = [r for r in structured_logs.records() if r["message"] == "order healed from klikit's orders API"]
    assert (healed["order_id"], healed["event_type"], healed["behind"]) == (
        "7821",
        ORDER_CREATED,
        "order missing from the projection",
    )
    assert "Aisha" not in structured_logs.text and "+97150" not in structured_logs.text
    emitted = metrics(capsys.readouterr().out)
    assert (emitted[("OrdersHealed", "")], emitted[("OrdersChecked", "")]) == (1, 1)
    assert len(drain(aws.queue_url)) == 1


def test_a_run_near_the_lambda_deadline_pauses_and_leaves_a_checkpoint(
    scheduled: Build, klikit: FakeKlikit, aws: LocalResources
) -> None:
    in_window(klikit, *(order(40_000 + n) for n in range(15)))
    left = iter([RUN_TIME_LEFT_MS, 1_000])  # one page, then the deadline is near

    paused = scheduled().run(lambda: next(left))
    resumed = run(scheduled)

    assert (paused["pages"], paused["next_page"], paused["complete"]) == (1, 2, False)
    assert (resumed["start_page"], resumed["complete"]) == (2, True)
    assert len(drain(aws.queue_url)) == 15
