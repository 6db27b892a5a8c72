"""Build klikit-shaped deliveries, sign them like klikit, and POST them: the CLI's `send` and `replay`.

Samples live in tools/samples/ (one per event type; the created.v2 sample is a two-order batch).
"""

from __future__ import annotations

import http.client
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra import spec
from klikit import headers as names
from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from klikit.signature import sign

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
SAMPLES = {
    "created": (ORDER_CREATED, "created.json"),
    "status": (ORDER_STATUS_UPDATED, "status.json"),
    "cart": (ORDER_CART_UPDATED, "cart.json"),
}
EVENT_TYPE_ALIASES = {alias: event_type for alias, (event_type, _) in SAMPLES.items()}
USER_AGENT = "klikit-webhooks-cli"
WRONG_SECRET_SUFFIX = "-not-the-right-one"


class SendError(Exception):
    """Nothing answered at the URL (refused, timed out, DNS): the message says what to do."""


def event_type_for(name: str) -> str:
    """`created`/`status`/`cart` or any full event type (klikit may send types we do not know yet)."""
    return EVENT_TYPE_ALIASES.get(name, name)


def new_event_id() -> str:
    return f"cli-{uuid.uuid4()}"


def parse_size(text: str, require_unit: bool = False) -> int:
    """`1200000`, `900KB`, `1.5MB`, `2MiB` -> bytes (KB/MB are powers of 1000, KiB/MiB of 1024).

    A bare number is a count of bytes; with `require_unit`, or with a fraction, it must carry a unit.
    """
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmM]i?[bB]?|[bB])?\s*", text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 900KB, 1.5MB, 2MiB, 1200000B)")
    if match.group(2) is None and (require_unit or "." in match.group(1)):
        raise ValueError(f"{text.strip()} has no unit: write {text.strip()}MB, {text.strip()}KB or {text.strip()}B")
    number, unit = float(match.group(1)), (match.group(2) or "").lower().rstrip("b")
    scale = {"": 1, "k": 1000, "ki": 1024, "m": 1000**2, "mi": 1024**2}[unit]
    return int(number * scale)


def sample_body(kind: str, order_id: int | None = None) -> bytes:
    """The sample delivery's exact bytes; `order_id` renumbers its orders (order_id, order_id + 1, ...)."""
    if kind not in SAMPLES:
        raise ValueError(f"no sample {kind!r}: choose one of {', '.join(SAMPLES)}")
    raw = (SAMPLES_DIR / SAMPLES[kind][1]).read_bytes()
    if order_id is None:
        return raw
    document = json.loads(raw)
    for offset, order in enumerate(document["orders"]):
        order["id"] = order_id + offset
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def pad_to(body: bytes, size: int) -> bytes:
    """`body` grown to `size` bytes with a `padding` field klikit does not send (unknown fields are ignored)."""
    document = json.loads(body)
    document["padding"] = ""
    base = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    document["padding"] = "x" * max(0, size - len(base))
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Delivery:
    body: bytes
    event_id: str
    event_type: str


@dataclass(frozen=True)
class SignOptions:
    secret: str
    tamper: bool = False  # flip one hex digit of a correct signature
    wrong_secret: bool = False  # sign with a secret the stack does not hold
    omit: tuple[str, ...] = ()  # header names to leave out
    replay: bool = False  # mark it as sent again by `klikit replay` (x-klikit-replay: the receiver logs "replayed")


def signed_headers(delivery: Delivery, options: SignOptions) -> dict[str, str]:
    secret = options.secret + WRONG_SECRET_SUFFIX if options.wrong_secret else options.secret
    signature = sign(secret, delivery.body)
    if options.tamper:
        signature = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        names.SIGNATURE: signature,
        names.EVENT_ID: delivery.event_id,
        names.EVENT_TYPE: delivery.event_type,
    }
    if options.replay:
        headers[names.REPLAY] = USER_AGENT
    omitted = {name.lower() for name in options.omit}
    return {name: value for name, value in headers.items() if name.lower() not in omitted}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 15.0) -> Reply:
    """POST and return the reply, whatever its status. SendError when nothing answered.

    http.client, not urllib: urllib rewrites header names (x-klikit-signature -> X-klikit-signature), and the point
    of this tool is to send exactly what klikit sends.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SendError(f"not an http(s) URL: {url}")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    try:
        connection.putrequest("POST", target, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return Reply(response.status, response.read(), dict(response.getheaders()))
    except (OSError, http.client.HTTPException) as error:
        raise SendError(f"nothing answered at {url} ({error})") from None
    finally:
        connection.close()


def send(url: str, delivery: Delivery, options: SignOptions, timeout: float = 15.0) -> Reply:
    return post(url, delivery.body, signed_headers(delivery, options), timeout)


def hint(reply: Reply, options: SignOptions) -> str | None:
    """What a reply means for the person who sent it, when it is not a plain success."""
    document = reply.json() if isinstance(reply.json(), dict) else {}
    if reply.status == 401:
        if options.tamper or options.wrong_secret:
            return "refused as forged, as it should be (you asked for a bad signature)"
        return (
            "the stack refused the signature: sign with the secret it uses "
            "(the local stack prints it when it starts; --secret or KLIKIT_WEBHOOK_SECRET)"
        )
    if reply.status == 400 and options.omit:
        return "refused for the missing header(s), as it should be"
    if reply.status == spec.UNKNOWN_ROUTE_STATUS and document.get("message") == spec.UNKNOWN_ROUTE_MESSAGE:
        return "API Gateway has no such route: the URL must end with /webhooks/klikit and the method be POST"
    if reply.status == 413:
        return "the body is over the limit: klikit never sends this much"
    if reply.status in (409, 503):
        return "not stored right now: klikit would retry; send it again in a moment"
    if reply.status == 200 and document.get("status") == "duplicate-ignored":
        return "this event id was received before: acknowledged and not queued again"
    return None
