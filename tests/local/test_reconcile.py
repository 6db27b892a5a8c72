"""`./klikit reconcile` on the local stack: its fake klikit API over real HTTP, the real processor behind it.

Each test uses its own klikit branch and reconciles only that branch, so the session's other deliveries never
show up in its window.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from tests.local.conftest import LocalStack, eventually
from tools.fake_klikit import inject_fault, seed

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local")]

_branches = count(70_001)
_orders = count(7_700_000, 10)


def write(tmp_path: Path, name: str, branch: int, *orders: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"brand_id": 663, "branch_id": branch, "orders": list(orders)}))
    return path


def order(order_id: int, branch: int, status: int, updated_at: str) -> dict[str, Any]:
    return {
        "id": order_id,
        "brand_id": 663,
        "branch_id": branch,
        "status": status,
        "placed_at": "2026-06-25T09:14:11Z",
        "updated_at": updated_at,
        "currency": "AED",
        "total": "84.50",
        "customer": {"name": "Aisha Rahman", "phone": "+971501234567"},
        "cart": [{"item_id": 9001, "klikit_sku_id": "CBA001", "title": "Nasi Goreng", "price": 59.5, "quantity": 2}],
    }


def projected(stack: LocalStack, order_id: int) -> dict[str, Any] | None:
    """The projection once its write is visible whole (moto's server can show an item while it is being written)."""
    item = stack.order(order_id)
    return item if item and "status" in item else None


@pytest.fixture
def no_backoff_wait(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The CLI backs off for real; the test records the delays instead of sleeping them."""
    delays: list[float] = []
    monkeypatch.setattr("reconciler.partner_api.pause", delays.append)
    yield delays


def test_reconcile_heals_a_lost_created_order_and_a_lost_status_update_and_a_late_webhook_changes_nothing(
    stack: LocalStack, tmp_path: Path
) -> None:
    branch = next(_branches)
    delivered, lost = next(_orders), next(_orders)
    placed = write(tmp_path, "created.json", branch, order(delivered, branch, 2, "2026-06-25T09:14:11Z"))
    ready = write(tmp_path, "status.json", branch, order(delivered, branch, 5, "2026-06-25T09:21:04Z"))
    never_sent = write(tmp_path, "created-lost.json", branch, order(lost, branch, 2, "2026-06-25T09:15:00Z"))
    assert stack.cli("send", str(placed), "--event-id", f"evt-{delivered}").code == 0
    eventually(lambda: projected(stack, delivered), f"order {delivered} projected")
    assert stack.cli("send", str(ready), "--lost").code == 0
    lost_send = stack.cli("send", str(never_sent), "--lost")
    assert lost_send.code == 0 and "its delivery was lost" in lost_send.out

    dry = stack.cli("reconcile", "--since", "1h", "--branch", str(branch), "--dry-run")

    assert dry.code == 0, dry.err
    assert f"would heal order {delivered}" in dry.out and "klikit.order.status.updated" in dry.out
    assert f"would heal order {lost}" in dry.out and "klikit.order.created.v2" in dry.out
    assert "checked 2 orders on 1 page: 2 to heal, 0 up to date" in dry.out
    assert stack.order(lost) is None, "a dry run queues nothing"

    healed = stack.cli("reconcile", "--since", "1h", "--branch", str(branch))

    assert healed.code == 0, healed.err
    assert "checked 2 orders on 1 page: 2 healed, 0 up to date" in healed.out
    created = eventually(lambda: projected(stack, lost), f"order {lost} healed into the projection")
    assert created.get("status") == 2 and created["last_event_id"].startswith(f"reconcile:{lost}:")
    status = eventually(lambda: (o := projected(stack, delivered)) and o["status"] == 5 and o, "status 5 healed")
    assert status["status_event_id"] == f"reconcile:{delivered}:2026-06-25T09:21:04Z:status"
    again = stack.cli("reconcile", "--since", "1h", "--branch", str(branch))
    assert "checked 2 orders on 1 page: 0 healed, 2 up to date" in again.out

    # klikit's own retry of the READY webhook arrives after the heal: the projection does not move
    late = stack.cli("send", str(ready), "--event-id", f"evt-late-{delivered}")
    assert late.code == 0
    eventually(lambda: "processed" in stack.steps_for(f"evt-late-{delivered}"), "the late webhook processed")
    after = stack.order(delivered)
    assert after is not None and after["status_event_id"] == status["status_event_id"]


def test_a_window_of_several_pages_is_walked_whole_through_429s_and_5xx(
    stack: LocalStack, no_backoff_wait: list[float]
) -> None:
    branch = next(_branches)
    first = next(_orders)
    orders = [order(first + n, branch, 2, "2026-06-25T09:14:11Z") for n in range(130)]
    seed(stack.state.klikit_api_url, json.dumps({"brand_id": 663, "branch_id": branch, "orders": orders}).encode())
    inject_fault(stack.state.klikit_api_url, 429, times=2, page=2)
    inject_fault(stack.state.klikit_api_url, 503, times=1, page=1)

    walked = stack.cli("reconcile", "--since", "1h", "--branch", str(branch), "--dry-run")

    assert walked.code == 0, walked.err
    assert "checked 130 orders on 2 pages: 130 to heal, 0 up to date" in walked.out
    assert walked.out.count("klikit asked us to back off") == 3 and len(no_backoff_wait) == 3
    assert all(f"would heal order {first + n} " in walked.out for n in range(130))


def test_klikit_down_stops_with_the_command_that_resumes_at_the_failed_page(
    stack: LocalStack, no_backoff_wait: list[float]
) -> None:
    branch = next(_branches)
    first = next(_orders)
    orders = [order(first + n, branch, 2, "2026-06-25T09:14:11Z") for n in range(105)]
    seed(stack.state.klikit_api_url, json.dumps({"brand_id": 663, "branch_id": branch, "orders": orders}).encode())
    inject_fault(stack.state.klikit_api_url, 502, times=6, page=2)

    stopped = stack.cli("reconcile", "--since", "1h", "--branch", str(branch), "--dry-run")

    assert stopped.code == 1
    [line] = stopped.err.strip().splitlines()
    assert "stopped before page 2, nothing after it was skipped" in line
    resume = shlex.split(line.split("resume with ", 1)[1])
    assert resume[:2] == ["./klikit", "reconcile"] and "--page" in resume and "--dry-run" in resume
    resumed = stack.cli(*resume[1:])  # as printed (it names this stack's --port and --state-dir too)
    assert resumed.code == 0, resumed.err
    assert "checked 5 orders on 1 page: 5 to heal" in resumed.out


def test_wrong_partner_credentials_get_one_clear_line_naming_klikits_code_and_the_fix(stack: LocalStack) -> None:
    secrets = stack.client("secretsmanager")
    secret_id = stack.state.resources.partner_secret_id
    good = secrets.get_secret_value(SecretId=secret_id)["SecretString"]
    secrets.put_secret_value(SecretId=secret_id, SecretString=json.dumps({"partner_key": "k", "secret_key": "old"}))
    try:
        refused = stack.cli("reconcile", "--since", "1h", "--branch", str(next(_branches)))
        garbled = (
            secrets.put_secret_value(SecretId=secret_id, SecretString="not json"),
            stack.cli("reconcile", "--since", "1h", "--branch", str(next(_branches))),
        )[1]
    finally:
        secrets.put_secret_value(SecretId=secret_id, SecretString=good)

    assert refused.code == 1
    [line] = refused.err.strip().splitlines()
    assert "401 auth_invalid_credential" in line and "partner_key or secret_key is wrong" in line
    assert f"aws secretsmanager put-secret-value --secret-id {secret_id}" in line
    assert "old" not in line.split("Fix:")[0] and "Traceback" not in refused.err
    assert garbled.code == 1 and len(garbled.err.strip().splitlines()) == 1
    assert "is not JSON" in garbled.err
