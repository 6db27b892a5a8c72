"""The local SQS event source: pollers long-poll the queue and invoke processor instances with Lambda's SQS event.

Like Lambda's event source mapping with ReportBatchItemFailures and a maximum concurrency: up to that many batches
are in flight at once, each in one processor instance (its own process, tools/local/instances.py). The pollers
scale with the backlog, as Lambda's do: one polls all the time; a poll that returns a full batch (more are waiting)
adds one, up to the maximum concurrency; an added poller whose poll comes back empty stops. Records the
processor lists in `batchItemFailures` (or every record, when the function fails, crashes or times out) are left
on the queue, to become visible again after the visibility timeout; the others are deleted. SQS itself counts the
receives and moves a record to the DLQ once its receive count passes the queue's maxReceiveCount.

A batch is received with a visibility timeout longer than the processor's timeout, as AWS requires of the queue,
so no record reappears while an instance still works on it; its failed records are then made visible again after
the local stack's short retry delay (`--visibility-timeout`, 3 s), so that retries happen while you watch.
"""

from __future__ import annotations

import hashlib
import math
import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tools.local.console import Console, processor_steps
from tools.local.instances import InstancePool
from tools.local.resources import LOCAL_REGION

BATCH_SIZE = 10
WAIT_SECONDS = 1  # short long-polls, so Ctrl-C stops the pollers within a second


def lambda_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One boto3 ReceiveMessage message as a record of Lambda's SQS event."""
    attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    for value in attributes.values():
        if value["binaryValue"] is None:
            del value["binaryValue"]
        elif value["stringValue"] is None:
            del value["stringValue"]
    body = message.get("Body", "")
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's own
        "md5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": LOCAL_REGION,
    }


def failed_ids(result: Any, records: list[dict[str, Any]]) -> set[str]:
    """Message ids to leave on the queue. A malformed response fails the whole batch, as Lambda does."""
    every = {record["messageId"] for record in records}
    if not isinstance(result, dict):
        return every
    failures = result.get("batchItemFailures") or []
    ids = {failure.get("itemIdentifier") for failure in failures if isinstance(failure, dict)}
    if not ids <= every:
        return every
    return {identifier for identifier in ids if isinstance(identifier, str)}


class QueueWorker:
    """The event source mapping: poller threads, at most one per unit of the processor's maximum concurrency."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        processor: InstancePool,
        console: Console,
        max_receive_count: int,
        stop: threading.Event,
        retry_after_seconds: int,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self._processor = processor
        self._console = console
        self._max_receive_count = max_receive_count
        self._stop = stop
        self._retry_after = retry_after_seconds
        self._in_flight_visibility = math.ceil(processor.function.timeout_seconds) + 5
        self._threads: list[threading.Thread] = []
        self._pollers = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self._add_poller()

    def _add_poller(self) -> None:
        with self._lock:
            if self._pollers >= self._processor.function.concurrency or self._stop.is_set():
                return
            self._pollers += 1
            first = not self._threads
            thread = threading.Thread(target=self.run, args=(first,), name=f"sqs-poller-{len(self._threads) + 1}")
            thread.daemon = True
            self._threads.append(thread)
        thread.start()

    def join(self, timeout: float) -> None:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def run(self, first: bool = True) -> None:
        while not self._stop.is_set():
            try:
                received = self.poll_once()
                if received == BATCH_SIZE:
                    self._add_poller()  # a full batch: more are waiting
                elif received == 0 and not first:
                    with self._lock:
                        self._pollers -= 1
                    return
            except (BotoCoreError, ClientError) as exc:
                if self._stop.is_set():
                    return
                self._console.say(f"worker: the queue is unreachable ({type(exc).__name__}); retrying in 1 s")
                self._stop.wait(1)
            except Exception as exc:  # noqa: BLE001 - a bug here must not silently stop the pipeline
                self._console.say(f"worker: unexpected {exc!r}; polling again in 1 s")
                self._stop.wait(1)

    def poll_once(self) -> int:
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=BATCH_SIZE,
            WaitTimeSeconds=WAIT_SECONDS,
            VisibilityTimeout=self._in_flight_visibility,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        records = [lambda_record(message, self._queue_arn) for message in messages]
        # Each poller holds at most one batch, so an instance is free, or starting, for every poller.
        outcome = self._processor.invoke({"Records": records}, wait=self._processor.function.timeout_seconds)
        failed = {record["messageId"] for record in records} if outcome.error else failed_ids(outcome.result, records)
        done = [record for record in records if record["messageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": record["receiptHandle"]} for i, record in enumerate(done)],
            )
        retry = [record for record in records if record["messageId"] in failed]
        if retry:
            self._sqs.change_message_visibility_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": record["receiptHandle"], "VisibilityTimeout": self._retry_after}
                    for i, record in enumerate(retry)
                ],
            )
        steps = processor_steps(records, failed, outcome.invocation.records, self._max_receive_count, outcome.error)
        for word, event_id, event_type, detail in steps:
            self._console.step(word, event_id, event_type, detail)
        return len(records)
