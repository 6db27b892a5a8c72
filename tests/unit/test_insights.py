"""The Logs Insights queries: the text CloudWatch runs and the per-line test the CLI applies are the same search."""

from __future__ import annotations

from infra import insights
from klikit import observability as names


def test_a_delivery_query_filters_both_functions_step_lines_by_event_id() -> None:
    query = insights.steps(['evt "1"'], "klikit.order.created.v2")

    assert query.text.splitlines() == [
        "fields @timestamp, @log, @message",
        "| filter (message in [" + ", ".join(f'"{m}"' for m in insights.STEP_MESSAGES) + "] or ispresent(step))",
        '| filter (correlation_id in ["evt \\"1\\""] or event_id in ["evt \\"1\\""])',
        '| filter event_type = "klikit.order.created.v2"',
        "| sort @timestamp asc",
        "| limit 10000",
    ]
    receiver_line = {
        "message": names.LOG_ACCEPTED,
        "correlation_id": 'evt "1"',
        "event_type": "klikit.order.created.v2",
    }
    processor_line = {"message": names.LOG_PROCESSED, "event_id": 'evt "1"', "event_type": "klikit.order.created.v2"}
    assert query.matches(receiver_line) and query.matches(processor_line)
    assert not query.matches({**receiver_line, "correlation_id": "evt-2"})
    assert not query.matches({**receiver_line, "message": "kitchen ticket"})
    projection_failed = {"level": "ERROR", "message": "x", "step": "projection", "event_id": 'evt "1"'}
    assert query.matches({**projection_failed, "event_type": "klikit.order.created.v2"})


def test_an_order_search_starts_from_processor_lines_that_mention_it() -> None:
    query = insights.mentioning("7821")

    assert '| filter @message like "7821"' in query.text
    assert query.matches({"message": names.LOG_PROCESSED, "order_ids": ["7821"]})
    assert not query.matches({"message": names.LOG_ACCEPTED, "correlation_id": "7821"})


def test_the_stack_saves_every_search_with_its_placeholder() -> None:
    saved = insights.saved_queries()

    assert set(saved) == {
        "delivery-path-by-event-id",
        "deliveries-of-an-order",
        "problems-newest-first",
        "rejections-by-reason",
        "last-accepted-delivery",
        "steps-per-hour",
    }
    assert insights.PLACEHOLDER_EVENT_ID in saved["delivery-path-by-event-id"]
    assert insights.PLACEHOLDER_ORDER_ID in saved["deliveries-of-an-order"]
    assert "stats count(*) as deliveries" in saved["rejections-by-reason"]
    assert saved["last-accepted-delivery"] == insights.last_accepted().text
