"""One readable line per step of a delivery's path through the local stack.

    09:14:11 received     created.v2      2,882 bytes, queued (200)  [evt test-1a2b]
    09:14:12 processed    created.v2      orders 7821, 7822  [evt test-1a2b]
    09:14:13 rejected     status.updated  401 signature matches none of 1 active secret(s)  [evt test-9f8e]

The words are derived from what a client and the queue can see (HTTP status and reply, batch item failures) and
from the handlers' structured logs (quarantine reasons, failing handlers), never from log message text alone.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TextIO

from klikit.delivery import EVENT_ID, EVENT_TYPE, message_attribute
from klikit.observability import LOG_HANDLER_FAILED

WIDTH = 12


def short_type(event_type: str | None) -> str:
    if not event_type:
        return "-"
    return event_type.removeprefix("klikit.order.")[:40]


def short_id(event_id: str | None) -> str:
    if not event_id:
        return "-"
    return event_id if len(event_id) <= 48 else event_id[:45] + "..."


class Console:
    def __init__(self, stream: TextIO, lock: threading.Lock) -> None:
        self._stream = stream
        self._lock = lock

    def say(self, text: str = "") -> None:
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()

    def step(self, word: str, event_id: str | None, event_type: str | None, detail: str) -> None:
        clock = datetime.now().strftime("%H:%M:%S")
        self.say(f"{clock} {word:<{WIDTH}} {short_type(event_type):<15} {detail}  [evt {short_id(event_id)}]")

    def note(self, word: str, detail: str) -> None:
        """A line about the stack itself (an instance starting), not about a delivery."""
        self.say(f"{datetime.now().strftime('%H:%M:%S')} {word:<{WIDTH}} {detail}")


# --- receiver ------------------------------------------------------------------------------------------------


def _reason(records: Iterable[Mapping[str, Any]]) -> str | None:
    for record in records:
        if record.get("reason"):
            return str(record["reason"])[:200]
    return None


def receiver_step(status: int, body: bytes, records: list[dict[str, Any]], body_bytes: int) -> tuple[str, str]:
    """(word, detail) for one HTTP delivery, from the reply klikit would see and the receiver's log reason."""
    try:
        reply = json.loads(body)
    except ValueError:
        reply = {}
    reply = reply if isinstance(reply, dict) else {}
    if status == 200 and reply.get("status") == "duplicate-ignored":
        return "duplicate", "already received: acknowledged, not queued again (200)"
    if 200 <= status < 300:
        offloaded = any(record.get("offloaded_to_s3") for record in records)
        where = "queued with the body in S3 (claim check)" if offloaded else "queued"
        return "received", f"{body_bytes:,} bytes, {where} ({status})"
    why = _reason(records) or str(reply.get("error") or reply.get("message") or "")
    if status == 409:
        return "in-flight", f"same event id is being taken right now, klikit retries ({status})"
    if status >= 500:
        return "unavailable", f"{why or 'receiver failed'}: not stored, klikit retries ({status})"
    return "rejected", f"{status} {why}".strip()


# --- processor -----------------------------------------------------------------------------------------------


def order_ids(message: Mapping[str, Any]) -> list[str]:
    """The order ids in an inline JSON body (best effort: a claim check or a non-JSON body has none to show)."""
    try:
        document = json.loads(message.get("body") or "")
        return [str(order["id"]) for order in document.get("orders", []) if isinstance(order, dict) and "id" in order]
    except (ValueError, AttributeError, TypeError):
        return []


def _error_summary(records: Iterable[Mapping[str, Any]]) -> str:
    """`pos.create-ticket: HandlerError: 422 unknown SKU`, or the last line of an error's traceback."""
    records = list(records)
    failed = [record for record in records if record.get("message") == LOG_HANDLER_FAILED]
    if failed:
        return "; ".join(
            f"{record.get('handler', '?')}: {record.get('error_type', 'error')}"
            + (f": {record['error_message']}" if record.get("error_message") else "")
            for record in failed
        )[:300]
    for record in records:
        if record.get("level") == "ERROR" and record.get("step"):  # a failure outside the handlers
            return f"{record['step']}: {record.get('message')} ({record.get('error_type', 'error')})"[:300]
        if record.get("level") == "ERROR" and (record.get("exception") or record.get("error")):
            lines = str(record.get("exception") or record.get("error")).strip().splitlines()
            kind, _, message = (lines[-1] if lines else "error").partition(": ")
            message = re.sub(r"^An error occurred \(\w+\) when calling the \w+ operation: ", "", message)
            where = f" in {record['handler']}" if record.get("handler") else ""
            return f"{kind.rsplit('.', 1)[-1]}: {message[:100]}{where}"
    return "the processor reported this record as failed"


def processor_steps(
    records: list[dict[str, Any]],
    failed: set[str],
    logs: list[dict[str, Any]],
    max_receive_count: int,
    crashed: str | None,
) -> list[tuple[str, str | None, str | None, str]]:
    """(word, event id, event type, detail) per SQS record of one processor invocation."""
    steps = []
    for message in records:
        message_id = message["messageId"]
        event_id, event_type = message_attribute(message, EVENT_ID), message_attribute(message, EVENT_TYPE)
        mine = [log for log in logs if log.get("message_id") == message_id]
        attempt = int(message.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        if message_id in failed or crashed is not None:
            why = f"function error: {crashed}"[:200] if crashed is not None else _error_summary(mine)
            if attempt >= max_receive_count:
                detail = f"attempt {attempt}/{max_receive_count}: {why}; SQS moves it to the DLQ"
                steps.append(("dead-letter", event_id, event_type, detail))
            else:
                steps.append(("retrying", event_id, event_type, f"attempt {attempt}/{max_receive_count}: {why}"))
            continue
        quarantine = next((log for log in mine if log.get("reason") and log.get("level") == "ERROR"), None)
        if quarantine is not None:
            detail = f"poison: {quarantine['reason']}, moved to the DLQ (see: ./klikit dlq list)"
            steps.append(("quarantined", event_id or quarantine.get("event_id"), event_type, detail))
            continue
        ids = order_ids(message)
        detail = f"orders {', '.join(ids)}" if ids else "done"
        if any("stale" in str(log.get("message", "")) for log in mine):
            detail += " (stale: the projection already holds newer data)"
        steps.append(("processed", event_id, event_type, detail))
    return steps
