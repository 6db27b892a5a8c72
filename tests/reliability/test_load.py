"""A bounded burst on the local stack (real HTTP, moto server, the real worker): concurrent senders, duplicates
sent at the same time, forgeries mixed in. Zero lost: every signed event ends projected. Zero doubled: the user's
example handler (the kitchen ticket) ran once per order. Zero forged: no forgery reached the table.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klikit.signature import sign
from tests.conftest import load_json
from tests.local.conftest import LocalStack, eventually, start_stack
from tests.reliability.conftest import FUZZ_EXAMPLES
from tools.local.state import LOCAL_DEFAULT_SECRET, WEBHOOK_PATH

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("load")]

EVENTS = 60
COPIES = 3  # each signed event is sent three times, the copies racing each other
FORGERIES = 30
SENDERS = 8


@pytest.fixture(scope="module")
def burst_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = start_stack(tmp_path_factory.mktemp("load"), "--visibility-timeout", "1")
    try:
        yield running
    finally:
        running.stop()


def _created(order_id: int) -> bytes:
    document = load_json("order_created_v2_batch.json")
    document["orders"] = [{**document["orders"][0], "id": order_id}]
    return json.dumps(document).encode()


def _post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    """klikit's POST; it retries a 409 or 5xx (a few times, quickly: this is a burst, not a backoff test)."""
    for _ in range(20):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("POST", WEBHOOK_PATH, body=body, headers=headers)
            response = connection.getresponse()
            status, reply = response.status, json.loads(response.read() or b"{}")
        finally:
            connection.close()
        if status < 500 and status != 409:
            return status, reply
        time.sleep(0.5)
    return status, reply


def test_a_burst_with_duplicates_and_forgeries_loses_nothing_doubles_nothing_and_admits_no_forgery(
    burst_stack: LocalStack,
) -> None:
    requests: list[tuple[str, int, bytes, dict[str, str]]] = []
    for n in range(EVENTS):
        body = _created(910_000 + n)
        headers = {
            "Content-Type": "application/json",
            "x-klikit-signature": sign(LOCAL_DEFAULT_SECRET, body),
            "x-klikit-event-id": f"load-{n}",
            "x-klikit-event-type": "klikit.order.created.v2",
        }
        requests += [("signed", 910_000 + n, body, headers)] * COPIES
    for n in range(FORGERIES):
        body = _created(920_000 + n)
        headers = {
            "Content-Type": "application/json",
            "x-klikit-signature": sign("not-the-secret", body),
            "x-klikit-event-id": f"forged-{n}",
            "x-klikit-event-type": "klikit.order.created.v2",
        }
        requests.append(("forged", 920_000 + n, body, headers))
    random.Random(7).shuffle(requests)

    with ThreadPoolExecutor(SENDERS) as senders:
        replies = list(senders.map(lambda r: (r[0], r[1], _post(burst_stack.port, r[2], r[3])), requests))

    signed = [(order, reply) for kind, order, reply in replies if kind == "signed"]
    assert all(status == 200 for _, (status, _) in signed), [r for r in signed if r[1][0] != 200][:3]
    outcomes = Counter(body["status"] for _, (_, body) in signed)
    assert outcomes == {"received": EVENTS, "duplicate-ignored": EVENTS * (COPIES - 1)}
    received = [order for order, (_, body) in signed if body["status"] == "received"]
    assert sorted(received) == [910_000 + n for n in range(EVENTS)]  # each event id admitted exactly once
    assert all(reply[0] == 401 for kind, _, reply in replies if kind == "forged")

    orders = burst_stack.client("dynamodb")

    def projected() -> set[int] | None:
        items = orders.scan(TableName=burst_stack.state.resources.orders_table, ProjectionExpression="order_id")
        found = {int(item["order_id"]["S"]) for item in items["Items"]}
        return found if {910_000 + n for n in range(EVENTS)} <= found else None

    found = eventually(projected, "every signed order to be projected", timeout=90)
    assert not any(order >= 920_000 for order in found)  # no forgery was stored

    log = Path(burst_stack.state.directory) / "processor.log"

    def tickets() -> Counter[str] | None:
        # each line is "<ISO time>\t<JSON>", like CloudWatch's timestamped events
        lines = [
            json.loads(line.split("\t", 1)[1]) for line in log.read_text(encoding="utf-8").splitlines() if "\t{" in line
        ]
        counted = Counter(str(r["ticket"]["order_id"]) for r in lines if r.get("message") == "kitchen ticket")
        return counted if len(counted) >= EVENTS else None

    counted = eventually(tickets, "a kitchen ticket per order")
    assert counted == {str(910_000 + n): 1 for n in range(EVENTS)}  # the user's handler ran once per order
    sqs = burst_stack.client("sqs")
    depth = sqs.get_queue_attributes(QueueUrl=burst_stack.state.resources.dlq_url, AttributeNames=["All"])
    assert depth["Attributes"]["ApproximateNumberOfMessages"] == "0"


METHODS = ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST"]
paths = st.one_of(
    st.sampled_from(["/", WEBHOOK_PATH + "/", WEBHOOK_PATH.upper(), "/webhooks", WEBHOOK_PATH + "?x=1"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#"), max_size=40).map(
        lambda text: "/" + text
    ),
)


def test_hostile_methods_and_paths_at_the_gateway_get_json_4xx_and_reach_no_function(burst_stack: LocalStack) -> None:
    receiver_log = Path(burst_stack.state.directory) / "receiver.log"
    seen: Counter[int] = Counter()

    @settings(settings.get_profile("reliability"), max_examples=min(FUZZ_EXAMPLES, 300))
    @given(method=st.sampled_from(METHODS), path=paths, body=st.binary(max_size=64))
    def request(method: str, path: str, body: bytes) -> None:
        if method == "POST" and re.sub("/+", "/", urlsplit("http://gateway" + path).path) == WEBHOOK_PATH:
            return  # the one route (a query string or doubled slash does not change it): fuzzed in-process
        connection = http.client.HTTPConnection("127.0.0.1", burst_stack.port, timeout=30)
        try:
            # the receiver would log this id as its correlation id, had the request reached it
            connection.request(method, path, body=body, headers={"x-klikit-event-id": "gateway-probe"})
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        seen[response.status] += 1
        assert 400 <= response.status < 500, (method, path, response.status)
        assert json.loads(payload), (method, path, payload)

    request()
    invocations = receiver_log.read_text(encoding="utf-8") if receiver_log.exists() else ""
    assert "gateway-probe" not in invocations  # the receiver never ran
    assert seen, "no request was sent"


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "BREW"])
def test_an_unusual_method_at_the_gateway_gets_a_json_4xx(burst_stack: LocalStack, method: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", burst_stack.port, timeout=30)
    try:
        connection.request(method, WEBHOOK_PATH, body=b"{}")
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()

    assert 400 <= response.status < 500
    assert json.loads(payload)


@pytest.mark.parametrize("declared", ["-1", "1_0", "+5", "0x10"])
def test_a_content_length_that_is_not_a_decimal_number_gets_a_json_400_not_a_hang(
    burst_stack: LocalStack, declared: str
) -> None:
    import socket

    request = (f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n\r\n{{}}").encode()
    with socket.create_connection(("127.0.0.1", burst_stack.port), timeout=30) as connection:
        connection.sendall(request)  # the connection stays open: a gateway that waits for more bytes never answers
        response = http.client.HTTPResponse(connection)
        response.begin()
        body = response.read()

    assert response.status == 400
    assert json.loads(body) == {"message": "Bad Request"}


def test_the_local_gateway_times_out_a_client_that_stops_sending() -> None:
    from tools.local.gateway import SOCKET_TIMEOUT_SECONDS, _Handler

    assert _Handler.timeout == SOCKET_TIMEOUT_SECONDS  # socketserver applies it to every accepted connection
