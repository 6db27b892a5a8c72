"""`./klikit smoke` against the real local stack: every step passes, the test order is gone, no user handler ran."""

from __future__ import annotations

import re

import pytest

from tests.local.conftest import LocalStack, eventually

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local")]

STEPS = ["secret", "delivery", "duplicate", "forged", "projection", "cleanup"]


def processor_log(stack: LocalStack, event_id: str) -> str:
    return stack.cli("logs", "--function", "processor", "--filter", event_id).out


def test_smoke_passes_every_step_with_its_latency_and_removes_its_order(stack: LocalStack) -> None:
    result = stack.cli("smoke")

    assert result.code == 0, result.out + result.err
    passed = [line.split()[1] for line in result.out.splitlines() if line.startswith("  ok ")]
    assert passed == STEPS
    assert all(re.search(r"\d ms$", line) for line in result.out.splitlines() if line.startswith("  ok "))
    assert "  ok      duplicate   200 duplicate-ignored" in result.out
    assert "  ok      forged      401 invalid signature" in result.out
    order_id = re.search(r"order (\d+)", result.out)
    assert order_id is not None
    assert stack.order(order_id.group(1)) is None, "the test order is removed"


def test_smoke_delivery_reaches_the_projection_but_not_the_users_kitchen_ticket_handler(stack: LocalStack) -> None:
    smoke = stack.cli("smoke")
    found = re.search(r"evt (smoke-\S+)", smoke.out)
    assert smoke.code == 0 and found is not None, smoke.out + smoke.err
    smoke_event = found.group(1)
    sent = stack.cli("send", "created", "--event-id", f"not-smoke-{smoke_event[6:14]}", "--order-id", "870001")
    assert sent.code == 0, sent.out

    # integrations.py's example handler logs "kitchen ticket" for every created order it handles
    eventually(lambda: "kitchen ticket" in processor_log(stack, f"not-smoke-{smoke_event[6:14]}"), "the ticket")
    smoke_log = processor_log(stack, smoke_event)
    assert "delivery processed" in smoke_log
    assert "kitchen ticket" not in smoke_log
