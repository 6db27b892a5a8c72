"""Finding an archived delivery by its event id, newest day first, by key names alone (no index to keep).

The processor archives each batch in one object per received minute whose name carries a short hash of every event
id in it (klikit.archive): the lookup lists each day's keys, from tomorrow (clock skew) back to the oldest day the
archive keeps, reads only the objects whose names carry the id's hash, and checks the id inside. Deliveries
archived before batch objects sit one per key at `archive/<day>/<token>` (found in the same listing) or, older
still, at `archive/<quoted id>` (tried last). A listing returns up to 1,000 keys: a day of 10 deliveries a second
in batches of 10 is ~86 list requests, ~$0.0004, read only when an operator replays.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote

from botocore.exceptions import ClientError

from klikit import archive
from klikit.delivery import ARCHIVE_PREFIX, archive_key
from tools.replay import metadata_text

MISSING = {"404", "NoSuchKey", "NotFound"}


class Archived(NamedTuple):
    key: str
    body: bytes
    event_type: str | None
    received_at: str | None


def days_newest_first(today: date, oldest: date) -> list[date]:
    """The days the delivery may have been received on, from tomorrow (a clock a little ahead) back to `oldest`."""
    days = []
    day = today + timedelta(days=1)
    while day >= oldest:
        days.append(day)
        day -= timedelta(days=1)
    return days


def find_archived(s3: Any, bucket: str, event_id: str, today: date, oldest: date) -> Archived | None:
    """The archived delivery `event_id`, received between `oldest` and `today`, or None."""
    for day in days_newest_first(today, oldest):
        single = archive_key(event_id, day)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{ARCHIVE_PREFIX}{day}/"):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key == single:
                    return _single(s3, bucket, key)
                batch = archive.parse_batch_key(key)
                if batch is not None and batch.may_hold(event_id):
                    found = _in_batch(s3, bucket, key, event_id)
                    if found is not None:
                        return found
    flat = f"{ARCHIVE_PREFIX}{quote(event_id, safe='')}"  # the layout before day folders (kept until it expires)
    try:
        return _single(s3, bucket, flat)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in MISSING:
            return None
        raise


def _single(s3: Any, bucket: str, key: str) -> Archived:
    found = s3.get_object(Bucket=bucket, Key=key)
    metadata = dict(found.get("Metadata") or {})
    return Archived(key, found["Body"].read(), metadata_text(metadata, "event-type"), metadata.get("received-at"))


def _in_batch(s3: Any, bucket: str, key: str, event_id: str) -> Archived | None:
    records = archive.decode(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    for record in records:
        if record.event_id == event_id:
            return Archived(key, record.body, record.event_type, record.received_at)
    return None  # another id with the same short hash
