"""The raw archive of one processor batch: every delivery whose signed bytes were read, written once per batch.

Records are collected as the batch runs (after their effects, whether the effects succeeded or not, so a record on
its way to the DLQ is archived too) and written at the end, one object per received minute (klikit.archive). A
write that fails fails exactly the records in that object: SQS retries them (their effects are not repeated) and
after enough tries moves them to the DLQ, which alarms. Nothing signed leaves the pipeline unarchived unseen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from klikit import archive
from klikit.archive import ArchiveRecord
from klikit.delivery import QueuedDelivery
from processor.ports import Payloads


class Unarchived(NamedTuple):
    """Records whose archive object could not be written: they must fail so SQS delivers them again."""

    message_ids: list[str]
    event_ids: list[str]
    event_types: list[str]
    error: Exception


class BatchArchive:
    """The deliveries of one batch, waiting to be archived together."""

    def __init__(self) -> None:
        self._records: list[ArchiveRecord] = []
        self._message_ids: dict[int, str] = {}  # id() of each record -> its SQS message id

    def add(self, message_id: str, queued: QueuedDelivery, body: bytes) -> None:
        record = ArchiveRecord(
            queued.event_id, queued.event_type, queued.received_at, queued.body_sha256, queued.source, body
        )
        self._records.append(record)
        self._message_ids[id(record)] = message_id

    def write(self, store: Payloads, failed: Callable[[Unarchived], None]) -> None:
        """One object per received minute; `failed` hears of each object that could not be written."""
        message_ids, records = self._message_ids, self._records
        self._records, self._message_ids = [], {}
        for group in archive.group_by_minute(records):
            try:
                store.put_archive(archive.batch_key(group), archive.encode(group))
            except Exception as exc:  # noqa: BLE001 - whatever went wrong, these records fail and are retried
                ids = [message_ids[id(record)] for record in group]
                failed(Unarchived(ids, [r.event_id for r in group], [r.event_type for r in group], exc))


def with_failures(response: Mapping[str, Any], message_ids: list[str]) -> dict[str, Any]:
    """The batch's partial response with the unarchived records added to its failures (each once)."""
    failures = list(response.get("batchItemFailures", []))
    reported = set(failed_message_ids(response))
    new = [message_id for message_id in dict.fromkeys(message_ids) if message_id not in reported]
    return {**response, "batchItemFailures": failures + [{"itemIdentifier": message_id} for message_id in new]}


def failed_message_ids(response: Mapping[str, Any]) -> list[str]:
    """The message ids a partial batch response reports as failed."""
    return [str(failure["itemIdentifier"]) for failure in response.get("batchItemFailures", [])]
