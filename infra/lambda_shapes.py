"""What Lambda sees, in plain Python: the functions' environments, the context, and the events AWS hands them.

The stack (infra/) sets the environments from here; the local stack (tools/local), the tests and the benchmarks
build or fake the context and the events from here, so all four agree with one another and with AWS.
Standard library only (no boto3, no CDK, nothing of functions/ at import): a benchmark can import it before its
timer without pre-loading anything the code under test imports itself.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient  # type stubs only: nothing is imported at run time

REGION = "us-east-1"  # the local stack's, the tests' and the benchmarks' region
ACCOUNT_ID = "123456789012"
WEBHOOK_PATH = "/webhooks/klikit"  # the one route (infra/spec.py splits it into the API's resources)
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
POWERTOOLS_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"


# --- the functions' environments: what infra/ sets in AWS and tools/local sets locally --------------------------


def powertools_environment(service: str, namespace: str, log_level: str) -> dict[str, str]:
    """What every function's Powertools reads: its service name, the metrics namespace and the log level."""
    return {POWERTOOLS_SERVICE_NAME: service, POWERTOOLS_METRICS_NAMESPACE: namespace, POWERTOOLS_LOG_LEVEL: log_level}


def receiver_environment(
    *, secret_id: str, idempotency_table: str, queue_url: str, bucket: str, ttl_days: int, queue_max_bytes: int
) -> dict[str, str]:
    """The receiver's resources (klikit/settings.py reads these names)."""
    from klikit import settings as env

    return {
        env.WEBHOOK_SECRET_ID: secret_id,
        env.IDEMPOTENCY_TABLE_NAME: idempotency_table,
        env.IDEMPOTENCY_TTL_DAYS: str(ttl_days),
        env.QUEUE_URL: queue_url,
        env.PAYLOAD_BUCKET_NAME: bucket,
        env.SQS_MAX_MESSAGE_BYTES: str(queue_max_bytes),
    }


def processor_environment(
    *,
    orders_table: str,
    effects_table: str,
    bucket: str,
    dlq_url: str,
    ttl_days: int,
    event_bus: str | None = None,
    tracing: bool = False,
) -> dict[str, str]:
    """The processor's resources; the event bus only with the fan-out on, the flag only with tracing on."""
    from klikit import settings as env

    environment = {
        env.ORDERS_TABLE_NAME: orders_table,
        env.EFFECTS_TABLE_NAME: effects_table,
        env.PAYLOAD_BUCKET_NAME: bucket,
        env.DLQ_URL: dlq_url,
        env.EFFECTS_TTL_DAYS: str(ttl_days),
    }
    if event_bus is not None:
        environment[env.EVENT_BUS_NAME] = event_bus
    if tracing:
        environment[env.TRACING_ENABLED] = "true"  # the processor annotates each delivery's subsegment
    return environment


def reconciler_environment(
    *,
    orders_table: str,
    queue_url: str,
    checkpoint_table: str,
    partner_secret_id: str,
    klikit_api_url: str,
    lookback_hours: int,
) -> dict[str, str]:
    """The reconciler's resources and klikit's partner API."""
    from klikit import settings as env

    return {
        env.ORDERS_TABLE_NAME: orders_table,
        env.QUEUE_URL: queue_url,
        env.CHECKPOINT_TABLE_NAME: checkpoint_table,
        env.PARTNER_SECRET_ID: partner_secret_id,
        env.KLIKIT_API_URL: klikit_api_url,
        env.RECONCILE_LOOKBACK_HOURS: str(lookback_hours),
    }


# --- the context ----------------------------------------------------------------------------------------------


@dataclass
class LambdaContext:
    """What Powertools reads from a Lambda context, with a real deadline (`remaining_ms` pins the time left)."""

    function_name: str = "klikit-test"
    memory_limit_in_mb: int = 256
    timeout_seconds: float = 6.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int | None = None
    function_version: str = "$LATEST"
    log_stream_name: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        if self.remaining_ms is not None:
            return self.remaining_ms
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


# --- API Gateway: the REST proxy event ------------------------------------------------------------------------


def api_gateway_event(
    body: bytes,
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    *,
    method: str = "POST",
    path: str = WEBHOOK_PATH,
    query: Mapping[str, list[str]] | None = None,
    stage: str = "local",
    source_ip: str = "127.0.0.1",
    base64_encoded: bool = True,
) -> dict[str, Any]:
    """The REST proxy event API Gateway hands the receiver for one request.

    `headers` are name/value pairs in the order sent: `headers` keeps the last value of a name (its sender's
    casing), `multiValueHeaders` every value. The stack's API has binaryMediaTypes ["*/*"], so the body arrives
    base64-encoded as the exact bytes sent; `base64_encoded=False` builds the text form for tests of it.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    now = time.time()
    return {
        "resource": WEBHOOK_PATH,
        "path": path,
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": {name: values[-1] for name, values in query.items()} if query else None,
        "multiValueQueryStringParameters": dict(query) if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": WEBHOOK_PATH,
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": source_ip, "userAgent": single.get("User-Agent")},
            "accountId": ACCOUNT_ID,
            "apiId": "local",
        },
        "body": base64.b64encode(body).decode("ascii") if base64_encoded else body.decode("utf-8"),
        "isBase64Encoded": base64_encoded,
    }


def response_body(result: Mapping[str, Any]) -> bytes:
    """The bytes API Gateway sends back for a proxy integration's result."""
    body = result.get("body") or ""
    return base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")


# --- SQS: the records Lambda's event source mapping hands the processor ------------------------------------------


def queue_arn(queue_name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue_name}"


DEFAULT_QUEUE_ARN = queue_arn("klikit-local-deliveries")


def sqs_record(
    body: str,
    attributes: Mapping[str, Mapping[str, Any]],
    *,
    message_id: str | None = None,
    receipt_handle: str | None = None,
    receive_count: int = 1,
    system_attributes: Mapping[str, str] | None = None,
    md5_of_body: str | None = None,
    arn: str = DEFAULT_QUEUE_ARN,
) -> dict[str, Any]:
    """One record of Lambda's SQS event. `attributes` are message attributes in SendMessage's (boto3's) shape,
    `{name: {"DataType": ..., "StringValue" | "BinaryValue": ...}}`, as the receiver sends them."""
    records_attributes: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        shaped: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
        if value.get("BinaryValue") is not None:
            shaped["binaryValue"] = value["BinaryValue"]
        else:
            shaped["stringValue"] = value.get("StringValue")
        records_attributes[name] = shaped
    sent_ms = str(int(time.time() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": receipt_handle or base64.b64encode(uuid.uuid4().bytes).decode(),
        "body": body,
        "attributes": dict(system_attributes)
        if system_attributes is not None
        else {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": sent_ms,
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": sent_ms,
        },
        "messageAttributes": records_attributes,
        "md5OfBody": md5_of_body or hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's own checksum
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": REGION,
    }


def record_from_message(message: Mapping[str, Any], arn: str) -> dict[str, Any]:
    """One boto3 ReceiveMessage message as a record of Lambda's SQS event."""
    return sqs_record(
        message.get("Body", ""),
        message.get("MessageAttributes") or {},
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        system_attributes=dict(message.get("Attributes") or {}),
        md5_of_body=message.get("MD5OfBody"),
        arn=arn,
    )


def sqs_event(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {"Records": list(records)}


def failed_ids(result: Any, records: list[dict[str, Any]]) -> set[str]:
    """The message ids a processor result leaves on the queue (ReportBatchItemFailures).

    A malformed response, or one naming a record that is not in the batch, fails the whole batch, as Lambda does.
    """
    every = {record["messageId"] for record in records}
    if not isinstance(result, dict):
        return every
    failures = result.get("batchItemFailures") or []
    ids = {failure.get("itemIdentifier") for failure in failures if isinstance(failure, dict)}
    if not ids <= every:
        return every
    return {identifier for identifier in ids if isinstance(identifier, str)}


class Batch(NamedTuple):
    records: list[dict[str, Any]]
    failed: set[str]  # message ids left on the queue
    result: Any  # the processor's result, or None when the invocation failed


class InvocationFailed(Exception):
    """The processor's invocation did not return (its error, a crash, a timeout): the whole batch stays queued."""


class EventSourceMapping:
    """Lambda's SQS event source mapping with ReportBatchItemFailures, played against an SQS client.

    One poll receives up to a batch with a visibility timeout longer than the processor's, invokes the processor
    once, deletes the records it did not report, and makes the others visible again after `retry_after_seconds`
    (AWS waits out the visibility timeout; tests and the local stack shorten it). SQS itself counts the receives
    and moves a record to the DLQ past the queue's maxReceiveCount.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        *,
        batch_size: int = 10,
        wait_seconds: int = 0,
        in_flight_visibility_seconds: int = 300,
        retry_after_seconds: int = 0,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.in_flight_visibility_seconds = in_flight_visibility_seconds
        self.retry_after_seconds = retry_after_seconds
        self.arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def receive(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Up to a batch (`limit`: fewer this time) with the in-flight visibility timeout, as Lambda's records."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(limit or self.batch_size, 10),
            WaitTimeSeconds=self.wait_seconds,
            VisibilityTimeout=self.in_flight_visibility_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        return [record_from_message(message, self.arn) for message in messages]

    def settle(self, records: list[dict[str, Any]], failed: set[str]) -> None:
        """Delete what succeeded; what failed becomes visible again after the retry delay."""
        done = [record for record in records if record["messageId"] not in failed]
        retry = [record for record in records if record["messageId"] in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": record["receiptHandle"]} for i, record in enumerate(done)],
            )
        if retry:
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r["receiptHandle"], "VisibilityTimeout": self.retry_after_seconds}
                    for i, r in enumerate(retry)
                ],
            )

    def poll(self, invoke: Callable[[dict[str, Any]], Any], limit: int | None = None) -> Batch | None:
        """One poll: None when the queue had nothing; `invoke` raises InvocationFailed when the function failed."""
        records = self.receive(limit)
        if not records:
            return None
        try:
            result = invoke(sqs_event(records))
        except InvocationFailed:
            result, failed = None, {record["messageId"] for record in records}
        else:
            failed = failed_ids(result, records)
        self.settle(records, failed)
        return Batch(records, failed, result)
