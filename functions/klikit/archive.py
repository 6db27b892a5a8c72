"""The raw delivery archive's contract: where the processor writes each batch, and what one archive object holds.

The processor archives a batch's deliveries together, one object per UTC minute they were received in:

    archive/<YYYY-MM-DD>/<HHMM>/<first second>-<last second>_<id hash>.<id hash>...<id hash>.jsonl.gz

- the day and minute are the deliveries' `received_at` (the receiver's clock, carried on the queue message), so
  a retried, redriven or replayed-late record lands where its window says, whenever it is processed;
- the two seconds bound the received times inside the minute (a window replay reads only the objects it overlaps);
- each id hash is the first 8 hex digits of the SHA-256 of an event id (sorted, distinct): `klikit replay <id>`
  finds a delivery by listing key names, without any index write. A hash can collide; the reader checks the id.
- the object is gzip'd JSON lines, one per delivery: `event_id`, `event_type`, `received_at`, `body_sha256`,
  `source`, and the exact bytes klikit signed as `body` (the UTF-8 text) or `body_base64` (any other bytes).

The same batch archived twice (a retry of the whole batch) has the same key, so the second write changes nothing;
a record retried alone lands again in another object, so readers keep one copy per event id.
Deliveries archived before this layout sit at `archive/<day>/<token>` (klikit.delivery.archive_key), one object
each with their metadata alongside, until the bucket's lifecycle expires them.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from klikit.delivery import ARCHIVE_PREFIX, KLIKIT, received_moment

ID_HASH_HEX = 8
BATCH_SUFFIX = ".jsonl.gz"
# 64 hashes of 9 characters and the rest of the key stay well under S3's 1,024-byte key limit
MAX_DELIVERIES_PER_OBJECT = 64


def id_hash(event_id: str) -> str:
    """The event id's short hash as it appears in archive object names."""
    return hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:ID_HASH_HEX]


class ArchiveRecord(NamedTuple):
    """One archived delivery: the bytes klikit signed and what the queue message said about them."""

    event_id: str
    event_type: str
    received_at: str
    body_sha256: str
    source: str
    body: bytes


class BatchObject(NamedTuple):
    """What an archive object's key says: the minute, the span of received seconds in it, and its id hashes."""

    minute: datetime
    first_second: int
    last_second: int
    id_hashes: frozenset[str]

    @property
    def start(self) -> datetime:
        return self.minute + timedelta(seconds=self.first_second)

    @property
    def end(self) -> datetime:
        """Just after the last delivery in it (received times have milliseconds; the name keeps seconds)."""
        return self.minute + timedelta(seconds=self.last_second + 1)

    def may_hold(self, event_id: str) -> bool:
        return id_hash(event_id) in self.id_hashes

    def overlaps(self, since: datetime, until: datetime) -> bool:
        return self.start < until and self.end > since


def minute_prefix(day: date, hour: int, minute: int) -> str:
    return f"{ARCHIVE_PREFIX}{day.isoformat()}/{hour:02d}{minute:02d}/"


def batch_key(records: Iterable[ArchiveRecord]) -> str:
    """The key of one archive object; its records must share a received minute (see `group_by_minute`)."""
    moments = [received_moment(record.received_at) for record in records]
    hashes = sorted({id_hash(record.event_id) for record in records})
    first = min(moments)
    seconds = sorted(moment.second for moment in moments)
    return (
        f"{minute_prefix(first.date(), first.hour, first.minute)}"
        f"{seconds[0]:02d}-{seconds[-1]:02d}_{'.'.join(hashes)}{BATCH_SUFFIX}"
    )


def parse_batch_key(key: str) -> BatchObject | None:
    """What a batch object's key says, or None for any other key (the per-delivery layout, a stray object)."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] + "/" != ARCHIVE_PREFIX or not parts[3].endswith(BATCH_SUFFIX):
        return None
    try:
        day = date.fromisoformat(parts[1])
        hour, minute = int(parts[2][:2]), int(parts[2][2:])
        span, hashes = parts[3].removesuffix(BATCH_SUFFIX).split("_", 1)
        first, last = (int(second) for second in span.split("-"))
        moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
    except ValueError:
        return None
    return BatchObject(moment, first, last, frozenset(hashes.split(".")))


def group_by_minute(records: Iterable[ArchiveRecord]) -> list[list[ArchiveRecord]]:
    """The records in archive objects: one per received minute, at most MAX_DELIVERIES_PER_OBJECT each."""
    minutes: dict[datetime, list[ArchiveRecord]] = {}
    for record in records:
        minute = received_moment(record.received_at).replace(second=0, microsecond=0)
        minutes.setdefault(minute, []).append(record)
    groups = []
    for minute in sorted(minutes):
        members = sorted(minutes[minute], key=lambda record: (received_moment(record.received_at), record.event_id))
        groups += [
            members[start : start + MAX_DELIVERIES_PER_OBJECT]
            for start in range(0, len(members), MAX_DELIVERIES_PER_OBJECT)
        ]
    return groups


def encode(records: Iterable[ArchiveRecord]) -> bytes:
    """The archive object's bytes: gzip'd JSON lines (mtime 0, so the same batch always makes the same bytes)."""
    lines = []
    for record in records:
        line = {
            "event_id": record.event_id,
            "event_type": record.event_type,
            "received_at": record.received_at,
            "body_sha256": record.body_sha256,
            "source": record.source,
        }
        try:
            line["body"] = record.body.decode("utf-8")
        except UnicodeDecodeError:
            line["body_base64"] = base64.b64encode(record.body).decode("ascii")
        lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0)


def decode(data: bytes) -> list[ArchiveRecord]:
    """The records of an archive object, each body checked against its SHA-256 (ValueError if one does not match)."""
    records = []
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        if not line:
            continue
        fields = json.loads(line)
        text = fields.get("body")
        body = text.encode("utf-8") if text is not None else base64.b64decode(fields["body_base64"], validate=True)
        if hashlib.sha256(body).hexdigest() != fields["body_sha256"]:
            raise ValueError(f"archived body of {fields['event_id']!r} does not match its SHA-256")
        records.append(
            ArchiveRecord(
                fields["event_id"],
                fields["event_type"],
                fields["received_at"],
                fields["body_sha256"],
                fields.get("source", KLIKIT),
                body,
            )
        )
    return records
