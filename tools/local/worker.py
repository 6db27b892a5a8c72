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

import math
import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.lambda_shapes import EventSourceMapping, InvocationFailed
from tools.local.console import Console, processor_steps
from tools.local.instances import InstancePool
from tools.local.runtime import Outcome

BATCH_SIZE = 10
WAIT_SECONDS = 1  # short long-polls, so Ctrl-C stops the pollers within a second


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
        self._source = EventSourceMapping(
            sqs,
            queue_url,
            batch_size=BATCH_SIZE,
            wait_seconds=WAIT_SECONDS,
            in_flight_visibility_seconds=math.ceil(processor.function.timeout_seconds) + 5,
            retry_after_seconds=retry_after_seconds,
        )
        self._processor = processor
        self._console = console
        self._max_receive_count = max_receive_count
        self._stop = stop
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
        outcomes: list[Outcome] = []

        def invoke(event: dict[str, Any]) -> Any:
            # Each poller holds at most one batch, so an instance is free, or starting, for every poller.
            outcomes.append(self._processor.invoke(event, wait=self._processor.function.timeout_seconds))
            if outcomes[-1].error:
                raise InvocationFailed(outcomes[-1].error)
            return outcomes[-1].result

        batch = self._source.poll(invoke)
        if batch is None:
            return 0
        outcome = outcomes[0]
        steps = processor_steps(
            batch.records, batch.failed, outcome.invocation.records, self._max_receive_count, outcome.error
        )
        for word, event_id, event_type, detail in steps:
            self._console.step(word, event_id, event_type, detail)
        return len(batch.records)
