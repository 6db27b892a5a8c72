"""The local stack end to end: the CLI's sender over real HTTP, the real handlers, moto behind them."""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from pathlib import Path

import pytest

from infra import spec
from klikit import limits
from klikit.signature import sign
from tests.local.conftest import LocalStack, banner_command, eventually, free_port, port_is_free, start_stack
from tools import REPO_ROOT, sender
from tools.cli import main
from tools.local.gateway import API_GATEWAY_MAX_BODY
from tools.local.state import read_state

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local")]

_order_ids = count(880_000)


def new_event_id(label: str) -> str:
    return f"test-{label}-{uuid.uuid4().hex[:8]}"


def new_order_id() -> int:
    return next(_order_ids) * 10  # created.v2 holds two orders: N and N + 1


def processed(stack: LocalStack, event_id: str) -> bool:
    return "processed" in stack.steps_for(event_id)


def test_printed_send_command_produces_a_processed_order(stack: LocalStack) -> None:
    command = banner_command(stack)
    assert command[:3] == ["./klikit", "send", "created"]

    sent = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)

    assert sent.returncode == 0, sent.stderr
    assert '200 {"status":"received"}' in sent.stdout
    order = eventually(lambda: stack.order(7821), "order 7821 in the projection")
    assert order["order_id"] == "7821"
    assert order["status"] == 2


def test_signed_delivery_is_received_processed_and_projected(stack: LocalStack) -> None:
    event_id, order_id = new_event_id("created"), new_order_id()

    result = stack.cli("send", "created", "--event-id", event_id, "--order-id", str(order_id))

    assert result.code == 0, result.err
    assert '-> 200 {"status":"received"}' in result.out
    eventually(lambda: processed(stack, event_id), "the processor to take it")
    assert stack.steps_for(event_id) == ["received", "processed"]
    first, second = stack.order(order_id), stack.order(order_id + 1)
    assert first is not None and second is not None
    assert first["currency"] == "AED"
    assert first["last_event_id"] == event_id


def test_status_update_after_creation_moves_the_projection_forward(stack: LocalStack) -> None:
    order_id = new_order_id()
    stack.cli("send", "created", "--order-id", str(order_id))
    eventually(lambda: stack.order(order_id), "the created order")
    event_id = new_event_id("status")

    stack.cli("send", "status", "--event-id", event_id, "--order-id", str(order_id))

    eventually(lambda: processed(stack, event_id), "the status update to be processed")
    order = stack.order(order_id)
    assert order is not None
    assert order["status"] == 5
    assert order["status_event_id"] == event_id


def test_repeated_delivery_is_acknowledged_as_duplicate_and_queued_once(stack: LocalStack) -> None:
    event_id = new_event_id("dup")

    result = stack.cli("send", "cart", "--event-id", event_id, "--order-id", str(new_order_id()), "--repeat", "3")

    assert result.code == 0
    assert result.out.count('{"status":"received"}') == 1
    assert result.out.count('{"status":"duplicate-ignored"}') == 2
    eventually(lambda: processed(stack, event_id), "the processor to take it")
    steps = stack.steps_for(event_id)
    assert (steps.count("received"), steps.count("duplicate"), steps.count("processed")) == (1, 2, 1)


@pytest.mark.parametrize("forgery", ["--tamper", "--wrong-secret"])
def test_forged_delivery_is_rejected_with_401_and_never_processed(stack: LocalStack, forgery: str) -> None:
    event_id, order_id = new_event_id("forged"), new_order_id()

    result = stack.cli("send", "created", "--event-id", event_id, "--order-id", str(order_id), forgery)

    assert result.code == 1
    assert '-> 401 {"error":"invalid signature"}' in result.out
    assert stack.steps_for(event_id) == ["rejected"]
    assert stack.order(order_id) is None


def test_missing_headers_are_rejected_with_400_naming_them(stack: LocalStack) -> None:
    event_id = new_event_id("headers")

    result = stack.cli(
        "send", "status", "--event-id", event_id, "--without-header", "x-klikit-signature",
        "--without-header", "x-klikit-event-type",
    )  # fmt: skip

    assert result.code == 1
    reply = json.loads(result.out.split("-> 400 ", 1)[1].splitlines()[0])
    assert reply == {"error": "missing klikit headers", "missing": ["x-klikit-signature", "x-klikit-event-type"]}
    assert stack.steps_for(event_id) == ["rejected"]


def test_body_over_the_sqs_limit_travels_by_claim_check_and_is_processed(stack: LocalStack) -> None:
    event_id, order_id = new_event_id("large"), new_order_id()

    result = stack.cli("send", "created", "--event-id", event_id, "--order-id", str(order_id), "--large", "1.2MiB")

    assert result.code == 0
    assert f"{int(1.2 * 1024 * 1024):,} bytes" in result.out
    eventually(lambda: processed(stack, event_id), "the claim-checked delivery to be processed")
    assert "claim check" in next(line for line in stack.output().splitlines() if f"[evt {event_id}]" in line)
    assert stack.order(order_id) is not None


def test_other_paths_and_methods_get_the_deployed_apis_404(stack: LocalStack) -> None:
    base = stack.state.webhook_url.removesuffix("/webhooks/klikit")

    wrong_path = sender.post(f"{base}/webhooks/other", b"{}", {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as wrong_method:
        urllib.request.urlopen(stack.state.webhook_url, timeout=10)  # a GET  # noqa: S310 - loopback

    assert wrong_path.status == 404
    assert wrong_path.json() == {"message": "Not Found"}
    assert wrong_method.value.code == 404
    assert json.loads(wrong_method.value.read()) == {"message": "Not Found"}


def _post_signed(stack: LocalStack, body: bytes, label: str) -> sender.Reply:
    headers = {
        "x-klikit-signature": sign("local-dev-secret", body),
        "x-klikit-event-id": new_event_id(label),
        "x-klikit-event-type": "klikit.order.created.v2",
    }
    return sender.post(stack.state.webhook_url, body, headers)


def test_body_over_api_gateways_10_mb_gets_its_plain_text_413(stack: LocalStack) -> None:
    reply = _post_signed(stack, b"x" * (API_GATEWAY_MAX_BODY + 1), "huge")

    assert reply.status == 413
    assert reply.text() == "HTTP content length exceeded 10485760 bytes."


def test_five_mib_body_gets_api_gateways_413_because_base64_outgrows_lambdas_payload(stack: LocalStack) -> None:
    reply = _post_signed(stack, b"x" * (5 * 1024 * 1024), "five-mib")

    assert reply.status == 413
    assert reply.headers.get("Content-Type") == "application/json"
    assert reply.json() == {"message": "Request Too Long"}


def test_body_just_over_the_true_limit_gets_the_receivers_own_413(stack: LocalStack) -> None:
    reply = _post_signed(stack, b"x" * (limits.MAX_BODY_BYTES + 1), "over-limit")

    assert reply.status == 413
    assert reply.json()["limit_bytes"] == limits.MAX_BODY_BYTES


def test_every_one_of_many_concurrent_connections_gets_an_answer(stack: LocalStack) -> None:
    # More than http.server's listen backlog of 5, all at once: none may be reset or left without a reply.
    connections = 200
    barrier = threading.Barrier(connections)
    base = stack.state.webhook_url.removesuffix("/webhooks/klikit")

    def knock(_: int) -> tuple[int, object]:
        barrier.wait()
        reply = sender.post(f"{base}/webhooks/other", b"{}", {"Content-Type": "application/json"}, timeout=60)
        return reply.status, reply.json()

    with ThreadPoolExecutor(connections) as pool:
        replies = list(pool.map(knock, range(connections)))

    assert replies == [(404, {"message": "Not Found"})] * connections


def test_exact_bytes_reach_the_receiver_so_any_signed_body_is_accepted(stack: LocalStack, tmp_path: Path) -> None:
    # Whitespace, key order and non-ASCII survive the local gateway: the signature is over what was sent.
    body = '{ "orders": [ {"id": 1, "note": "çà va \u2603"} ],\r\n "brand_id": 1, "branch_id": 2 }\n'.encode()
    path = tmp_path / "odd.json"
    path.write_bytes(body)

    result = stack.cli("send", str(path), "--type", "status", "--event-id", new_event_id("bytes"))

    assert result.code == 0, result.out


def test_poison_delivery_is_quarantined_and_listed_with_its_reason(stack: LocalStack, tmp_path: Path) -> None:
    event_id = new_event_id("poison")
    path = tmp_path / "poison.txt"
    path.write_bytes(b"this is not json")

    result = stack.cli("send", str(path), "--type", "created", "--event-id", event_id)

    assert result.code == 0  # signed, so the receiver takes it; the processor finds it unreadable
    eventually(lambda: "quarantined" in stack.steps_for(event_id), "the processor to quarantine it")
    listed = [json.loads(line) for line in stack.cli("dlq", "list", "--json").out.splitlines()]
    mine = [entry for entry in listed if entry["event_id"] == event_id]
    assert len(mine) == 1
    assert mine[0]["reason"] == "not_json"
    again = [json.loads(line) for line in stack.cli("dlq", "list", "--json").out.splitlines()]
    assert [entry["event_id"] for entry in again] == [entry["event_id"] for entry in listed]  # listing moves nothing


def test_failing_delivery_goes_to_the_dlq_and_redrive_after_the_fix_processes_it_once(stack: LocalStack) -> None:
    event_id, order_id = new_event_id("redrive"), new_order_id()
    dynamodb = stack.client("dynamodb")
    orders_table = stack.state.resources.orders_table
    dynamodb.delete_table(TableName=orders_table)  # the fault: the projection cannot write
    try:
        stack.cli("send", "created", "--event-id", event_id, "--order-id", str(order_id))
        eventually(lambda: "dead-letter" in stack.steps_for(event_id), "the receive limit", timeout=60)

        def in_dlq() -> list[dict[str, str]]:
            entries = [json.loads(line) for line in stack.cli("dlq", "list", "--json").out.splitlines()]
            return [entry for entry in entries if entry["event_id"] == event_id]

        assert eventually(in_dlq, "SQS to move it to the DLQ")[0]["reason"] == "receive_limit"
        assert stack.order(order_id) is None
    finally:
        dynamodb.create_table(  # the fix
            TableName=orders_table,
            KeySchema=[{"AttributeName": spec.ORDERS_TABLE.partition_key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": spec.ORDERS_TABLE.partition_key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    redriven = stack.cli("dlq", "redrive", "--event-id", event_id)

    assert redriven.code == 0
    assert "moved 1 delivery back to the queue" in redriven.out
    # the console prints "processed" after the handlers return; the projection item is visible before that
    eventually(lambda: "processed" in stack.steps_for(event_id), "the redriven delivery to be processed")
    assert stack.order(order_id) is not None
    assert stack.steps_for(event_id).count("processed") == 1
    assert not [line for line in stack.cli("dlq", "list", "--json").out.splitlines() if event_id in line]
    processed_logs = stack.cli("logs", "--function", "processor", "--filter", event_id).out
    assert sum('"message":"delivery processed"' in line for line in processed_logs.splitlines()) == 1


def test_replay_by_event_id_resends_the_archived_bytes(stack: LocalStack) -> None:
    event_id, order_id = new_event_id("replay"), new_order_id()
    stack.cli("send", "cart", "--event-id", event_id, "--order-id", str(order_id))
    eventually(lambda: processed(stack, event_id), "the original delivery to be processed")

    same = stack.cli("replay", event_id)
    as_new = stack.cli("replay", event_id, "--as-new")

    assert '-> 200 {"status":"duplicate-ignored"}' in same.out  # klikit's replays keep the id: idempotent
    assert "klikit.order.cart.updated" in same.out
    assert '-> 200 {"status":"received"}' in as_new.out


def test_replay_of_an_unknown_event_id_says_what_to_check(stack: LocalStack) -> None:
    result = stack.cli("replay", "no-such-event")

    assert result.code == 1
    assert "no archived delivery for event id 'no-such-event'" in result.err
    assert "klikit logs --filter no-such-event" in result.err


def test_unknown_order_says_what_to_check(stack: LocalStack) -> None:
    result = stack.cli("orders", "get", "404404")

    assert result.code == 1
    assert "no order 404404" in result.err
    assert "./klikit logs --filter 404404" in result.err


def test_logs_show_both_functions_for_one_event(stack: LocalStack) -> None:
    event_id = new_event_id("logs")
    stack.cli("send", "status", "--event-id", event_id, "--order-id", str(new_order_id()))
    eventually(lambda: processed(stack, event_id), "the delivery to be processed")

    lines = stack.cli("logs", "--filter", event_id, "--since", "5m").out.splitlines()
    receiver_only = stack.cli("logs", "--filter", event_id, "--function", "receiver").out.splitlines()

    assert {line.split()[1] for line in lines} == {"receiver", "processor"}
    assert all(json.loads(line.split(" ", 2)[2])["level"] for line in lines)
    assert receiver_only and all(line.split()[1] == "receiver" for line in receiver_only)
    assert stack.cli("logs", "--filter", event_id, "--since", "2099-01-01T00:00:00Z").out.startswith("(no log lines")


def test_every_next_command_a_send_prints_names_the_stacks_port_so_it_can_be_pasted(stack: LocalStack) -> None:
    order_id = new_order_id()

    result = stack.cli("send", "created", "--order-id", str(order_id))

    hint = next(line for line in result.out.splitlines() if line.startswith("next: "))
    command = shlex.split(hint.removeprefix("next: ").split("(", 1)[0])
    assert command[:4] == ["./klikit", "orders", "get", str(order_id)]
    assert command[4:] == stack.location
    eventually(lambda: stack.order(order_id), "the order")
    pasted = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert pasted.returncode == 0, pasted.stderr
    assert json.loads(pasted.stdout)["order_id"] == str(order_id)


def test_without_port_the_cli_finds_the_one_local_stack_running(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PORT", raising=False)

    code = main(["dlq", "list", "--state-dir", str(stack.state_dir)])

    assert code == 0
    assert f"the local stack on port {stack.port}" in capsys.readouterr().out


def test_a_file_is_sent_with_the_type_its_name_says_and_a_nameless_one_needs_type(
    stack: LocalStack, tmp_path: Path
) -> None:
    named, nameless = tmp_path / "order_status_updated.json", tmp_path / "payload.json"
    for path in (named, nameless):
        path.write_bytes(sender.sample_body("status", new_order_id()))

    sent = stack.cli("send", str(named))
    refused = stack.cli("send", str(nameless))

    assert sent.code == 0, sent.err
    assert "event type klikit.order.status.updated (from the file name" in sent.out
    assert refused.code == 1
    assert "pass --type" in refused.err
    assert "POST" not in refused.out  # nothing was sent under a guessed type


def test_commands_without_a_running_stack_say_how_to_start_one(tmp_path: Path) -> None:
    port = str(free_port())
    for command in (["orders", "get", "1"], ["dlq", "list"], ["dlq", "redrive"], ["replay", "x"]):
        assert main([*command, "--port", port, "--state-dir", str(tmp_path)]) == 3
    assert main(["send", "created", "--port", port, "--state-dir", str(tmp_path)]) == 3


def test_second_stack_on_another_port_is_independent_and_sigterm_leaves_nothing_behind(stack: LocalStack) -> None:
    other = start_stack(stack.state_dir)  # same state directory, different port
    moto_port = int(other.state.moto_endpoint.rsplit(":", 1)[1])
    try:
        order_id = new_order_id()
        assert other.cli("send", "created", "--order-id", str(order_id)).code == 0
        eventually(lambda: other.order(order_id), "the order on the second stack")
        assert stack.order(order_id) is None
        assert read_state(stack.state_dir, stack.port) is not None
    finally:
        code = other.stop()

    assert code == 0
    assert "stopped: nothing left running" in other.output()
    assert read_state(other.state_dir, other.port) is None
    assert port_is_free(other.port)
    assert port_is_free(moto_port)
    assert stack.cli("dlq", "list").code == 0  # the first stack is untouched
