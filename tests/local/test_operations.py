"""`events`, `doctor` and `doctor signature` against the running local stack, over real HTTP and its log files."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from klikit.signature import sign
from tests.local.conftest import LocalStack, eventually
from tests.local.test_local_stack import new_event_id, new_order_id, processed
from tools import sender
from tools.local.state import LOCAL_DEFAULT_SECRET

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local")]


def path_of(stack: LocalStack, event_id: str) -> list[str]:
    result = stack.cli("events", "--event-id", event_id, "--json")
    return list(result.json()[0]["path"]) if result.code == 0 else []


def test_events_show_a_deliverys_whole_path(stack: LocalStack) -> None:
    event_id, order_id = new_event_id("path"), new_order_id()
    stack.cli("send", "created", "--event-id", event_id, "--order-id", str(order_id))
    eventually(lambda: processed(stack, event_id), "the processor to take it")
    stack.cli("send", "created", "--event-id", event_id, "--order-id", str(order_id))

    eventually(lambda: path_of(stack, event_id) == ["received", "processed", "duplicate"], "three steps")
    table = stack.cli("events", "--event-id", event_id)

    assert table.code == 0, table.err
    assert "received -> processed -> duplicate" in table.out
    assert re.search(r"receiver   received      [\d,]+ bytes, queued\n", table.out)
    assert "receiver   duplicate     already received: acknowledged, not queued again" in table.out
    assert table.out.splitlines()[-1].startswith("(1 delivery between ")


def test_events_say_why_a_delivery_was_rejected(stack: LocalStack) -> None:
    forged, headless = new_event_id("forged"), new_event_id("headless")
    stack.cli("send", "status", "--event-id", forged, "--tamper")
    stack.cli("send", "cart", "--event-id", headless, "--without-header", "x-klikit-event-type")

    result = stack.cli("events", "--outcome", "rejected", "--since", "10m", "--json")

    assert result.code == 0, result.err
    by_id = {delivery["event_id"]: delivery for delivery in result.json()}
    assert by_id[forged]["steps"][0]["detail"].startswith("401 signature matches none of 1 active secret(s)")
    assert by_id[forged]["event_type"] == "klikit.order.status.updated"
    assert by_id[headless]["steps"][0]["detail"] == "400 missing klikit headers: x-klikit-event-type"


def test_events_filter_by_type(stack: LocalStack) -> None:
    cart = new_event_id("cart-type")
    stack.cli("send", "cart", "--event-id", cart)
    eventually(lambda: processed(stack, cart), "the processor to take it")

    result = stack.cli("events", "--type", "cart", "--json")

    assert result.code == 0, result.err
    types = {delivery["event_type"] for delivery in result.json()}
    assert types == {"klikit.order.cart.updated"}
    assert cart in {delivery["event_id"] for delivery in result.json()}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--event-id", "evt-that-never-came"], "no delivery with event id 'evt-that-never-came'"),
        (["--until", "noon"], "--until: not a time: 'noon'"),
        (["--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"], "empty window"),
        (["--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_events_bad_input_gets_one_line_and_exit_1(stack: LocalStack, args: list[str], message: str) -> None:
    result = stack.cli("events", *args)

    assert result.code == 1
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_doctor_checks_the_local_stack(stack: LocalStack) -> None:
    event_id = new_event_id("doctor")
    stack.cli("send", "created", "--event-id", event_id, "--order-id", str(new_order_id()))

    result = stack.cli("doctor")

    lines = result.out.splitlines()
    assert lines[0] == f"klikit doctor: the local stack on port {stack.port}"
    assert "  ok    secret         1 active secret (the local default), no stray whitespace" in lines
    assert "  info  alarms         the local stack has no CloudWatch alarms (a deployed one: --stack NAME)" in lines
    [last] = [line for line in lines if "last accepted" in line]
    assert last.startswith("  ok    last accepted") and f"evt {event_id} (created.v2)" in last
    assert any(line.startswith("  ") and "dead letters" in line for line in lines)
    assert any(line.startswith("  ok    queue          ") and "waiting" in line for line in lines)
    assert result.code == (1 if any(line.startswith("  FAIL") for line in lines) else 0)


def test_doctor_signature_uses_the_stacks_secret_and_names_the_mistake(stack: LocalStack, tmp_path: Path) -> None:
    body = sender.sample_body("created")
    signature = sign(LOCAL_DEFAULT_SECRET, body)
    raw, reserialized = tmp_path / "raw.json", tmp_path / "pretty.json"
    raw.write_bytes(body)
    reserialized.write_text(json.dumps(json.loads(body), indent=2), encoding="utf-8")

    good = stack.cli("doctor", "signature", "--body", str(raw), "--signature", signature)
    bad = stack.cli("doctor", "signature", "--body", str(reserialized), "--signature", signature)

    assert good.code == 0
    assert "MATCH: the signature matches the raw bytes of the file" in good.out
    assert f"against the active secret(s) of the local stack on port {stack.port}" in good.out
    assert bad.code == 1
    assert "the body was re-serialized after signing" in bad.out


def test_a_replay_shows_as_replayed_in_the_path(stack: LocalStack) -> None:
    event_id = new_event_id("replayed")
    stack.cli("send", "status", "--event-id", event_id)
    eventually(lambda: processed(stack, event_id), "the original delivery to be processed")

    stack.cli("replay", event_id)

    eventually(lambda: path_of(stack, event_id)[-1:] == ["replayed"], "the replay step")
    assert path_of(stack, event_id)[0] == "received"
    [delivery] = stack.cli("events", "--event-id", event_id, "--json").json()
    assert delivery["steps"][-1]["detail"] == (
        "sent again by klikit replay: already received: acknowledged, not queued again"
    )
    assert event_id in {d["event_id"] for d in stack.cli("events", "--outcome", "replayed", "--json").json()}


def test_events_find_deliveries_by_order_and_branch(stack: LocalStack) -> None:
    event_id, order_id = new_event_id("by-order"), new_order_id()
    stack.cli("send", "created", "--event-id", event_id, "--order-id", str(order_id))
    eventually(lambda: processed(stack, event_id), "the processor to take it")

    by_order = stack.cli("events", "--order", str(order_id + 1), "--json")
    by_branch = stack.cli("events", "--branch", "1062", "--json")

    assert by_order.code == 0, by_order.err
    [delivery] = by_order.json()
    assert (delivery["event_id"], delivery["path"]) == (event_id, ["received", "processed"])
    assert (delivery["order_ids"], delivery["branch_id"]) == ([str(order_id), str(order_id + 1)], "1062")
    assert event_id in {d["event_id"] for d in by_branch.json()}
    assert stack.cli("events", "--branch", "999999").code == 1


def test_a_failing_handler_is_named_with_its_error_in_events_and_the_console(stack: LocalStack) -> None:
    event_id, order_id = new_event_id("failing"), new_order_id()
    dynamodb, table = stack.client("dynamodb"), stack.state.resources.orders_table
    dynamodb.delete_table(TableName=table)  # the built-in order projection cannot write
    try:
        stack.cli("send", "status", "--event-id", event_id, "--order-id", str(order_id))
        eventually(lambda: "retrying" in stack.steps_for(event_id), "the first failed attempt")
    finally:
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    [console] = [line for line in stack.output().splitlines() if f"[evt {event_id}]" in line and "retrying" in line]
    [delivery] = stack.cli("events", "--event-id", event_id, "--json").json()
    failed = next(step for step in delivery["steps"] if step["outcome"] == "failed")
    assert "attempt 1/2: projection: the order projection could not be written (ResourceNotFoundException)" in console
    assert failed["detail"] == (
        "projection: the order projection could not be written (ResourceNotFoundException, ResourceNotFoundException)"
    )


def test_a_window_replayed_through_the_front_door_is_answered_as_duplicates(stack: LocalStack) -> None:
    start = datetime.now(UTC)
    event_id = new_event_id("window")
    stack.cli("send", "cart", "--event-id", event_id, "--order-id", str(new_order_id()))
    eventually(lambda: processed(stack, event_id), "the processor to archive it")
    until = datetime.now(UTC) + timedelta(seconds=1)
    window = ["--since", start.isoformat(), "--until", until.isoformat(), "--type", "cart"]

    dry = stack.cli("replay", *window, "--dry-run")
    sent = stack.cli("replay", *window, "--rate", "20")

    assert dry.code == 0, dry.err
    assert f"evt {event_id}  cart.updated" in dry.out
    assert sent.code == 0, sent.err
    assert sent.out.splitlines()[-1] == "replayed 1: 0 sent, 1 duplicate, 0 failed"
    eventually(lambda: path_of(stack, event_id)[-1:] == ["replayed"], "the replay in the receiver's log")
