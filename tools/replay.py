"""`klikit replay --since T --until T`: send every archived delivery of a time window through the front door again.

The processor archives each batch in one object per received minute, `archive/<YYYY-MM-DD>/<HHMM>/<first
second>-<last second>_<id hashes>.jsonl.gz` (klikit/archive.py), so a window is a few day prefixes listed, the
objects whose span overlaps it read, and their deliveries filtered on received-at. Deliveries archived before batch
objects (one object each under `archive/<day>/<token>`, or `archive/<id>` before day folders) are read from their
metadata until they expire. A delivery archived twice (a record retried alone) is replayed once.
Each delivery is signed again with the stack's secret and POSTed at
`--rate` per second. Progress is written after every send to a file named for the run, so Ctrl-C and the same
command again resumes where it stopped; a finished run removes its file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from klikit import archive
from klikit.delivery import ARCHIVE_PREFIX, received_moment
from klikit.headers import MAX_EVENT_ID_LENGTH

REPLAY_MARK = "-replay-"


@dataclass(frozen=True)
class Archived:
    key: str  # names this delivery in a run's progress file: the object's key, `#` and the event id for a batch's
    event_id: str
    event_type: str
    received_at: datetime
    size: int
    object_key: str  # the S3 object that holds its bytes


def day_prefixes(since: datetime, until: datetime) -> list[str]:
    """`archive/YYYY-MM-DD/` for every UTC day the window touches."""
    day, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    prefixes = []
    while day <= last:
        prefixes.append(f"{ARCHIVE_PREFIX}{day.isoformat()}/")
        day += timedelta(days=1)
    return prefixes


def _received_at(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def metadata_text(metadata: dict[str, str], name: str) -> str | None:
    """A text the processor stored percent-quoted, or base64 (`<name>-base64`) when quoting made it too big for S3."""
    if metadata.get(name):
        return unquote(metadata[name])
    if metadata.get(f"{name}-base64"):
        try:
            return base64.urlsafe_b64decode(metadata[f"{name}-base64"]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def _event_id(key: str, metadata: dict[str, str]) -> str | None:
    stored = metadata_text(metadata, "event-id")
    if stored:
        return stored
    token = key.rsplit("/", 1)[-1]
    return None if token.startswith("sha256-") else unquote(token)


def is_replay(event_id: str) -> bool:
    """An event id `klikit replay --as-new` made: replaying it again would replay a replay."""
    _, mark, tail = event_id.rpartition(REPLAY_MARK)
    return bool(mark) and len(tail) == 8 and all(c in "0123456789abcdef" for c in tail)


def replay_id(event_id: str) -> str:
    """The new event id a window replay gives a delivery: the same for every run, so a second run is a duplicate."""
    suffix = REPLAY_MARK + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:8]
    return event_id[: MAX_EVENT_ID_LENGTH - len(suffix)] + suffix


@dataclass
class Listing:
    deliveries: list[Archived] = field(default_factory=list)
    skipped_replays: int = 0
    unreadable: int = 0


def list_window(s3: Any, bucket: str, since: datetime, until: datetime, event_type: str | None = None) -> Listing:
    """The archived deliveries received in [since, until), oldest first, each event id once."""
    listing = Listing()
    found: list[Archived] = []
    # The day folders of the window, then the keys archived before there were day folders (`archive/<id>`).
    places = [{"Prefix": prefix} for prefix in day_prefixes(since, until)]
    places.append({"Prefix": ARCHIVE_PREFIX, "Delimiter": "/"})
    for place in places:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **place):
            for item in page.get("Contents", []):
                batch = archive.parse_batch_key(item["Key"])
                if batch is None:
                    found += _single(s3, bucket, item, listing)
                elif batch.overlaps(since, until):
                    found += _batch(s3, bucket, item["Key"])
    seen: set[str] = set()
    for delivery in sorted(found, key=lambda archived: (archived.received_at, archived.key)):
        if not since <= delivery.received_at < until or (event_type and delivery.event_type != event_type):
            continue
        if delivery.event_id in seen:
            continue  # archived again by a retry: the same delivery
        seen.add(delivery.event_id)
        if is_replay(delivery.event_id):
            listing.skipped_replays += 1
            continue
        listing.deliveries.append(delivery)
    return listing


def _single(s3: Any, bucket: str, item: dict[str, Any], listing: Listing) -> list[Archived]:
    """A delivery archived in an object of its own (before batch objects), read from the object's metadata."""
    metadata = s3.head_object(Bucket=bucket, Key=item["Key"]).get("Metadata") or {}
    received = _received_at(metadata.get("received-at", ""))
    event_id = _event_id(item["Key"], metadata)
    if received is None or event_id is None:
        listing.unreadable += 1
        return []
    kind = metadata_text(metadata, "event-type") or ""
    return [Archived(item["Key"], event_id, kind, received, int(item.get("Size", 0)), item["Key"])]


def _batch(s3: Any, bucket: str, key: str) -> list[Archived]:
    records = archive.decode(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return [
        Archived(
            f"{key}#{quote(record.event_id, safe='')}",
            record.event_id,
            record.event_type,
            received_moment(record.received_at),
            len(record.body),
            key,
        )
        for record in records
    ]


class Bodies:
    """The bytes of listed deliveries, reading each batch object once while its deliveries come up (oldest first)."""

    CACHED_OBJECTS = 16  # concurrent processor instances interleave their batches by a few objects at most

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._objects: dict[str, dict[str, bytes]] = {}

    def body(self, delivery: Archived) -> bytes:
        if delivery.key == delivery.object_key:
            return bytes(self._s3.get_object(Bucket=self._bucket, Key=delivery.key)["Body"].read())
        if delivery.object_key not in self._objects:
            if len(self._objects) >= self.CACHED_OBJECTS:
                self._objects.pop(next(iter(self._objects)))
            data = self._s3.get_object(Bucket=self._bucket, Key=delivery.object_key)["Body"].read()
            self._objects[delivery.object_key] = {r.event_id: r.body for r in archive.decode(data)}
        return self._objects[delivery.object_key][delivery.event_id]


def branch_of(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    branch = document.get("branch_id") if isinstance(document, dict) else None
    return None if branch is None else str(branch)


class Progress:
    """What a run has sent, one JSON line per delivery, so an interrupted run resumes instead of starting over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by the interruption: that delivery is sent again
                self.done[entry["key"]] = entry["result"]

    def record(self, key: str, result: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "result": result}) + "\n")
        self.done[key] = result

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def progress_file(directory: Path, *parts: str) -> Path:
    """One file per run: the stack, the window and the filters name it."""
    digest = hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]
    return directory / f"replay-{digest}.jsonl"


class Pacer:
    """At most `rate` sends per second, on a schedule (a slow send does not make the next one wait longer)."""

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ):
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None

    def wait(self) -> None:
        now = self._clock()
        if self._next is not None and now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


@dataclass
class Summary:
    sent: int = 0
    duplicate: int = 0
    failed: int = 0
    skipped: int = 0  # other branch, or already sent by the interrupted run

    def count(self, result: str) -> None:
        setattr(self, result, getattr(self, result) + 1)


def outcome_of(status: int | None, reply: Any) -> str:
    """sent / duplicate / failed, from the receiver's reply (None: nothing answered)."""
    if status == 200 and isinstance(reply, dict) and reply.get("status") == "duplicate-ignored":
        return "duplicate"
    if status is not None and 200 <= status < 300:
        return "sent"
    return "failed"
