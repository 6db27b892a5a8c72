"""Tail the deployed functions' CloudWatch logs, like `aws logs tail` (the AWS CLI here is v1, which has no tail).

`./klikit logs --stack NAME [--function receiver|processor|all] [--since 10m] [--filter TEXT] [--follow]` calls
`tail()` with the log groups named in the stack's outputs. Lines from several groups are merged in time order and
labelled with the function they came from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from klikit.formats import iso_z

DEFAULT_SINCE = timedelta(minutes=10)
POLL_SECONDS = 2.0


def label_for(group: str) -> str:
    """receiver/processor for the stack's generated log group names, else the group name itself."""
    lowered = group.lower()
    for function in ("receiver", "processor"):
        if function in lowered:
            return function
    return group


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def format_event(label: str, timestamp_ms: int, message: str) -> str:
    return f"{iso_z(datetime.fromtimestamp(timestamp_ms / 1000, UTC))} {label} {message.rstrip()}"


def _fetch(client: Any, group: str, start_ms: int, filter_pattern: str | None) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
    if filter_pattern:
        kwargs["filterPattern"] = filter_pattern
    events: list[dict[str, Any]] = []
    for page in client.get_paginator("filter_log_events").paginate(**kwargs):
        events.extend(page.get("events", []))
    return events


class _Cursor:
    """Where one group's next poll starts, and the events already printed at that millisecond (polls overlap)."""

    def __init__(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self.printed_at_start: set[str] = set()

    def take(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = [e for e in events if e["eventId"] not in self.printed_at_start]
        if fresh:
            newest = max(e["timestamp"] for e in fresh)
            if newest > self.start_ms:
                self.start_ms, self.printed_at_start = newest, set()
            self.printed_at_start |= {e["eventId"] for e in fresh if e["timestamp"] == newest}
        return fresh


def tail(
    groups: Sequence[str] | Mapping[str, str],
    *,
    region: str | None = None,
    since: datetime | None = None,
    filter_pattern: str | None = None,
    follow: bool = False,
    client: Any = None,
    out: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = POLL_SECONDS,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Print the groups' events since `since` (default 10 minutes ago), merged by time; with `follow`, keep polling
    until Ctrl-C. `groups` is a list of log group names, or function label -> group name. Returns the exit code."""
    if client is None:
        import boto3

        client = boto3.client("logs", region_name=region)
    write = out or (lambda line: print(line, flush=True))
    labelled = dict(groups) if isinstance(groups, Mapping) else {label_for(group): group for group in groups}
    start_ms = _millis(since or now() - DEFAULT_SINCE)
    cursors = {group: _Cursor(start_ms) for group in labelled.values()}
    printed = 0
    try:
        while True:
            batch: list[tuple[int, str, str]] = []
            for label, group in labelled.items():
                cursor = cursors[group]
                for event in cursor.take(_fetch(client, group, cursor.start_ms, filter_pattern)):
                    batch.append((event["timestamp"], label, event["message"]))
            for timestamp, label, message in sorted(batch):
                write(format_event(label, timestamp, message))
            printed += len(batch)
            if not follow:
                break
            sleep(poll_seconds)
    except KeyboardInterrupt:  # the way to end --follow
        pass
    if printed == 0 and not follow:
        matching = f" matching {filter_pattern!r}" if filter_pattern else ""
        write(f"(no log events{matching} in {', '.join(labelled.values())} since the start time)")
    return 0
