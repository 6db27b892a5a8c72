"""CloudWatch Logs Insights queries over the two functions' logs, written once for three readers.

`klikit events` and `klikit doctor --stack` run them; the stack saves the same text as query definitions
(AWS::Logs::QueryDefinition) for people who search from the console. Each query narrows on the server (cost and
speed); the CLI then applies the exact same test to every line it gets back (`LogQuery.matches`), so the answer
does not depend on how much of the query language the other side implements (moto runs none of the filters).

No CDK import: the CLI imports this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from klikit import observability as names

# One query returns at most this many rows (CloudWatch's limit).
MAX_ROWS = 10_000

RECEIVER_STEPS = (names.LOG_ACCEPTED, names.LOG_NOT_ACCEPTED, names.LOG_RECEIVER_FAILED)
PROCESSOR_STEPS = (
    names.LOG_PROCESSED,
    names.LOG_STALE,
    names.LOG_QUARANTINED,
    names.LOG_HANDLER_FAILED,
    names.LOG_UNKNOWN_TYPE,
)
STEP_MESSAGES = RECEIVER_STEPS + PROCESSOR_STEPS

# What a person edits in a saved query before running it.
PLACEHOLDER_EVENT_ID = "PUT-THE-EVENT-ID-HERE"
PLACEHOLDER_ORDER_ID = "PUT-THE-ORDER-ID-HERE"

Record = Mapping[str, Any]


def quoted(value: str) -> str:
    """A Logs Insights string literal (double quotes, backslash escapes)."""
    return json.dumps(value)


def event_id_of(record: Record) -> str | None:
    """The klikit event id of a log line: the receiver's correlation id, the processor's event_id."""
    value = record.get("event_id") or record.get("correlation_id")
    return str(value) if value else None


def order_ids_of(record: Record) -> list[str]:
    ids = record.get("order_ids")
    found = [str(item) for item in ids] if isinstance(ids, list) else []
    if record.get("order_id") not in (None, ""):
        found.append(str(record["order_id"]))
    return found


@dataclass(frozen=True)
class LogQuery:
    """A Logs Insights query and the exact per-line test it stands for."""

    text: str
    matches: Callable[[Record], bool]
    newest_first: bool = False


def _query(filters: Iterable[str], *, newest_first: bool = False, limit: int = MAX_ROWS) -> str:
    lines = ["fields @timestamp, @log, @message", *(f"| filter {condition}" for condition in filters)]
    lines += [f"| sort @timestamp {'desc' if newest_first else 'asc'}", f"| limit {limit}"]
    return "\n".join(lines)


def is_step_failure(record: Record) -> bool:
    """A processor failure outside the handlers: logged at ERROR with the `step` that failed."""
    return bool(record.get("step")) and record.get("level") == "ERROR"


def _is_step(record: Record) -> bool:
    return record.get("message") in STEP_MESSAGES


def _in(values: Iterable[str]) -> str:
    return "[" + ", ".join(quoted(value) for value in values) + "]"


def steps(event_ids: Iterable[str] = (), event_type: str | None = None, *, processor_only: bool = False) -> LogQuery:
    """The step lines of deliveries (every one, or these event ids), optionally of one event type."""
    wanted = tuple(event_ids)
    messages = PROCESSOR_STEPS if processor_only else STEP_MESSAGES
    # processor failures outside the handlers (reading the body, the projection, the archive) carry a `step`
    filters = [f"(message in {_in(messages)} or ispresent(step))"]
    if wanted:
        filters.append(f"(correlation_id in {_in(wanted)} or event_id in {_in(wanted)})")
    if event_type:
        filters.append(f"event_type = {quoted(event_type)}")

    def matches(record: Record) -> bool:
        return (
            (record.get("message") in messages or is_step_failure(record))
            and (not wanted or event_id_of(record) in wanted)
            and (not event_type or record.get("event_type") == event_type)
        )

    return LogQuery(_query(filters), matches)


def mentioning(text: str) -> LogQuery:
    """Processor step lines that mention `text` anywhere (an order id, a branch id): a superset the CLI narrows."""
    filters = [f"message in {_in(PROCESSOR_STEPS)}", f"@message like {quoted(text)}"]

    def matches(record: Record) -> bool:
        return record.get("message") in PROCESSOR_STEPS and text in json.dumps(record, ensure_ascii=False)

    return LogQuery(_query(filters), matches)


def rejections() -> LogQuery:
    """Deliveries the receiver refused, with the reason (doctor groups them)."""
    filters = [f"message = {quoted(names.LOG_NOT_ACCEPTED)}"]
    return LogQuery(_query(filters, newest_first=True), lambda record: record.get("message") == names.LOG_NOT_ACCEPTED)


def last_accepted() -> LogQuery:
    """The newest delivery the receiver accepted and queued (not a duplicate)."""
    filters = [f"message = {quoted(names.LOG_ACCEPTED)}", 'outcome = "received"']

    def matches(record: Record) -> bool:
        return record.get("message") == names.LOG_ACCEPTED and record.get("outcome") == "received"

    return LogQuery(_query(filters, newest_first=True, limit=1), matches, newest_first=True)


# --- the saved queries the stack ships (console users edit the placeholder and run) ----------------------------


def _saved_delivery_path() -> str:
    return steps([PLACEHOLDER_EVENT_ID]).text


def _saved_order() -> str:
    return _query(
        [
            f"message in {_in(STEP_MESSAGES)}",
            f"(order_id = {quoted(PLACEHOLDER_ORDER_ID)} or @message like {quoted(PLACEHOLDER_ORDER_ID)})",
        ]
    )


def _saved_problems() -> str:
    problems = (names.LOG_NOT_ACCEPTED, names.LOG_RECEIVER_FAILED, names.LOG_QUARANTINED, names.LOG_HANDLER_FAILED)
    return _query([f"message in {_in(problems)}"], newest_first=True, limit=500)


def _saved_rejections_by_reason() -> str:
    return "\n".join(
        [
            "fields @timestamp, status, reason",
            f"| filter message = {quoted(names.LOG_NOT_ACCEPTED)}",
            "| stats count(*) as deliveries, max(@timestamp) as latest by status, reason",
            "| sort deliveries desc",
        ]
    )


def _saved_last_accepted() -> str:
    return last_accepted().text


def _saved_outcomes_per_hour() -> str:
    return "\n".join(
        [
            "fields @timestamp, message, outcome",
            f"| filter message in {_in(STEP_MESSAGES)}",
            "| stats count(*) as lines by bin(1h) as hour, message, outcome",
            "| sort hour desc",
        ]
    )


# name (shown in the console under klikit-webhooks/) -> query text
SAVED_QUERIES: dict[str, Callable[[], str]] = {
    "delivery-path-by-event-id": _saved_delivery_path,
    "deliveries-of-an-order": _saved_order,
    "problems-newest-first": _saved_problems,
    "rejections-by-reason": _saved_rejections_by_reason,
    "last-accepted-delivery": _saved_last_accepted,
    "steps-per-hour": _saved_outcomes_per_hour,
}


def saved_queries() -> dict[str, str]:
    return {name: build() for name, build in SAVED_QUERIES.items()}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def searchable(value: str, what: str) -> str:
    """A value the user typed, refused (ValueError naming `what`) when it could not be part of any log line."""
    if not value.strip() or _CONTROL.search(value):
        raise ValueError(f"{what} {value!r} is empty or holds control characters")
    return value
