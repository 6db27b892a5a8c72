"""The local API Gateway: one REST proxy route, POST /webhooks/klikit, in front of the real receiver handler.

It behaves like the deployed REST API on the points the receiver depends on:
- the body reaches the function as the exact bytes sent, base64-encoded with `isBase64Encoded: true`
  (the API has binaryMediaTypes ["*/*"]);
- headers arrive as `headers` (last value wins, sender's casing) and `multiValueHeaders` (every value);
- any other path or method gets what the deployed API answers (404 {"message":"Not Found"}); a body whose event
  does not fit Lambda's 6 MB invoke payload gets API Gateway's 413 {"message": "Request Too Long"}, a body over
  10 MB its plain-text 413; a function error gets API Gateway's own 5xx reply.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infra import lambda_shapes, spec
from klikit import headers as klikit_headers
from klikit import limits
from tools.local.console import Console, receiver_step
from tools.local.instances import InstancePool
from tools.local.state import WEBHOOK_PATH

API_GATEWAY_MAX_BODY = limits.API_GATEWAY_MAX_BODY_BYTES
DISCARD_AT_MOST = 64 * 1024 * 1024  # past this, an oversized request just loses its connection
LAMBDA_MAX_REQUEST_PAYLOAD = limits.LAMBDA_INVOKE_PAYLOAD_BYTES
# API Gateway's own answers when a body is too large (observed replies, docs/local.md)
EVENT_TOO_LONG_MESSAGE = "Request Too Long"
OVER_10_MB_TEXT = b"HTTP content length exceeded 10485760 bytes."
SOCKET_TIMEOUT_SECONDS = 30  # API Gateway's own limit for a request to arrive is of this order
STAGE = "local"
ROUTE_METHOD = "POST"
MISSING_TOKEN_ERROR = "MissingAuthenticationTokenException"
INTERNAL_ERROR = "InternalServerErrorException"
# What API Gateway's 502 stood for: the function's error, its instance dying, or its timeout (7 s: far below
# API Gateway's 29 s integration timeout, so the receiver's requests never get the 504 that one gives).
FAILURES = {"error": "function error", "crashed": "instance died", "timed-out": "timed out"}


def _json(message: str) -> bytes:
    return json.dumps({"message": message}).encode()


def api_gateway_event(
    method: str, target: str, header_pairs: list[tuple[str, str]], body: bytes, client_ip: str
) -> dict[str, Any]:
    """The REST proxy event API Gateway would hand the receiver for this request."""
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    return lambda_shapes.api_gateway_event(
        body, header_pairs, method=method, path=url.path, query=query, stage=STAGE, source_ip=client_ip
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_SECONDS  # a client that stops sending mid-request frees its thread
    server: LocalGateway

    def log_message(self, format: str, *args: Any) -> None:
        return  # the console shows one line per step instead

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (unknown method, malformed request line) in JSON, like API Gateway: never HTML.

        A method with no route is API Gateway's unknown-route answer; anything else keeps its status.
        """
        self.close_connection = True
        if code == HTTPStatus.NOT_IMPLEMENTED:
            no_route = {"x-amzn-ErrorType": MISSING_TOKEN_ERROR}
            self._reply(spec.UNKNOWN_ROUTE_STATUS, _json(spec.UNKNOWN_ROUTE_MESSAGE), no_route)
            return
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._reply(int(code), _json(phrase))

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        sent = {name.lower() for name in headers or {}}
        for name, value in (headers or {}).items():
            if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                self.send_header(name, value)
        if "content-type" not in sent:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes | None:
        """The raw body (Content-Length or chunked); None when it is over API Gateway's limit."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > API_GATEWAY_MAX_BODY:
                    self._discard(size)
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        declared = self.headers.get("Content-Length") or "0"
        if not (declared.isascii() and declared.isdigit()):
            raise ValueError("Content-Length is not a decimal number")  # int() would take "-1", "1_0", " 1"
        length = int(declared)
        if length > API_GATEWAY_MAX_BODY:
            self._discard(length)
            return None
        return self.rfile.read(length) if length else b""

    def _discard(self, length: int) -> None:
        """Read and drop a body we refuse, so the client gets the reply rather than a broken pipe."""
        self.close_connection = True
        remaining = min(length, DISCARD_AT_MOST)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                return
            remaining -= len(chunk)

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, TimeoutError):
            self.close_connection = True
            self._reply(400, _json("Bad Request"))
            return
        path = urlsplit(self.path).path
        event_id = self.headers.get(klikit_headers.EVENT_ID)
        event_type = self.headers.get(klikit_headers.EVENT_TYPE)
        console = self.server.console
        if path != WEBHOOK_PATH or self.command != ROUTE_METHOD:
            status = spec.UNKNOWN_ROUTE_STATUS
            console.step("rejected", event_id, event_type, f"{status} no route {self.command} {path} (API Gateway)")
            self._reply(status, _json(spec.UNKNOWN_ROUTE_MESSAGE), {"x-amzn-ErrorType": MISSING_TOKEN_ERROR})
            return
        if body is None:
            console.step("rejected", event_id, event_type, "413 body over API Gateway's 10 MB limit")
            self._reply(413, OVER_10_MB_TEXT, {"Content-Type": "text/plain"})
            return
        event = api_gateway_event(self.command, self.path, list(self.headers.items()), body, self.client_address[0])
        if len(json.dumps(event)) > LAMBDA_MAX_REQUEST_PAYLOAD:
            console.step("rejected", event_id, event_type, "413 event over Lambda's 6 MB invoke payload (API Gateway)")
            self._reply(413, _json(EVENT_TOO_LONG_MESSAGE))
            return
        receiver = self.server.receiver
        if receiver is None or self.server.stopping:
            self.close_connection = True
            self._reply(503, _json("Service Unavailable"))
            return
        outcome = receiver.invoke(event)
        result = outcome.result
        if outcome.status == "throttled":
            limit = receiver.function.concurrency
            detail = f"500 all {limit} receiver instances busy (Lambda throttles; API Gateway's 500), klikit retries"
            console.step("throttled", event_id, event_type, detail)
            self._reply(500, _json("Internal server error"), {"x-amzn-ErrorType": INTERNAL_ERROR})
            return
        if outcome.error is not None or not isinstance(result, dict) or "statusCode" not in result:
            why = FAILURES.get(outcome.status, "malformed proxy response")
            detail = f"502 receiver {why}: {outcome.error or 'no statusCode'}"[:200] + ", klikit retries"
            console.step("unavailable", event_id, event_type, detail)
            self._reply(502, _json("Internal server error"), {"x-amzn-ErrorType": INTERNAL_ERROR})
            return
        status = int(result["statusCode"])
        reply = lambda_shapes.response_body(result)
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[str(name)] = ", ".join(str(v) for v in values)
        word, detail = receiver_step(status, reply, outcome.invocation.records, len(body))
        console.step(word, event_id, event_type, detail)
        self._reply(status, reply, headers)

    def _counted(self) -> None:
        with self.server.request_counted():
            self._handle()

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _counted


class LocalGateway(ThreadingHTTPServer):
    """A thread per connection; requests go to the receiver's instances, so they run side by side."""

    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog: with http.server's 5, a burst of concurrent connections got resets before accept().
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], console: Console) -> None:
        self.receiver: InstancePool | None = None  # set once the pools exist; the port is bound first
        self.console = console
        self.stopping = False
        self._in_flight = 0
        self._idle = threading.Condition()
        super().__init__(address, _Handler)

    @contextlib.contextmanager
    def request_counted(self) -> Iterator[None]:
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def stop_accepting(self) -> int:
        """Close the listening socket (new connections are refused); the number of requests still in flight."""
        self.stopping = True
        self.shutdown()
        self.server_close()
        with self._idle:
            return self._in_flight

    def wait_for_requests(self, timeout: float) -> int:
        """Wait (at most `timeout`) for the requests in flight to be answered; the number still unanswered."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight and (remaining := deadline - time.monotonic()) > 0:
                self._idle.wait(remaining)
            return self._in_flight

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="gateway", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stop_accepting()
