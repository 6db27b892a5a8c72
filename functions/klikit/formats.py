"""The project's two small wire rules, written once: UTC timestamps in ISO-8601 with "Z", and numbers to JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

TimeSpec = Literal["seconds", "milliseconds", "microseconds", "auto"]


def iso_z(moment: datetime | None = None, timespec: TimeSpec = "milliseconds") -> str:
    """`moment` (now when None; a naive one is taken as UTC) as `2026-06-25T09:30:00.000Z`."""
    moment = datetime.now(UTC) if moment is None else moment
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)` for what parsing klikit's JSON with Decimal (and DynamoDB) gives back.

    A Decimal becomes the JSON number it was read from: an integer stays an integer, `12.50` becomes 12.5
    (float() of a JSON number's text gives back that number). A set (DynamoDB's string set) becomes a sorted list.
    """
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
