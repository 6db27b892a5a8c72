"""`klikit events`: every delivery's path through the pipeline, read back from the two functions' logs.

A delivery is the set of step lines that carry its event id: the receiver's (received, duplicate, replayed,
rejected and why, in-flight, unavailable) and the processor's (processed, stale, quarantined, failed, unknown
type). Locally they come from the stack's log files; deployed, from CloudWatch Logs Insights over both log
groups (infra/insights.py holds the queries). Both sources hand the same records to the same code here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from infra import insights
from klikit import observability as names
from klikit.events import KNOWN_EVENT_TYPES
from klikit.formats import iso_z
from tools.target import CliError

OUTCOMES = (
    "received",
    "duplicate",
    "replayed",
    "rejected",
    "in-flight",
    "unavailable",
    "error",
    "processed",
    "stale",
    "quarantined",
    "failed",
    "unknown-type",
)
QUERY_TIMEOUT_SECONDS = 120.0
IDS_PER_QUERY = 50  # event ids per follow-up query: keeps each query string short


class LogRecord(NamedTuple):
    time: datetime
    function: str  # receiver | processor
    record: Mapping[str, Any]


class Step(NamedTuple):
    time: datetime
    function: str
    word: str
    detail: str
    key: str  # the event id, or the request id of a delivery that had none
    event_id: str | None
    event_type: str | None
    order_ids: tuple[str, ...]
    branch_id: str | None
    trace_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "time": iso(self.time),
            "function": self.function,
            "outcome": self.word,
            "detail": self.detail,
            **({"order_ids": list(self.order_ids)} if self.order_ids else {}),
            **({"xray_trace_id": self.trace_id} if self.trace_id else {}),
        }


def iso(moment: datetime) -> str:
    return iso_z(moment)


def short_type(event_type: str | None) -> str:
    return (event_type or "-").removeprefix("klikit.order.")


def event_type_named(name: str) -> str:
    """`created`, `created.v2` or `klikit.order.created.v2` -> the full event type (unknown types as given)."""
    from tools.sender import EVENT_TYPE_ALIASES  # created / status / cart, as `klikit send` names them

    if name in EVENT_TYPE_ALIASES:
        return EVENT_TYPE_ALIASES[name]
    full = f"klikit.order.{name}"
    return full if full in KNOWN_EVENT_TYPES else name


# --- one log line -> one step -----------------------------------------------------------------------------------


def _detail(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(word, detail) for a step line; None for lines that are not steps."""
    message = record.get("message")
    if message == names.LOG_ACCEPTED:
        duplicate = record.get("outcome") == "duplicate"
        if duplicate:
            answer = "already received: acknowledged, not queued again"
        else:
            where = "queued with the body in S3 (claim check)" if record.get("offloaded_to_s3") else "queued"
            answer = f"{int(record.get('body_bytes') or 0):,} bytes, {where}"
        if record.get("replayed"):
            return "replayed", f"sent again by klikit replay: {answer}"
        return ("duplicate" if duplicate else "received"), answer
    if message == names.LOG_NOT_ACCEPTED:
        word = {"in_flight": "in-flight"}.get(str(record.get("outcome")), str(record.get("outcome") or "rejected"))
        replayed = " (a replay)" if record.get("replayed") else ""
        return word, f"{record.get('status', '?')} {record.get('reason') or ''}".strip() + replayed
    if message == names.LOG_RECEIVER_FAILED:
        return "error", f"receiver failed: {record.get('exception_name') or 'unexpected error'} (500)"
    if message == names.LOG_PROCESSED:
        ids = insights.order_ids_of(record)
        return "processed", f"orders {', '.join(ids)}" if ids else "done"
    if message == names.LOG_STALE:
        return "stale", f"order {record.get('order_id', '?')}: the projection already holds newer data"
    if message == names.LOG_QUARANTINED:
        return "quarantined", f"{record.get('reason', '?')}: moved to the DLQ (./klikit dlq list)"
    if message == names.LOG_HANDLER_FAILED:
        error = str(record.get("error_type") or "error")
        if record.get("error_message"):
            error += f": {record['error_message']}"
        order = f" (order {record['order_id']})" if record.get("order_id") else ""
        return "failed", f"{record.get('handler', '?')}{order}: {error}"
    if insights.is_step_failure(record):
        code = f", {record['error_code']}" if record.get("error_code") else ""
        return "failed", f"{record['step']}: {message} ({record.get('error_type', 'error')}{code})"
    if message == names.LOG_UNKNOWN_TYPE:
        return "unknown-type", f"archived; catch-all handlers: {record.get('catch_all_handlers', 0)}"
    return None


def step_of(line: LogRecord) -> Step | None:
    described = _detail(line.record)
    if described is None:
        return None
    word, detail = described
    record = line.record
    event_id = insights.event_id_of(record)
    key = event_id or f"(no event id: request {record.get('function_request_id') or '?'})"
    branch = record.get("branch_id")
    return Step(
        time=line.time,
        function=line.function,
        word=word,
        detail=detail,
        key=key,
        event_id=event_id,
        event_type=str(record["event_type"]) if record.get("event_type") else None,
        order_ids=tuple(insights.order_ids_of(record)),
        branch_id=str(branch) if branch not in (None, "") else None,
        trace_id=str(record["xray_trace_id"]) if record.get("xray_trace_id") else None,
    )


# --- steps -> deliveries ----------------------------------------------------------------------------------------


@dataclass
class Delivery:
    key: str
    event_id: str | None
    steps: list[Step] = field(default_factory=list)

    @property
    def event_type(self) -> str | None:
        return next((step.event_type for step in self.steps if step.event_type), None)

    @property
    def order_ids(self) -> list[str]:
        return list(dict.fromkeys(order for step in self.steps for order in step.order_ids))

    @property
    def branch_id(self) -> str | None:
        return next((step.branch_id for step in self.steps if step.branch_id), None)

    @property
    def outcome(self) -> str:
        return self.steps[-1].word

    def path(self) -> str:
        words: list[list[Any]] = []
        for step in self.steps:
            if words and words[-1][0] == step.word:
                words[-1][1] += 1
            else:
                words.append([step.word, 1])
        return " -> ".join(word if times == 1 else f"{word} x{times}" for word, times in words)

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "first_seen": iso(self.steps[0].time),
            "last_seen": iso(self.steps[-1].time),
            "outcome": self.outcome,
            "path": [step.word for step in self.steps],
            "order_ids": self.order_ids,
            "branch_id": self.branch_id,
            "steps": [step.to_json() for step in self.steps],
        }


def group(steps: Iterable[Step]) -> list[Delivery]:
    """Deliveries in the order they were first seen, each with its steps in time order."""
    deliveries: dict[str, Delivery] = {}
    for step in sorted(steps, key=lambda step: (step.time, step.function != "receiver")):
        deliveries.setdefault(step.key, Delivery(step.key, step.event_id)).steps.append(step)
    for delivery in deliveries.values():
        _admission_first(delivery.steps)
    return list(deliveries.values())


def _admission_first(steps: list[Step]) -> None:
    """The processor acts only on what the receiver admitted, so admission precedes processing, whatever the clocks.

    Two processes stamp their own log lines: a receiver descheduled between its enqueue and its log line can stamp
    `received` after the processor's `processed`.
    """
    admitted = next(
        (i for i, step in enumerate(steps) if step.function == "receiver" and step.word == "received"), None
    )
    first_processing = next((i for i, step in enumerate(steps) if step.function != "receiver"), None)
    if admitted is not None and first_processing is not None and first_processing < admitted:
        steps.insert(first_processing, steps.pop(admitted))


@dataclass(frozen=True)
class Search:
    since: datetime
    until: datetime
    event_id: str | None = None
    order: str | None = None
    event_type: str | None = None  # the full type
    branch: str | None = None
    outcome: str | None = None

    def accepts(self, delivery: Delivery) -> bool:
        return (
            (self.event_id is None or delivery.event_id == self.event_id)
            and (self.order is None or self.order in delivery.order_ids)
            and (self.event_type is None or delivery.event_type == self.event_type)
            and (self.branch is None or delivery.branch_id == self.branch)
            and (self.outcome is None or any(step.word == self.outcome for step in delivery.steps))
        )

    def describe(self) -> str:
        parts = [
            f"event id {self.event_id!r}" if self.event_id else "",
            f"order {self.order}" if self.order else "",
            f"type {self.event_type}" if self.event_type else "",
            f"branch {self.branch}" if self.branch else "",
            f"outcome {self.outcome}" if self.outcome else "",
        ]
        return ", ".join(part for part in parts if part) or "any"


# --- where the lines come from ----------------------------------------------------------------------------------


class LogSource(Protocol):
    description: str

    def run(self, query: insights.LogQuery, since: datetime, until: datetime) -> list[LogRecord]: ...


def _parse(message: str) -> Mapping[str, Any] | None:
    try:
        record = json.loads(message)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


@dataclass
class LocalLogs:
    """The local stack's log files (tools/local/runtime.py writes `<ISO time>\\t<JSON line>`)."""

    directory: Path
    description: str = "the local stack's logs"

    def run(self, query: insights.LogQuery, since: datetime, until: datetime) -> list[LogRecord]:
        from tools.local.logs import read_lines  # the one reader of the local log files

        found = []
        for line in read_lines(self.directory, since=since):
            moment = datetime.fromisoformat(line.timestamp.replace("Z", "+00:00"))
            record = _parse(line.message)
            if moment <= until and record is not None and query.matches(record):
                found.append(LogRecord(moment, line.function, record))
        if query.newest_first:
            found.reverse()
        return found


def _insights_time(value: str) -> datetime:
    """Logs Insights gives `2026-11-30 02:12:31.525` (UTC); moto gives epoch milliseconds."""
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    return datetime.fromisoformat(value.replace(" ", "T")).replace(tzinfo=UTC)


@dataclass
class InsightsLogs:
    """CloudWatch Logs Insights over the deployed functions' log groups (function name -> log group)."""

    client: Any
    groups: Mapping[str, str]
    description: str = "CloudWatch Logs"
    sleep: Callable[[float], None] = time.sleep
    timeout_seconds: float = QUERY_TIMEOUT_SECONDS
    truncated: bool = False

    def _function(self, log: str) -> str:
        group = log.split(":")[-1]  # `@log` is `<account id>:<log group name>`
        by_group = {name: function for function, name in self.groups.items()}
        return by_group.get(group, group)

    def run(self, query: insights.LogQuery, since: datetime, until: datetime) -> list[LogRecord]:
        query_id = self.client.start_query(
            logGroupNames=list(self.groups.values()),
            startTime=int(since.timestamp()),
            endTime=int(until.timestamp()) + 1,
            queryString=query.text,
            limit=insights.MAX_ROWS,
        )["queryId"]
        waited = 0.0
        while True:
            result = self.client.get_query_results(queryId=query_id)
            status = result.get("status")
            if status == "Complete":
                break
            if status in ("Failed", "Cancelled", "Timeout", "Unknown"):
                raise CliError(f"the Logs Insights query ended {status}: try a shorter --since/--until window")
            if waited >= self.timeout_seconds:
                self.client.stop_query(queryId=query_id)
                raise CliError(
                    f"the Logs Insights query did not finish in {self.timeout_seconds:.0f} s: "
                    "narrow the window with --since/--until"
                )
            self.sleep(1.0)
            waited += 1.0
        rows = result.get("results", [])
        self.truncated = self.truncated or len(rows) >= insights.MAX_ROWS
        found = []
        for row in rows:
            fields = {cell.get("field"): cell.get("value", "") for cell in row}
            record = _parse(fields.get("@message", ""))
            if record is not None and query.matches(record) and fields.get("@timestamp"):
                found.append(LogRecord(_insights_time(fields["@timestamp"]), self._function(fields["@log"]), record))
        return found


# --- the search -------------------------------------------------------------------------------------------------


def _chunks(values: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _steps(lines: Iterable[LogRecord]) -> list[Step]:
    return [step for line in lines if (step := step_of(line)) is not None]


def find(source: LogSource, search: Search) -> list[Delivery]:
    """The deliveries that match, oldest first, each with every step in the window."""
    if search.order or search.branch:
        # Receiver lines never name an order or a branch (it does not read the body): find the event ids in
        # the processor's lines first, then every step of those deliveries.
        mentioned = source.run(insights.mentioning(search.order or search.branch or ""), search.since, search.until)
        candidates = group(_steps(mentioned))
        narrowed = Search(search.since, search.until, order=search.order, branch=search.branch)
        ids = sorted({d.event_id for d in candidates if d.event_id and narrowed.accepts(d)})
        if search.event_id is not None:
            ids = [event_id for event_id in ids if event_id == search.event_id]
        lines: list[LogRecord] = []
        for chunk in _chunks(ids, IDS_PER_QUERY):
            lines += source.run(insights.steps(chunk, search.event_type), search.since, search.until)
    else:
        wanted = [search.event_id] if search.event_id else []
        lines = source.run(insights.steps(wanted, search.event_type), search.since, search.until)
    return [delivery for delivery in group(_steps(lines)) if search.accepts(delivery)]


# --- output -----------------------------------------------------------------------------------------------------

HEADER = ("FIRST SEEN (UTC)", "EVENT ID", "TYPE", "ORDERS", "BRANCH", "PATH")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def table(deliveries: Sequence[Delivery], with_steps: bool) -> list[str]:
    rows = [
        (
            first_seen(delivery),
            _clip(delivery.event_id or delivery.key, 40),
            short_type(delivery.event_type),
            _clip(",".join(delivery.order_ids) or "-", 24),
            delivery.branch_id or "-",
            delivery.path(),
        )
        for delivery in deliveries
    ]
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER) - 1)]
    lines = []
    for index, row in enumerate([HEADER, *rows]):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
        if with_steps and index > 0:
            for step in deliveries[index - 1].steps:
                clock = step.time.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
                lines.append(f"    {clock}  {step.function:<9}  {step.word:<12}  {step.detail}")
    return lines


def first_seen(delivery: Delivery) -> str:
    return delivery.steps[0].time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def as_json(deliveries: Sequence[Delivery]) -> str:
    return json.dumps([delivery.to_json() for delivery in deliveries], indent=2, ensure_ascii=False)
