"""The local stack's log source for `klikit logs`: the functions' log files in its state directory.

Each line is `<ISO time>\t<what the function wrote>` (tools/local/runtime.py), the local counterpart of a
CloudWatch event's timestamp and message. The files outlive the stack, so you can read them after Ctrl-C.
"""

from __future__ import annotations

import heapq
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from klikit.formats import iso_z
from tools.local.state import FUNCTIONS, log_file

POLL_SECONDS = 0.3


@dataclass(frozen=True, order=True)
class LogLine:
    timestamp: str  # ISO-8601 UTC, sorts as text
    function: str
    message: str

    def render(self) -> str:
        return f"{self.timestamp} {self.function:<9} {self.message}"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30s`, `10m`, `2h`, `1d`, or an ISO-8601 time (UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now - timedelta(**{unit: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (examples: 30s, 10m, 2h, 1d, 2026-06-25T09:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return iso_z(moment)


def _parse(function: str, raw: str) -> LogLine | None:
    timestamp, tab, message = raw.rstrip("\n").partition("\t")
    return LogLine(timestamp, function, message) if tab else None


def _matches(line: LogLine, since: str | None, pattern: str | None) -> bool:
    return (since is None or line.timestamp >= since) and (pattern is None or pattern in line.message)


def read_lines(
    directory: Path, functions: tuple[str, ...] = FUNCTIONS, since: datetime | None = None, pattern: str | None = None
) -> list[LogLine]:
    """What the functions logged, oldest first, across both files."""
    since_iso = _iso(since) if since else None
    streams: list[list[LogLine]] = []
    for function in functions:
        path = log_file(directory, function)
        if not path.exists():
            continue
        with path.open(encoding="utf-8", errors="replace") as handle:
            parsed = (_parse(function, raw) for raw in handle)
            streams.append([line for line in parsed if line and _matches(line, since_iso, pattern)])
    return list(heapq.merge(*streams))


def follow_lines(
    directory: Path,
    functions: tuple[str, ...] = FUNCTIONS,
    since: datetime | None = None,
    pattern: str | None = None,
    stop: threading.Event | None = None,
) -> Iterator[LogLine]:
    """The lines already there, then new lines as the functions write them, until `stop` is set."""
    stop = stop or threading.Event()
    since_iso = _iso(since) if since else None
    offsets: dict[str, int] = {}
    partial: dict[str, str] = {}
    while not stop.is_set():
        batch: list[LogLine] = []
        for function in functions:
            path = log_file(directory, function)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offsets.get(function, 0):  # a new stack on this port started the file again
                offsets[function], partial[function] = 0, ""
            with path.open(encoding="utf-8", errors="replace") as handle:
                handle.seek(offsets.get(function, 0))
                text = partial.get(function, "") + handle.read()
                offsets[function] = handle.tell()
            *complete, partial[function] = text.split("\n")
            parsed = (_parse(function, raw) for raw in complete)
            batch.extend(line for line in parsed if line and _matches(line, since_iso, pattern))
        yield from sorted(batch)
        stop.wait(POLL_SECONDS)


def tail(
    directory: Path,
    write: Callable[[str], None],
    functions: tuple[str, ...] = FUNCTIONS,
    since: datetime | None = None,
    pattern: str | None = None,
    follow: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """Print the matching lines (and, with `follow`, new ones until `stop` or Ctrl-C); the number printed."""
    count = 0
    lines = (
        follow_lines(directory, functions, since, pattern, stop)
        if follow
        else iter(read_lines(directory, functions, since, pattern))
    )
    try:
        for line in lines:
            write(line.render())
            count += 1
    except KeyboardInterrupt:
        pass
    return count


__all__ = ["LogLine", "follow_lines", "parse_since", "read_lines", "tail"]
