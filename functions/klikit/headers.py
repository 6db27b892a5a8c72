"""klikit's delivery headers, read case-insensitively from an API Gateway REST proxy event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from klikit.errors import InvalidHeaders, MissingHeaders

SIGNATURE = "x-klikit-signature"
EVENT_ID = "x-klikit-event-id"
EVENT_TYPE = "x-klikit-event-type"
REQUIRED = (SIGNATURE, EVENT_ID, EVENT_TYPE)
# Set by `klikit replay` on what it sends again, so the receiver's log line (and `klikit events`) says "replayed".
# Unsigned like the others: it only labels a log line, it changes nothing the receiver decides.
REPLAY = "x-klikit-replay"

# Far above anything klikit sends; keeps S3 keys, SQS attributes and log lines bounded.
MAX_EVENT_ID_LENGTH = 256
MAX_EVENT_TYPE_LENGTH = 128


def header_values(event: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every header of a REST proxy event, lower-cased names, all values (single- and multi-value forms merged)."""
    values: dict[str, list[str]] = {}
    for name, many in (event.get("multiValueHeaders") or {}).items():
        if isinstance(name, str) and isinstance(many, list):
            values.setdefault(name.lower(), []).extend(v for v in many if isinstance(v, str))
    for name, one in (event.get("headers") or {}).items():
        if isinstance(name, str) and isinstance(one, str):
            bucket = values.setdefault(name.lower(), [])
            if one not in bucket:
                bucket.append(one)
    return values


def _printable(value: str) -> bool:
    return value.isprintable() and value.strip() == value


def klikit_headers(values: Mapping[str, list[str]]) -> tuple[str, str, str]:
    """(signature, event id, event type), or MissingHeaders / InvalidHeaders naming the culprits."""
    missing = [name for name in REQUIRED if not any(v.strip() for v in values.get(name, []))]
    if missing:
        raise MissingHeaders(missing)
    invalid: list[str] = []
    chosen: dict[str, str] = {}
    for name in REQUIRED:
        distinct = {v for v in values[name] if v.strip()}
        if len(distinct) != 1:
            invalid.append(name)
            continue
        chosen[name] = distinct.pop()
    event_id = chosen.get(EVENT_ID, "")
    if event_id and (len(event_id) > MAX_EVENT_ID_LENGTH or not _printable(event_id)):
        invalid.append(EVENT_ID)
    event_type = chosen.get(EVENT_TYPE, "")
    if event_type and (len(event_type) > MAX_EVENT_TYPE_LENGTH or not _printable(event_type)):
        invalid.append(EVENT_TYPE)
    if invalid:
        raise InvalidHeaders(sorted(set(invalid), key=REQUIRED.index))
    return chosen[SIGNATURE], event_id, event_type
