"""Reliability harness: the real receiver and processor on one in-process moto, klikit's retries, SQS's redelivery,
AWS faults injected at the botocore layer, Lambda crashes, and a log sink that fails a test on any leak.

- `Faults` arms botocore hooks on the default boto3 session (the one the functions' clients come from): fail an
  operation with an AWS error code or a transport error, throttle it on the wire (so botocore's own retries are
  exercised), hold it, or crash the Lambda just before or just after it.
- `Crash` is a BaseException: the Lambda runtime killing an invocation (timeout, OOM) runs no `except Exception`,
  no cleanup, no reply. API Gateway then answers klikit 502, and SQS redelivers the whole batch.
- `Pipeline` plays klikit (send and retry until 2xx), API Gateway, the SQS event source mapping and the clock
  (`let_in_flight_records_expire`: the Lambda timeout passed, so Powertools may take over an in-progress record).
  The harness reads AWS through its own boto3 session, which the injected faults never touch.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, settings

from infra import lambda_shapes
from infra.lambda_shapes import LambdaContext
from klikit.signature import sign
from processor import handler as processor_handler
from processor.cart_storage import readable
from processor.models import OrderEvent
from processor.registry import REGISTRY, Registry
from receiver import handler as receiver_handler
from tests.conftest import OLD_SECRET, SECRET, load_json
from tests.faults import Crash, Faults, Predicate
from tools.local.resources import LOCAL_REGION, LocalResources

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef, MessageTypeDef

# --- hypothesis: bounded in `make test`, raised by `make fuzz` / `make soak` ----------------------------------

FUZZ_EXAMPLES = int(os.environ.get("KLIKIT_FUZZ_EXAMPLES", "400"))
SOAK_EXAMPLES = int(os.environ.get("KLIKIT_SOAK_EXAMPLES", "12"))
STATS_DIR = os.environ.get("KLIKIT_RELIABILITY_STATS", ".local/reliability")

settings.register_profile(
    "reliability",
    database=None,  # no example database: every run is a fresh search (CI has no state to carry)
    deadline=None,  # moto calls vary in cost; a deadline would only make the suite flaky
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


def record_stats(name: str, figures: dict[str, Any]) -> None:
    """Write a run's figures (examples, cases, outcomes) where docs/reliability.md's numbers come from."""
    folder = Path(STATS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True), encoding="utf-8")


# --- what must never appear in a log line -----------------------------------------------------------------


def _personal_data() -> set[str]:
    """Every customer value in the klikit-shaped fixtures (names, phones, emails, addresses)."""
    found: set[str] = set()
    for name in ("order_created_v2_batch.json", "order_status_updated.json", "order_cart_updated.json"):
        for order in load_json(name)["orders"]:
            for value in (order.get("customer") or {}).values():
                if isinstance(value, str):
                    found.add(value)
                    found.update(part.strip() for part in value.split(",") if len(part.strip()) >= 6)
    return found


PERSONAL_DATA = frozenset(_personal_data())
SECRETS = frozenset({SECRET, OLD_SECRET})
# A signature is 64 lowercase hex characters; nothing this service logs legitimately looks like one.
_SIGNATURE_LIKE = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def leaks(text: str) -> list[str]:
    found = [f"secret {s[:6]}..." for s in SECRETS if s in text]
    found += [f"personal data {p[:3]}..." for p in PERSONAL_DATA if p in text]
    found += [f"signature-like hex {m[:8]}..." for m in _SIGNATURE_LIKE.findall(text)]
    return found


class LogSink:
    """A stream for the Powertools log handlers: checks each line for leaks as it is written, keeps the last few."""

    def __init__(self, keep: int = 2000) -> None:
        self.lines: list[str] = []
        self.leaked: list[tuple[str, str]] = []
        self.count = 0
        self._keep = keep
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            for line in text.splitlines():
                if not line.strip():
                    continue
                self.count += 1
                for leak in leaks(line):
                    self.leaked.append((leak, line[:300]))
                self.lines.append(line)
            if len(self.lines) > self._keep:
                del self.lines[: len(self.lines) - self._keep]
        return len(text)

    def flush(self) -> None:
        pass

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]


@pytest.fixture(autouse=True)
def log_sink() -> Iterator[LogSink]:
    """Every reliability test runs with its logs checked: a secret, signature or customer datum fails it."""
    import logging

    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    sink = LogSink()
    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    for candidate in list(logging.Logger.manager.loggerDict.values()):
        for log_handler in getattr(candidate, "handlers", []):
            if isinstance(log_handler, logging.StreamHandler) and isinstance(
                log_handler.formatter, LambdaPowertoolsFormatter
            ):
                swapped.append((log_handler, log_handler.setStream(sink)))
    yield sink
    for log_handler, stream in swapped:
        log_handler.setStream(stream)
    assert sink.leaked == [], f"logs leaked: {sink.leaked[:5]}"


# --- fault injection: tests/faults.py; helpers to aim it ------------------------------------------------


def table_is(name: str) -> Predicate:
    return lambda params: params.get("TableName") == name


def queue_is(url: str) -> Predicate:
    return lambda params: params.get("QueueUrl") == url


def key_under(prefix: str) -> Predicate:
    return lambda params: str(params.get("Key", "")).startswith(prefix)


# --- the user's handler, counted -------------------------------------------------------------------------

EVENT_TYPES = ("klikit.order.created.v2", "klikit.order.status.updated", "klikit.order.cart.updated")
COUNTER_NAME = "reliability.effect-counter"


@dataclass
class EffectCounter:
    """A handler registered for every klikit event type: its effect is one count per (event id, order id), and
    `calls` keeps each effect in the order it happened, with the event type it came under."""

    effects: Counter[tuple[str, str]] = field(default_factory=Counter)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (event id, event type, order id)
    fail_next: set[str] = field(default_factory=set)  # event ids whose next call raises before the effect
    during: Callable[[OrderEvent], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: OrderEvent) -> None:
        if self.during is not None:
            self.during(event)
        with self.lock:
            if event.event_id in self.fail_next:
                self.fail_next.discard(event.event_id)
                raise RuntimeError("injected handler failure")
            self.effects[(event.event_id, event.order_id)] += 1
            self.calls.append((event.event_id, event.event_type, event.order_id))


@pytest.fixture
def counter() -> Iterator[EffectCounter]:
    counting = EffectCounter()
    with REGISTRY.scope() as scoped:
        scoped.on(*EVENT_TYPES, name=COUNTER_NAME)(counting)
        yield counting


# --- the pipeline -----------------------------------------------------------------------------------------

GATEWAY_CRASH_REPLY = (502, {"message": "Internal server error"})  # what API Gateway answers for a dead Lambda


@dataclass
class BatchResult:
    records: int
    failed: int
    crashed: bool


class Pipeline:
    """klikit -> API Gateway -> receiver -> SQS -> event source mapping -> processor, one step at a time."""

    def __init__(self, aws: LocalResources, faults: Faults, context: LambdaContext) -> None:
        self.aws = aws
        self.faults = faults
        self.context = context
        harness = boto3.Session(region_name=LOCAL_REGION)  # never hooked: the test's own view of AWS
        self.sqs = harness.client("sqs")
        self.dynamodb = harness.client("dynamodb")
        self.s3 = harness.client("s3")
        self.event_source = lambda_shapes.EventSourceMapping(self.sqs, aws.queue_url)
        self.replies: list[tuple[int, Any]] = []

    # --- klikit and API Gateway --------------------------------------------------------------------------

    def send(self, event: dict[str, Any]) -> tuple[int, Any]:
        try:
            reply = receiver_handler.lambda_handler(event, cast(Any, self._fresh_context()))
        except Crash:
            result: tuple[int, Any] = GATEWAY_CRASH_REPLY
        else:
            assert reply["headers"]["Content-Type"] == "application/json"
            result = (reply["statusCode"], json.loads(reply["body"]))
        self.replies.append(result)
        return result

    def send_until_acknowledged(self, event: dict[str, Any], attempts: int = 8) -> list[tuple[int, Any]]:
        """klikit's retries: resend until 2xx; a 409 means the first attempt still holds the event id, so time
        passes until its Lambda would have timed out."""
        replies = []
        for _ in range(attempts):
            reply = self.send(event)
            replies.append(reply)
            if 200 <= reply[0] < 300:
                return replies
            if reply[0] == 409:
                self.let_in_flight_records_expire()
        raise AssertionError(f"klikit never got a 2xx: {replies}")

    def _fresh_context(self) -> LambdaContext:
        return LambdaContext(aws_request_id=str(uuid.uuid4()), remaining_ms=self.context.remaining_ms)

    # --- the clock ---------------------------------------------------------------------------------------

    def let_in_flight_records_expire(self) -> int:
        """The Lambda timeout of every invocation that left an in-progress record has passed."""
        expired = 0
        for table, key in list(dict.fromkeys(self.faults.put_keys)):
            try:
                self.dynamodb.update_item(
                    TableName=table,
                    Key={"id": {"S": key}},
                    UpdateExpression="SET in_progress_expiration = :past",
                    ConditionExpression="#s = :inprogress",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":past": {"N": "0"}, ":inprogress": {"S": "INPROGRESS"}},
                )
                expired += 1
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        return expired

    # --- SQS and the event source mapping ----------------------------------------------------------------

    def receive(self, queue_url: str | None = None, limit: int = 10) -> list[MessageTypeDef]:
        response = self.sqs.receive_message(
            QueueUrl=queue_url or self.aws.queue_url,
            MaxNumberOfMessages=min(limit, 10),
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            VisibilityTimeout=300,
        )
        return list(response.get("Messages", []))

    def queue_depth(self, queue_url: str | None = None) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url or self.aws.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def process_once(self, limit: int = 10) -> BatchResult | None:
        """One poll of the event source mapping: a batch to the processor; successes deleted, failures (or the
        whole batch, when the Lambda crashed) visible again as if their visibility timeout had passed."""

        def invoke(event: dict[str, Any]) -> Any:
            try:
                return processor_handler.lambda_handler(event, cast(Any, self._fresh_context()))
            except Crash as exc:
                raise lambda_shapes.InvocationFailed("the processor's instance died") from exc

        batch = self.event_source.poll(invoke, limit)
        if batch is None:
            return None
        if batch.failed:
            # SQS shows them again after the visibility timeout, which is longer than the Lambda timeout
            self.let_in_flight_records_expire()
        return BatchResult(records=len(batch.records), failed=len(batch.failed), crashed=batch.result is None)

    def drain(self, rounds: int = 40, limit: int = 10) -> list[BatchResult]:
        """Run the processor until the queue is empty; a record still failing after `rounds` polls fails."""
        results: list[BatchResult] = []
        for _ in range(rounds):
            result = self.process_once(limit)
            if result is None:
                return results
            results.append(result)
        raise AssertionError(f"queue not drained after {rounds} polls: {results[-3:]}")

    def dlq(self) -> list[MessageTypeDef]:
        return self.receive(self.aws.dlq_url)

    def order(self, order_id: str) -> dict[str, Any] | None:
        table = boto3.Session(region_name=LOCAL_REGION).resource("dynamodb").Table(self.aws.orders_table)
        item: dict[str, Any] | None = table.get_item(Key={"order_id": order_id}, ConsistentRead=True).get("Item")
        return None if item is None else readable(item)

    def discard_queued(self) -> int:
        """Delete every message on the deliveries queue (PurgeQueue is limited to once a minute)."""
        discarded = 0
        while messages := self.receive():
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)
            ]
            self.sqs.delete_message_batch(QueueUrl=self.aws.queue_url, Entries=entries)
            discarded += len(messages)
        return discarded


@pytest.fixture
def pipeline(aws: LocalResources, faults: Faults, lambda_context: LambdaContext) -> Iterator[Pipeline]:
    receiver_handler.app.cache_clear()
    processor_handler.app.cache_clear()
    yield Pipeline(aws, faults, lambda_context)
    receiver_handler.app.cache_clear()
    processor_handler.app.cache_clear()


@pytest.fixture
def scoped_registry() -> Iterator[Registry]:
    with REGISTRY.scope() as scoped:
        yield scoped


def signed(body: bytes, secret: str = SECRET) -> str:
    return sign(secret, body)
