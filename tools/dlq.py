"""The dead-letter queue: what is in it and why, and moving it back to the main queue after a fix.

A redrive is receive / send / delete (moto has no StartMessageMoveTask, and the quarantine attributes must go):
each message goes back with its body and its delivery attributes, without `quarantine_reason` and
`quarantine_detail`, and leaves the DLQ only once the main queue has it.

A run moves each delivery at most once. A poison delivery redriven before its cause is fixed is quarantined again
by the processor, under a new message id, while the run is still reading the DLQ: the run remembers what it moved
(event id and body SHA-256) and stops when one comes back, and it never moves more than the DLQ held when it began.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from klikit.delivery import (
    BODY_S3_URI,
    BODY_SHA256,
    EVENT_ID,
    EVENT_TYPE,
    QUARANTINE_DETAIL,
    QUARANTINE_REASON,
    RECEIVED_AT,
    attribute_value,
    send_attributes,
)

if TYPE_CHECKING:  # boto3-stubs' types, for mypy only
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

HIDE_SECONDS = 30  # how long a listed message stays hidden while we read the rest of the queue
WAIT_SECONDS = 1  # a short long-poll: SQS's short polls sample servers and can answer empty while messages wait
BATCH = 10
DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, MessageAttributeValueTypeDef]  # as SendMessage takes them
    receive_count: int
    sent_at_ms: int

    def attribute(self, name: str) -> str | None:
        return attribute_value(self.attributes, name)

    @property
    def reason(self) -> str:
        """Why it is here: the processor's quarantine reason, else the queue's receive limit."""
        reason = self.attribute(QUARANTINE_REASON)
        if reason:
            detail = self.attribute(QUARANTINE_DETAIL)
            return f"quarantined: {reason}" + (f" ({detail})" if detail and detail != "-" else "")
        event_id = self.attribute(EVENT_ID) or self.message_id
        return f"failed every attempt (receive limit reached): see ./klikit logs --filter {event_id}"

    def summary(self) -> dict[str, Any]:
        return {
            "event_id": self.attribute(EVENT_ID),
            "event_type": self.attribute(EVENT_TYPE),
            "received_at": self.attribute(RECEIVED_AT),
            "reason": self.attribute(QUARANTINE_REASON) or "receive_limit",
            "detail": self.attribute(QUARANTINE_DETAIL),
            "claim_check": self.attribute(BODY_S3_URI),
            "body_chars": len(self.body),
            "message_id": self.message_id,
        }

    @property
    def delivery(self) -> str:
        """What stays the same when the processor quarantines the delivery again: its event id and body hash."""
        body_sha256 = self.attribute(BODY_SHA256) or hashlib.sha256(self.body.encode("utf-8")).hexdigest()
        return f"{self.attribute(EVENT_ID) or ''}|{body_sha256}"

    def redrive_attributes(self) -> dict[str, MessageAttributeValueTypeDef]:
        return {
            name: value for name, value in self.attributes.items() if name not in (QUARANTINE_REASON, QUARANTINE_DETAIL)
        }


def _dead_letter(message: dict[str, Any]) -> DeadLetter:
    system = message.get("Attributes") or {}
    return DeadLetter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message.get("Body", ""),
        attributes=send_attributes(message.get("MessageAttributes") or {}),
        receive_count=int(system.get("ApproximateReceiveCount", "0")),
        sent_at_ms=int(system.get("SentTimestamp", "0")),
    )


def _receive(sqs: Any, dlq_url: str, count: int, wait_seconds: int) -> list[DeadLetter]:
    messages = sqs.receive_message(
        QueueUrl=dlq_url,
        MaxNumberOfMessages=min(BATCH, count),
        WaitTimeSeconds=wait_seconds,
        VisibilityTimeout=HIDE_SECONDS,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return [_dead_letter(message) for message in messages]


def _release(sqs: Any, dlq_url: str, letters: list[DeadLetter]) -> None:
    """Make messages we only looked at visible again."""
    for start in range(0, len(letters), BATCH):
        chunk = letters[start : start + BATCH]
        sqs.change_message_visibility_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
                for i, letter in enumerate(chunk)
            ],
        )


def depth(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def list_dead_letters(
    sqs: Any, dlq_url: str, limit: int = DEFAULT_LIMIT, wait_seconds: int = WAIT_SECONDS
) -> list[DeadLetter]:
    """Every message in the DLQ (up to `limit`), left in place."""
    seen: dict[str, DeadLetter] = {}
    try:
        while len(seen) < limit:
            batch = _receive(sqs, dlq_url, limit - len(seen), wait_seconds)
            fresh = [letter for letter in batch if letter.message_id not in seen]
            if not fresh:
                break
            seen.update((letter.message_id, letter) for letter in fresh)
    finally:
        _release(sqs, dlq_url, list(seen.values()))
    return sorted(seen.values(), key=lambda letter: letter.sent_at_ms)


class Redriven(NamedTuple):
    moved: int
    came_back: int  # deliveries this run had moved that were quarantined again before it ended


def redrive(
    sqs: Any,
    dlq_url: str,
    queue_url: str,
    event_ids: set[str] | None = None,
    limit: int = DEFAULT_LIMIT,
    progress: Callable[[int], None] | None = None,
    wait_seconds: int = WAIT_SECONDS,
) -> Redriven:
    """Move DLQ messages (all, or those of `event_ids`) back to the main queue, each delivery at most once."""
    budget = min(limit, depth(sqs, dlq_url))  # what the DLQ held when the run began: never more
    moved: set[str] = set()
    came_back: set[str] = set()
    skipped: dict[str, DeadLetter] = {}
    try:
        while len(moved) < budget and not came_back:
            received = _receive(sqs, dlq_url, budget - len(moved), wait_seconds)
            batch = [letter for letter in received if letter.message_id not in skipped]
            if not batch:
                break
            for index, letter in enumerate(batch):
                if letter.delivery in moved or len(moved) >= budget:
                    if letter.delivery in moved:
                        came_back.add(letter.delivery)  # quarantined again: it stays in the DLQ and the run stops
                    skipped.update((later.message_id, later) for later in batch[index:])
                    break
                if event_ids is not None and letter.attribute(EVENT_ID) not in event_ids:
                    skipped[letter.message_id] = letter
                    continue
                sqs.send_message(
                    QueueUrl=queue_url,
                    MessageBody=letter.body,
                    MessageAttributes=letter.redrive_attributes(),
                )
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
                moved.add(letter.delivery)
                if progress is not None:
                    progress(len(moved))
    finally:
        _release(sqs, dlq_url, list(skipped.values()))
    return Redriven(len(moved), len(came_back))
