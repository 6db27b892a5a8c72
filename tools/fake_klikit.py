"""A fake of klikit's partner orders API (docs/klikit.md) on loopback, for tests and for `make local`.

Real HTTP, the documented surface: `GET /v1/partner/orders` (`from` inclusive, `to` exclusive over `created_at`,
at most 90 days; `branch_id`, `status`, `provider_id`; `page` from 1, `size`; `data: {orders, page, size, total}`),
`GET /v1/partner/orders/{id}`, `GET /v1/partner/orders/count` (answers `data: {}`, as klikit's does), Basic auth
with klikit's error codes, and the `{request_id, data}` / `{request_id, error: {code, message}}` envelope.

Control endpoints under `/_fake/` (not klikit's): `POST /_fake/orders` seeds orders (a delivery body
`{brand_id, branch_id, orders: [...]}`: what klikit knows once it sent, or meant to send, that delivery);
`POST /_fake/faults` queues answers such as `{"status": 429, "times": 2, "page": 3}`; `GET /_fake/requests` lists
what was asked. Run it alone with `python -m tools.fake_klikit --port 3100 [--seed tests/fixtures/FILE.json]`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from klikit.formats import iso_z
from tools import REPO_ROOT
from tools.local.children import stop_child

API_PREFIX = "/v1/partner"
MAX_WINDOW = timedelta(days=90)
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
FILTERS = ("branch_id", "status", "provider_id")
LOCAL_PARTNER_KEY = "local-partner-key"
LOCAL_SECRET_KEY = "local-partner-secret"


@dataclass
class Fault:
    status: int
    times: int = 1
    page: int | None = None  # only requests for this page of the list
    retry_after: float | None = None


@dataclass
class Request:
    path: str
    query: dict[str, str]
    status: int


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class FakeKlikitState:
    partner_key: str = LOCAL_PARTNER_KEY
    secret_key: str = LOCAL_SECRET_KEY
    revoked: bool = False
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: dict[str, datetime] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeKlikit:
    """The server plus the test-side controls (seed, fail, rotate credentials, read the request log)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        partner_key: str = LOCAL_PARTNER_KEY,
        secret_key: str = LOCAL_SECRET_KEY,
    ) -> None:
        self.state = FakeKlikitState(partner_key=partner_key, secret_key=secret_key)
        self._server = ThreadingHTTPServer((host, port), _handler_for(self.state))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{API_PREFIX}"

    def start(self) -> FakeKlikit:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-klikit", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeKlikit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, order: Mapping[str, Any], created_at: datetime | None = None) -> None:
        _add(self.state, order, created_at)

    def add_delivery(self, body: bytes | Mapping[str, Any], created_at: datetime | None = None) -> int:
        return _add_delivery(self.state, body, created_at)

    def fail(self, status: int, times: int = 1, page: int | None = None, retry_after: float | None = None) -> None:
        with self.state.lock:
            self.state.faults.append(Fault(status, times, page, retry_after))

    def rotate_secret(self, secret_key: str) -> None:
        """The operator rotated the secret: the old one stops working at once (docs/klikit.md, Partner orders API)."""
        with self.state.lock:
            self.state.secret_key = secret_key

    @property
    def requests(self) -> list[Request]:
        with self.state.lock:
            return list(self.state.requests)

    def list_pages_served(self) -> list[int]:
        """The page numbers of the list requests answered 200, in order."""
        return [
            int(request.query.get("page", "1"))
            for request in self.requests
            if request.path == f"{API_PREFIX}/orders" and request.status == 200
        ]


def _add(state: FakeKlikitState, order: Mapping[str, Any], created_at: datetime | None) -> None:
    order_id = str(order["id"])
    with state.lock:
        state.orders[order_id] = dict(order)
        if created_at is not None or order_id not in state.created_at:
            listed = order.get("created_at")
            state.created_at[order_id] = created_at or (_time(listed) if isinstance(listed, str) else _now())
        state.orders[order_id].setdefault("created_at", _iso(state.created_at[order_id]))


def _add_delivery(state: FakeKlikitState, body: bytes | Mapping[str, Any], created_at: datetime | None) -> int:
    document = json.loads(body) if isinstance(body, bytes) else body
    orders = document.get("orders") if isinstance(document, Mapping) else None
    if not isinstance(orders, list):
        raise ValueError("expected a delivery body {brand_id, branch_id, orders: [...]}")
    for order in orders:
        if isinstance(order, Mapping) and "id" in order:
            _add(state, order, created_at)
    return len(orders)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)  # klikit's timestamps have whole seconds


def _iso(moment: datetime) -> str:
    return iso_z(moment, "seconds")


class _Reply(Exception):
    def __init__(self, status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.document = document
        self.headers = headers or {}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, {"request_id": str(uuid.uuid4()), "error": {"code": code, "message": message}}, headers)


def _handler_for(state: FakeKlikitState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fake-klikit/1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the requests are kept in state.requests

        def do_GET(self) -> None:
            self._serve(self._get)

        def do_POST(self) -> None:
            self._serve(self._post)

        def _serve(self, method: Any) -> None:
            parts = urlsplit(self.path)
            query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
            try:
                data = method(parts.path, query)
                reply = _Reply(200, {"request_id": str(uuid.uuid4()), "data": data})
            except _Reply as answer:
                reply = answer
            if parts.path.startswith(API_PREFIX):
                with state.lock:
                    state.requests.append(Request(parts.path, query, reply.status))
            body = json.dumps(reply.document).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _authenticate(self) -> None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                raise _error(401, "auth_missing", "Authorization: Basic base64(partner_key:secret_key) is required")
            try:
                key, _, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise _error(401, "auth_invalid_credential", "malformed Basic credentials") from None
            with state.lock:
                valid = key == state.partner_key and secret == state.secret_key
                revoked = state.revoked
            if not valid:
                raise _error(401, "auth_invalid_credential", "unknown partner_key or wrong secret_key")
            if revoked:
                raise _error(403, "auth_revoked", "these credentials were revoked")

        def _fault(self, page: int | None) -> None:
            with state.lock:
                for fault in state.faults:
                    if fault.times > 0 and (fault.page is None or fault.page == page):
                        fault.times -= 1
                        status, retry_after = fault.status, fault.retry_after
                        break
                else:
                    return
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
            code = "rate_limited" if status == 429 else "internal_error"
            raise _error(status, code, "injected by the fake", headers)

        def _get(self, path: str, query: dict[str, str]) -> Any:
            if path == "/_fake/requests":
                with state.lock:
                    return [request.__dict__ for request in state.requests]
            if not path.startswith(f"{API_PREFIX}/orders"):
                raise _error(404, "resource_not_found", "no such endpoint")
            self._authenticate()
            if path == f"{API_PREFIX}/orders":
                page = _positive(query, "page", 1)
                self._fault(page)
                return _list(state, query, page)
            self._fault(None)
            if path == f"{API_PREFIX}/orders/count":
                return {}  # klikit's count endpoint returns an empty object whatever the filters (docs/klikit.md)
            order_id = unquote(path.rsplit("/", 1)[1])
            with state.lock:
                order = state.orders.get(order_id)
            if order is None:
                raise _error(404, "resource_not_found", "order not found")
            return order

        def _post(self, path: str, query: dict[str, str]) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                document = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                raise _error(400, "request_invalid", "body is not JSON") from None
            if path == "/_fake/orders":
                try:
                    return {"seeded": _add_delivery(state, document, None)}
                except (ValueError, KeyError) as exc:
                    raise _error(400, "request_invalid", str(exc)) from None
            if path == "/_fake/faults" and isinstance(document, dict) and isinstance(document.get("status"), int):
                with state.lock:
                    state.faults.append(Fault(document["status"], int(document.get("times", 1)), document.get("page")))
                return {"queued": True}
            raise _error(404, "resource_not_found", "no such endpoint")

    return Handler


def _positive(query: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError:
        raise _error(400, "request_invalid", f"{name} must be an integer") from None
    if value < 1:
        raise _error(400, "request_invalid", f"{name} must be at least 1")
    return value


def _list(state: FakeKlikitState, query: Mapping[str, str], page: int) -> dict[str, Any]:
    size = _positive(query, "size", DEFAULT_PAGE_SIZE)
    if size > MAX_PAGE_SIZE:
        raise _error(400, "request_invalid", f"size must be at most {MAX_PAGE_SIZE}")
    try:
        since = _time(query["from"]) if "from" in query else None
        until = _time(query["to"]) if "to" in query else None
    except ValueError:
        raise _error(400, "request_invalid", "from and to must be ISO-8601 times") from None
    if since is not None and until is not None and (until <= since or until - since > MAX_WINDOW):
        raise _error(400, "request_invalid_range", "from must be before to, at most 90 days apart")
    with state.lock:
        listed = sorted(state.orders.items(), key=lambda item: (state.created_at[item[0]], item[0]))
        matching = [
            order
            for order_id, order in listed
            if (since is None or state.created_at[order_id] >= since)
            and (until is None or state.created_at[order_id] < until)
            and all(
                str(order.get(name)) == query[name] for name in ("branch_id", "status", "provider_id") if name in query
            )
        ]
    start = (page - 1) * size
    return {"orders": matching[start : start + size], "page": page, "size": size, "total": len(matching)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.fake_klikit", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--partner-key", default=LOCAL_PARTNER_KEY)
    parser.add_argument("--secret-key", default=LOCAL_SECRET_KEY)
    parser.add_argument(
        "--seed", type=Path, action="append", default=[], help="a delivery body file whose orders klikit knows"
    )
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes (the local stack's child)")
    args = parser.parse_args(argv)
    fake = FakeKlikit(args.host, args.port, args.partner_key, args.secret_key)
    for path in args.seed:
        fake.add_delivery(path.read_bytes())
    print(json.dumps({"url": fake.url}), flush=True)  # the parent reads the URL (and the port 0 picked) from here
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    if args.watch_stdin:
        # the parent holds our stdin open; the kernel closes it when the parent dies, even by SIGKILL
        def watch() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=watch, daemon=True).start()
    fake.start()
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


class FakeKlikitProcess:
    """The fake in a child process (the local stack's): `url` once started, stopped with the stack."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._command = [
            sys.executable,
            "-m",
            "tools.fake_klikit",
            "--host",
            host,
            "--port",
            str(port),
            "--watch-stdin",
        ]
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> str:
        """Start it and return its base URL; RuntimeError when it does not come up."""
        self._process = subprocess.Popen(
            self._command,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,  # the child exits when this pipe closes, however the stack dies (kill -9 too)
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # the child prints {"url": ...} once it listens
        try:
            self.url = str(json.loads(line)["url"])
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise RuntimeError("the fake klikit API did not start") from None
        return self.url

    def stop(self) -> None:
        stop_child(self._process)


def _control(url: str, path: str, body: bytes, timeout: float) -> Any:
    """POST to a control endpoint of the running fake whose API base is `url`; the reply's `data`."""
    control = url.split(API_PREFIX, 1)[0] + path
    request = urllib.request.Request(control, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())["data"]


def seed(url: str, body: bytes, timeout: float = 5.0) -> int:
    """Tell the fake at `url` (its /v1/partner base) about a delivery's orders; returns how many it took."""
    return int(_control(url, "/_fake/orders", body, timeout)["seeded"])


def inject_fault(url: str, status: int, times: int = 1, page: int | None = None, timeout: float = 5.0) -> None:
    """Make the running fake answer `status` to the next `times` requests (of list page `page`, if given)."""
    _control(url, "/_fake/faults", json.dumps({"status": status, "times": times, "page": page}).encode(), timeout)
