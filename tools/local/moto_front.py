"""The HTTP front of the local stack's moto server: keep-alive HTTP/1.1, and a short lane for the delivery path.

moto's own server is werkzeug's development server in front of one Flask app per service. Measured on the
receiver's three calls (PutItem, SendMessage, UpdateItem) from four clients, it spent 12.6-13.7 ms of CPU per
three calls, this front 5.3-6.6 ms (docs/performance.md). Two things make up the difference:

- werkzeug closes the connection after every answer ("Connection: close", to stay out of http.server's keep-alive
  bugs), so every AWS call of every function paid a TCP connect, a thread start and a new urllib3 connection. This
  front keeps connections open (HTTP/1.1), one thread per connection, reading exactly Content-Length bytes (or the
  chunks of a chunked body) so the next request on the connection starts where this one ended.
- A DynamoDB, SQS or Secrets Manager call (a POST to "/", the service named by its SigV4 credential scope) goes
  straight to the handler moto's Flask app would route it to (the backend's "/" url path), with the request moto's
  Flask app would build (moto's `BackendRequest` over the same WSGI environ) and the error handling of moto's own
  paths (`convert_to_flask_response`, and the HTTPException answer of moto's in-process mode). Flask's request and
  app contexts, routing and CORS wrapping were a fifth of moto's CPU and change nothing for these calls.

Every other request (S3, the moto API, any other service) goes through moto's full WSGI app, unchanged.
No library server does the second part; cheroot, a pure-Python keep-alive WSGI server, cut 13% against this
front's 50% on the same measure, so the first part is written here too (a minimal HTTP/1.1 reader and writer).
"""

from __future__ import annotations

import functools
import http
import io
import socket
import sys
import threading
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, Protocol
from urllib.parse import unquote

# The services on the delivery path, served by the short lane. Each answers POSTs to "/" (JSON or query protocol).
SHORT_LANE_SERVICES = frozenset({"dynamodb", "sqs", "secretsmanager"})
MAX_LINE_BYTES = 65_536
MAX_HEADERS = 200
LISTEN_BACKLOG = 1024
SERVER = "klikit-local-moto"
REASONS = {status.value: status.phrase for status in http.HTTPStatus}

Answer = tuple[str, list[tuple[str, str]], bytes]  # status line ("200 OK"), headers, body
Serve = Callable[[dict[str, Any]], Answer]


class Stream(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...

    def read(self, size: int = -1, /) -> bytes: ...


class BadRequest(Exception):
    pass


def serve_forever(host: str, port: int, serve: Serve) -> None:
    """Accept connections on host:port for ever, each on its own thread, each request answered by `serve`."""
    listener = socket.create_server((host, port), backlog=LISTEN_BACKLOG)
    while True:
        connection, address = listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_converse, args=(connection, address, port, serve), daemon=True).start()


def _converse(connection: socket.socket, address: Any, port: int, serve: Serve) -> None:
    reader = io.BufferedReader(socket.SocketIO(connection, "rb"), MAX_LINE_BYTES)
    try:
        while True:
            try:
                environ = read_request(reader, connection, address, port)
            except BadRequest as exc:
                connection.sendall(_head("400 Bad Request", [("Content-Type", "text/plain")], len(str(exc)), True))
                connection.sendall(str(exc).encode())
                return
            if environ is None:
                return  # the client closed the connection
            status, headers, body = serve(environ)
            close = environ["SERVER_PROTOCOL"] == "HTTP/1.0" or environ.get("HTTP_CONNECTION", "").lower() == "close"
            head = _head(status, headers, len(body), close)
            connection.sendall(head if environ["REQUEST_METHOD"] == "HEAD" else head + body)
            if close:
                return
    except OSError:
        return  # the client went away mid-request (an instance killed, the stack stopping)
    finally:
        reader.close()
        connection.close()


def read_request(reader: Stream, connection: socket.socket, address: Any, port: int) -> dict[str, Any] | None:
    """The next request on the connection as a WSGI environ, as werkzeug's server builds it; None at end of stream."""
    from moto.core.request import (
        PRESERVED_HEADER_NAMES_ENVIRON_KEY,
        environ_key_for_header,
        should_preserve_original_header_name,
    )

    line = reader.readline(MAX_LINE_BYTES)
    while line in (b"\r\n", b"\n"):
        line = reader.readline(MAX_LINE_BYTES)
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
    except ValueError:
        raise BadRequest("malformed request line") from None
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "SERVER_SOFTWARE": SERVER,
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": _wsgi_string(unquote(path)),
        "QUERY_STRING": query,
        "REQUEST_URI": target,
        "RAW_URI": target,
        "REMOTE_ADDR": address[0],
        "REMOTE_PORT": address[1],
        "SERVER_NAME": connection.getsockname()[0],
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": version,
    }
    preserved: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        header = reader.readline(MAX_LINE_BYTES)
        if header in (b"\r\n", b"\n", b""):
            break
        name, colon, value = header.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name:
            raise BadRequest("malformed header line")
        key = environ_key_for_header(name)
        if "_" in name:
            # werkzeug drops names with "_" (WSGI cannot tell X_Foo from X-Foo); moto keeps S3 metadata's spelling
            if should_preserve_original_header_name(name) and key not in environ:
                preserved[key] = name
                environ[key] = value
            continue
        if key in environ and key.startswith("HTTP_"):
            value = f"{environ[key]},{value}"
        environ[key] = value
    else:
        raise BadRequest("too many headers")
    environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = preserved
    if environ.get("HTTP_EXPECT", "").lower() == "100-continue":
        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        body = _dechunked(reader)
        environ["wsgi.input_terminated"] = True  # as werkzeug's server marks a de-chunked body: read to its end
    else:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise BadRequest("malformed Content-Length") from None
        body = reader.read(length) if length > 0 else b""
        if len(body) < length:
            return None  # the client closed the connection mid-body
    environ["wsgi.input"] = io.BytesIO(body)
    return environ


def _wsgi_string(text: str) -> str:
    """PEP 3333's "bytes as latin-1" form of a decoded URL part, as werkzeug's server puts it in the environ."""
    return text.encode("utf-8").decode("latin-1")


def _dechunked(reader: Stream) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = reader.readline(MAX_LINE_BYTES)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest("malformed chunk size") from None
        if size == 0:
            while reader.readline(MAX_LINE_BYTES) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(reader.read(size))
        reader.readline(MAX_LINE_BYTES)


def _head(status: str, headers: list[tuple[str, str]], length: int, close: bool) -> bytes:
    lines = [f"HTTP/1.1 {status}\r\n", f"Server: {SERVER}\r\n", f"Date: {formatdate(usegmt=True)}\r\n"]
    has_length = False
    for name, value in headers:
        lowered = name.lower()
        if lowered in ("connection", "transfer-encoding", "keep-alive", "server", "date"):
            continue  # this front frames the answer itself
        has_length = has_length or lowered == "content-length"
        lines.append(f"{name}: {value}\r\n")
    if not has_length:
        lines.append(f"Content-Length: {length}\r\n")
    if close:
        lines.append("Connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class Dispatcher:
    """One request's answer: the short lane for the delivery path's services, moto's WSGI app for the rest."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any]) -> Answer:
        handler = self.short_lane(environ)
        return _answer(handler, environ) if handler is not None else _through_app(self._app, environ)

    def short_lane(self, environ: dict[str, Any]) -> Callable[..., Any] | None:
        if environ["REQUEST_METHOD"] != "POST" or environ["PATH_INFO"] != "/" or environ["QUERY_STRING"]:
            return None
        service = signing_service(environ.get("HTTP_AUTHORIZATION", ""))
        if service not in SHORT_LANE_SERVICES:
            return None
        if service == "dynamodb" and not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_2012"):
            return None  # DynamoDB Streams and the 2011 API have backends of their own
        return root_handler(service)


def signing_service(authorization: str) -> str | None:
    """The service of a SigV4 Authorization header's credential scope (KEY/DATE/REGION/SERVICE/aws4_request)."""
    try:
        scope = authorization.split(",", 1)[0].split()[1]
        _, _, _, service, _ = scope.split("/")
    except (IndexError, ValueError):
        return None
    return service.lower()


@functools.cache  # a service's URL table never changes while moto serves
def root_handler(service: str) -> Callable[..., Any]:
    """What moto's Flask app for `service` routes "/" to: the backend's url path "/" (or "/$")."""
    import moto.backends as backends
    from moto.core import DEFAULT_ACCOUNT_ID

    backend = backends.get_backend(service)[DEFAULT_ACCOUNT_ID]["us-east-1"]  # type: ignore[call-overload]  # only its URL table is read
    paths: dict[str, Callable[..., Any]] = backend.url_paths
    return paths["/$"] if "/$" in paths else paths["/"]


def _answer(handler: Callable[..., Any], environ: dict[str, Any]) -> Answer:
    """moto's `convert_to_flask_response` without Flask, plus the HTTPException answer Flask would have given."""
    from botocore.exceptions import ClientError
    from moto.core.exceptions import HTTPException
    from moto.moto_api import recorder
    from moto.moto_server.werkzeug_app import BackendRequest

    request = BackendRequest(environ)
    recorder._record_request(request)
    try:
        result = handler(request, request.raw_url, dict(request.headers))
    except ClientError as exc:
        result = 400, {}, exc.response["Error"]["Message"]
    except HTTPException as exc:
        result = exc.code, dict(exc.get_headers()), exc.get_body()
    status, headers, content = result if len(result) == 3 else (200, {}, result)
    code = int(status)
    out = [(str(name), str(value)) for name, value in headers.items()]
    if not any(name.lower() == "content-type" for name, _ in out):
        out.append(("Content-Type", "text/html; charset=utf-8"))  # what a Flask Response defaults to
    body = content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
    return f"{code} {REASONS.get(code, 'UNKNOWN')}", out, body


def _through_app(app: Callable[..., Any], environ: dict[str, Any]) -> Answer:
    started: list[Any] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
        started[:] = [status, headers]
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return started[0], list(started[1]), b"".join(chunks)
