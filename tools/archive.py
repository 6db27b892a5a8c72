"""Finding an archived delivery by its event id: the archive is laid out by day received, newest first.

The processor archives each delivery at `archive/<YYYY-MM-DD received, UTC>/<token>` (klikit.delivery.archive_key).
An operator knows the event id, not always the day: look it up one HeadObject per day, from tomorrow (clock skew)
back to the oldest day the archive keeps. Deliveries archived before this
layout sit at `archive/<quoted id>`; that key is tried last.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote

from botocore.exceptions import ClientError

from klikit.delivery import ARCHIVE_PREFIX, archive_key

MISSING = {"404", "NoSuchKey", "NotFound"}


class Archived(NamedTuple):
    key: str
    body: bytes
    metadata: dict[str, str]


def candidate_keys(event_id: str, today: date, oldest: date) -> list[str]:
    """Every key the delivery `event_id` may be archived under, newest day first."""
    keys = []
    day = today + timedelta(days=1)
    while day >= oldest:
        keys.append(archive_key(event_id, day))
        day -= timedelta(days=1)
    keys.append(f"{ARCHIVE_PREFIX}{quote(event_id, safe='')}")  # the layout before days (kept until it expires)
    return keys


def find_archived(s3: Any, bucket: str, event_id: str, today: date, oldest: date) -> Archived | None:
    """The archived delivery `event_id`, received between `oldest` and `today`, or None."""
    for key in candidate_keys(event_id, today, oldest):
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in MISSING:
                continue
            raise
        found = s3.get_object(Bucket=bucket, Key=key)
        return Archived(key, found["Body"].read(), dict(found.get("Metadata") or {}))
    return None
