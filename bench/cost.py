"""Cost per million deliveries: the real receiver and processor on moto, every billed request and byte metered.

Worker (`python -m bench.cost mix DELIVERIES BATCH`): one interpreter, in-process moto, both functions fed a
representative mix of signed deliveries through API Gateway-shaped events, and the queue drained into the
processor the way Lambda's SQS event source does (ReceiveMessage, invoke, DeleteMessageBatch). `bench.metering`
counts what each of them is billed for. Worker (`python -m bench.cost stack`): the synthesized template's
billed resources (alarms, dashboards, secrets, keys, memory sizes, log formats). The parent prices both with
`bench.prices` and prints $ per million deliveries by service, the idle stack's monthly cost, and the total.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import prices, workload
from bench.harness import REGION
from bench.prices import Price
from infra import lambda_shapes

CREATED = "klikit.order.created.v2"
STATUS = "klikit.order.status.updated"
CART = "klikit.order.cart.updated"

# The representative mix, per 100 deliveries; one new order in 50 is a body above the SQS limit (1 MiB).
MIX = {"created": 25, "status": 50, "cart": 13, "duplicate": 10, "forged": 2}
OVERSIZED_EVERY = 50
OVERSIZED_BYTES = 1_100_000
CART_LINES = 4  # a typical order: ~5 KB body, the cart ~2 KB of it
FORGED_SECRET = "whsec_not_the_one_klikit_uses"

# What Lambda's runtime logs around each invocation (text log format), besides the function's own lines.
_REQUEST_ID = "6f7c2a43-8e4b-4f6e-9a1d-2b3c4d5e6f70"
PLATFORM_LINES_TEXT = (
    f"START RequestId: {_REQUEST_ID} Version: $LATEST",
    f"END RequestId: {_REQUEST_ID}",
    f"REPORT RequestId: {_REQUEST_ID}\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 256 MB\t"
    "Max Memory Used: 81 MB\t",
)
PLATFORM_LINES_JSON = (
    json.dumps({"time": "2026-06-25T09:30:00.000Z", "type": "platform.start", "record": {"requestId": _REQUEST_ID}}),
    json.dumps(
        {
            "time": "2026-06-25T09:30:00.013Z",
            "type": "platform.report",
            "record": {
                "requestId": _REQUEST_ID,
                "metrics": {"durationMs": 12.34, "billedDurationMs": 13, "memorySizeMB": 256, "maxMemoryUsedMB": 81},
                "status": "success",
            },
        }
    ),
)

# Functions as AWS names them in a deployed stack (log lines carry the name and ARN, so their length counts).
FUNCTION_NAMES = {
    "receiver": "KlikitWebhooks-IntakeReceiverFunction8A3C1D2E-Ab12Cd34Ef56",
    "processor": "KlikitWebhooks-ProcessingProcessorFunction5F6B7C8D-Gh78Ij90Kl12",
}
MEMORY_MB = {"receiver": 256, "processor": 512}
TRACE_HEADER = "_X_AMZN_TRACE_ID"


@dataclass(frozen=True)
class Sent:
    """One delivery of the mix: what klikit sends, and what kind of delivery it is."""

    kind: str  # created | status | cart | duplicate | forged | oversized
    event_id: str
    event_type: str
    body: bytes
    signature: str


class Orders:
    """Bodies shaped like klikit's (the full order record in every event), one clock per order, always moving on."""

    def __init__(self) -> None:
        document = json.loads(workload.FIXTURE.read_bytes())
        self._envelope = {key: value for key, value in document.items() if key != "orders"}
        self._template = document["orders"][0]
        self._orders: dict[int, dict[str, Any]] = {}
        self._minutes: dict[int, int] = {}

    def body(self, order_id: int) -> bytes:
        return json.dumps({**self._envelope, "orders": [self._orders[order_id]]}, separators=(",", ":")).encode()

    def create(self, order_id: int, pad_to: int = 0) -> bytes:
        order = copy.deepcopy(self._template)
        lines, lines_v2 = order["cart"], order["cart_v2"]
        order["cart"] = [dict(lines[i % len(lines)], item_id=9000 + i) for i in range(CART_LINES)]
        order["cart_v2"] = [dict(lines_v2[i % len(lines_v2)], id=str(289_000 + i)) for i in range(CART_LINES)]
        order.update(id=order_id, status=1, external_id=f"GF-{order_id}")
        self._orders[order_id] = order
        self._minutes[order_id] = 0
        self._tick(order_id)
        if pad_to:  # a long cart_v2 (not projected): the body goes to S3 as a claim check, the order item stays small
            template = order["cart_v2"][0]
            while len(self.body(order_id)) < pad_to:
                order["cart_v2"] += [dict(template, id=str(289_000 + len(order["cart_v2"])))] * 200
        return self.body(order_id)

    def status(self, order_id: int) -> bytes:
        order = self._orders[order_id]
        order["status"] = order["status"] % 9 + 1
        self._tick(order_id)
        return self.body(order_id)

    def cart(self, order_id: int) -> bytes:
        order = self._orders[order_id]
        order["cart"][0]["quantity"] += 1
        self._tick(order_id)
        return self.body(order_id)

    def _tick(self, order_id: int) -> None:
        self._minutes[order_id] += 1
        minute = self._minutes[order_id]
        self._orders[order_id]["updated_at"] = f"2026-06-25T{9 + minute // 60:02d}:{minute % 60:02d}:11Z"


def representative_mix(deliveries: int, seed: int = 14) -> list[Sent]:
    """`deliveries` deliveries in MIX's proportions (shuffled per block of 100), deterministic for a seed."""
    rng = random.Random(seed)
    orders = Orders()
    sent: list[Sent] = []
    accepted: list[Sent] = []
    open_orders: list[int] = []
    created = 0
    block: list[str] = []
    while len(sent) < deliveries:
        if not block:
            block = [kind for kind, count in MIX.items() for _ in range(count)]
            rng.shuffle(block)
        kind = block.pop()
        if (kind in ("status", "cart") and not open_orders) or (kind == "duplicate" and not accepted):
            kind = "created"
        event_id = f"evt-{uuid.UUID(int=rng.getrandbits(128))}"
        if kind == "duplicate":
            repeated = accepted[-5 if len(accepted) >= 5 else 0]  # klikit retries one it has already delivered
            sent.append(dataclasses.replace(repeated, kind="duplicate"))
            continue
        if kind == "forged":
            body = orders.body(open_orders[-1]) if open_orders else orders.create(999_999)
            sent.append(Sent("forged", event_id, STATUS, body, workload.sign(FORGED_SECRET, body)))
            continue
        if kind == "created":
            order_id = 1_000_000 + created
            created += 1
            oversized = created % OVERSIZED_EVERY == 10
            body = orders.create(order_id, pad_to=OVERSIZED_BYTES if oversized else 0)
            if not oversized:  # its later events would all be oversized too: "a few" stays a few
                open_orders = [*open_orders, order_id][-20:]
            kind, event_type = ("oversized" if oversized else "created"), CREATED
        else:
            order_id = open_orders[rng.randrange(len(open_orders))]
            body, event_type = (orders.status(order_id), STATUS) if kind == "status" else (orders.cart(order_id), CART)
        delivery = Sent(kind, event_id, event_type, body, workload.sign(workload.SECRET, body))
        sent.append(delivery)
        accepted.append(delivery)
    return sent


def api_event(delivery: Sent) -> dict[str, Any]:
    """API Gateway's REST proxy event as the stack configures it (binary media type */*: the body is base64)."""
    headers = {
        "Content-Type": "application/json",
        "X-Klikit-Signature": delivery.signature,
        "X-Klikit-Event-Id": delivery.event_id,
        "X-Klikit-Event-Type": delivery.event_type,
    }
    return lambda_shapes.api_gateway_event(delivery.body, headers, stage="prod")


@dataclass
class Invocation:
    function: str
    own_ms: float
    calls: dict[str, int]


class Pipeline:
    """The receiver and the processor wired to moto as in AWS, with the SQS event source in between, metered."""

    def __init__(
        self,
        receiver: Callable[[dict[str, Any], Any], Any],
        processor: Callable[[dict[str, Any], Any], Any],
        queue_url: str,
        batch: int,
        platform_lines: tuple[str, ...] = PLATFORM_LINES_TEXT,
    ) -> None:
        from bench.metering import metered
        from klikit import observability

        self._receiver, self._processor = receiver, processor
        self._queue_url = queue_url
        self._batch = batch
        self._platform_lines = platform_lines
        self._meters = metered(
            REGION, {observability.RECEIVER_SERVICE: "receiver", observability.PROCESSOR_SERVICE: "processor"}
        )
        self.invocations: list[Invocation] = []
        self.replies: Counter[str] = Counter()
        self._queued = 0

    def __enter__(self) -> Pipeline:
        import boto3

        self._stack = contextlib.ExitStack()
        self.aws, self.logs = self._stack.enter_context(self._meters)
        self._sqs = boto3.client("sqs")  # the event source's client, on the metered default session
        self._queue_arn = self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.aws.usage.counters.clear()
        self._trace_header = os.environ.get(TRACE_HEADER)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        if self._trace_header is None:
            os.environ.pop(TRACE_HEADER, None)
        else:
            os.environ[TRACE_HEADER] = self._trace_header

    def _invoke(self, function: str, handler: Callable[[dict[str, Any], Any], Any], event: dict[str, Any]) -> Any:
        context = workload.lambda_context(MEMORY_MB[function], FUNCTION_NAMES[function])
        # Lambda sets a trace header on every invocation; Powertools Logger adds it to every line
        os.environ[TRACE_HEADER] = f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0"
        before = Counter({call: c["requests"] for (fn, call), c in self.aws.usage.counters.items() if fn == function})
        aws_before = self.aws.seconds[function]
        started = time.perf_counter()
        with self.aws.running(function), self.logs.running(function):
            result = handler(event, context)
        elapsed = time.perf_counter() - started
        after = Counter({call: c["requests"] for (fn, call), c in self.aws.usage.counters.items() if fn == function})
        own_ms = (elapsed - (self.aws.seconds[function] - aws_before)) * 1000
        self.invocations.append(Invocation(function, own_ms, dict(after - before)))
        with self.logs.running(function):
            self.logs.platform_lines(list(self._platform_lines))
        return result

    def deliver(self, delivery: Sent) -> None:
        reply = self._invoke("receiver", self._receiver, api_event(delivery))
        status = json.loads(reply["body"]).get("status") or json.loads(reply["body"]).get("error")
        self.replies[f"{reply['statusCode']} {status}"] += 1
        if reply["statusCode"] == 200 and status == "received":
            self._queued += 1
            if self._queued >= self._batch:
                self.drain(until_empty=False)

    def drain(self, until_empty: bool = True) -> None:
        """Lambda's SQS event source: receive up to a batch, invoke the processor, delete what succeeded."""
        from infra.lambda_shapes import failed_ids, record_from_message

        while self._queued > 0:
            with self.aws.running("event source"):
                messages = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=min(self._batch, 10),
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            if not messages:
                raise RuntimeError(f"{self._queued} accepted deliveries are not on the queue")
            records = [record_from_message(message, self._queue_arn) for message in messages]
            result = self._invoke("processor", self._processor, {"Records": records})
            failed = failed_ids(result, records)
            if failed:
                raise RuntimeError(f"the processor failed {len(failed)} record(s) of the mix: {result}")
            with self.aws.running("event source"):
                self._sqs.delete_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(records)],
                )
            self._queued -= len(records)
            if not until_empty:
                return


def stored_bytes(aws: Any, env: dict[str, str]) -> dict[str, int]:
    """What the run left in the tables (items + DynamoDB's 100 bytes each) and the bucket, by place."""
    import boto3

    session = boto3.Session(region_name=REGION)  # unmetered
    dynamodb, s3 = session.client("dynamodb"), session.client("s3")
    stored: dict[str, int] = {}
    for name in ("IDEMPOTENCY_TABLE_NAME", "EFFECTS_TABLE_NAME", "ORDERS_TABLE_NAME"):
        total = 0
        for page in dynamodb.get_paginator("scan").paginate(TableName=env[name]):
            total += sum(prices.item_bytes(item) + prices.DYNAMODB_ITEM_OVERHEAD_BYTES for item in page["Items"])
        stored[f"dynamodb.{name.removesuffix('_TABLE_NAME').lower()}"] = total
    for listing in s3.get_paginator("list_objects_v2").paginate(Bucket=env["PAYLOAD_BUCKET_NAME"]):
        for item in listing.get("Contents", []):
            place = "s3." + item["Key"].split("/", 1)[0]
            stored[place] = stored.get(place, 0) + int(item["Size"])
    return stored


def measure_mix(deliveries: int, batch: int, log_format: str = "Text") -> dict[str, Any]:
    env = workload.start_moto()
    from processor import handler as processor_handler
    from receiver import handler as receiver_handler

    mix = representative_mix(deliveries)
    platform = PLATFORM_LINES_JSON if log_format == "JSON" else PLATFORM_LINES_TEXT
    with Pipeline(
        receiver_handler.lambda_handler, processor_handler.lambda_handler, env["QUEUE_URL"], batch, platform
    ) as pipeline:
        for delivery in mix:
            pipeline.deliver(delivery)
        pipeline.drain()
    return {
        "deliveries": len(mix),
        "batch": batch,
        "kinds": dict(Counter(delivery.kind for delivery in mix)),
        "body_bytes": dict(
            Counter({kind: sum(len(d.body) for d in mix if d.kind == kind) for kind in {d.kind for d in mix}})
        ),
        "replies": dict(pipeline.replies),
        "usage": pipeline.aws.usage.as_dict(),
        "invocations": [[i.function, round(i.own_ms, 3), i.calls] for i in pipeline.invocations],
        "log_bytes": dict(pipeline.logs.bytes),
        "log_events": dict(pipeline.logs.events),
        "log_messages": {f"{fn}: {message}": n for (fn, message), n in sorted(pipeline.logs.messages.items())},
        "metrics": {
            fn: sorted([ns, name, list(map(list, dims))] for ns, name, dims in found)
            for fn, found in pipeline.logs.metrics.items()
        },
        "stored_bytes": stored_bytes(pipeline.aws, env),
    }


# --- the stack's billed resources, from the synthesized template ---------------------------------------------


def _render_access_log(format_json: Any) -> int:
    """Bytes of one access log line in the stage's format, each $context variable at a typical length."""
    samples = {
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "requestTime": "25/Jun/2026:09:30:00 +0000",
        "sourceIp": "203.0.113.41",
        "userAgent": "klikit-webhooks/2.0",
        "httpMethod": "POST",
        "path": "/prod/webhooks/klikit",
        "resourcePath": "/webhooks/klikit",
        "protocol": "HTTP/1.1",
        "status": "200",
        "responseLength": "23",
        "responseLatencyMs": "41",
        "integrationStatus": "200",
        "integrationLatencyMs": "38",
        "errorMessage": "-",
        "errorType": "-",
    }
    text = format_json if isinstance(format_json, str) else json.dumps(format_json)
    try:
        document = json.loads(text)
    except ValueError:
        return len(text.encode())
    if not isinstance(document, dict):
        return len(text.encode())
    line = {name: samples.get(name, "x" * 16) for name in document}
    return len(json.dumps(line, separators=(",", ":")).encode())


def stack_facts() -> dict[str, Any]:
    """What the default stack (cdk.json's context) is billed for besides requests, read from its template."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra import spec
    from infra.config import load_config, read_cdk_json_context
    from infra.stack import KlikitWebhooksStack

    app = cdk.App(context=read_cdk_json_context())
    config = load_config(app.node.get_all_context())
    template = Template.from_stack(KlikitWebhooksStack(app, config.stack_name, config=config)).to_json()
    resources = template["Resources"].values()

    def of(kind: str) -> list[dict[str, Any]]:
        return [resource.get("Properties", {}) for resource in resources if resource["Type"] == kind]

    functions = {}
    for properties in of("AWS::Lambda::Function"):
        name = {spec.RECEIVER_HANDLER: "receiver", spec.PROCESSOR_HANDLER: "processor"}.get(
            str(properties.get("Handler"))
        )
        if name:
            functions[name] = {
                "memory_mb": properties.get("MemorySize", 128),
                "architecture": (properties.get("Architectures") or ["x86_64"])[0],
                "log_format": properties.get("LoggingConfig", {}).get("LogFormat", "Text"),
                "tracing": properties.get("TracingConfig", {}).get("Mode", "PassThrough"),
            }
    stages = of("AWS::ApiGateway::Stage")
    access_log = stages[0].get("AccessLogSetting", {}).get("Format") if stages else None
    mappings = of("AWS::Lambda::EventSourceMapping")
    rules = [
        rule for bucket in of("AWS::S3::Bucket") for rule in bucket.get("LifecycleConfiguration", {}).get("Rules", [])
    ]
    expiry = {rule.get("Prefix", ""): rule.get("ExpirationInDays") for rule in rules if rule.get("ExpirationInDays")}
    return {
        "functions": functions,
        "alarms": len(of("AWS::CloudWatch::Alarm")),
        "dashboards": len(of("AWS::CloudWatch::Dashboard")),
        "secrets": max(1, len(of("AWS::SecretsManager::Secret"))),  # an imported secret is billed just the same
        "kms_keys": len(of("AWS::KMS::Key")),
        "api_tracing": bool(stages and stages[0].get("TracingEnabled")),
        "access_log_bytes": _render_access_log(access_log) if access_log else 0,
        "batch_window_seconds": mappings[0].get("MaximumBatchingWindowInSeconds", 0) if mappings else 0,
        "archive_days": expiry.get(spec.ARCHIVE_OBJECTS_PREFIX, config.archive_expiry_days),
        "claim_check_days": expiry.get(spec.CLAIM_CHECKS_PREFIX, spec.CLAIM_CHECK_EXPIRY_DAYS),
        "idempotency_days": config.idempotency_ttl_days,
        "log_retention_days": config.log_retention_days,
        "orders_pitr": True,
    }


# --- pricing: measured counts x the price table ---------------------------------------------------------------

# In-region latency of one AWS call as a Lambda waits for it (assumed: moto's timings say nothing about AWS's).
CALL_LATENCY_MS = {"dynamodb": 6.0, "sqs": 10.0, "s3": 20.0, "secretsmanager": 15.0, "events": 15.0}
# Lambda gives a function CPU in proportion to its memory: a full vCPU at 1,769 MB (AWS Lambda docs).
FULL_VCPU_MB = 1769
# Cold starts: the share of invocations that start a new instance, and the INIT time billed for each (assumed).
COLD_SHARE = 0.005
INIT_SECONDS = {"receiver": 0.5, "processor": 0.9}
# The traffic the per-delivery share of time-based costs assumes: a 300-branch group, ~26 million deliveries a month.
DELIVERIES_PER_SECOND = 10.0
RECEIVER_INSTANCES = 2
SECRET_CACHE_SECONDS = 300
SECRET_REFRESH_SECONDS = 30  # a forged signature forces at most one refresh per instance this often
XRAY_SAMPLED_SHARE = 0.05  # X-Ray's default rule: 1 request a second, then 5%
LAMBDA_POLLERS = 5  # Lambda long-polls an SQS queue with 5 pollers when idle, each ReceiveMessage waiting 20 s
PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    dollars: float  # per million deliveries, or per month for the idle stack
    detail: str


def price(result: dict[str, Any], facts: dict[str, Any]) -> tuple[list[Line], list[Line]]:
    """($ per million deliveries by service, $ per month of the idle stack) from a mix's counts and the stack."""
    n = int(result["deliveries"])
    usage: dict[str, dict[str, dict[str, float]]] = result["usage"]

    def total(unit: str, service: str, functions: tuple[str, ...] | None = None) -> float:
        return sum(
            counters.get(unit, 0.0)
            for function, calls in usage.items()
            if functions is None or function in functions
            for call, counters in calls.items()
            if call.startswith(service + ".")
        )

    def ops(service: str, unit: str) -> str:
        parts = []
        for function, calls in usage.items():
            for call, counters in calls.items():
                if call.startswith(service + "."):
                    amount = counters.get(unit, counters["requests"])
                    parts.append(f"{function} {call.split('.', 1)[1]} {amount / n:.2f}")
        return ", ".join(parts)

    lines: list[Line] = []
    lines.append(Line("api_gateway", "API Gateway REST", Price.API_GATEWAY_REST_PER_MILLION, "1 request per delivery"))

    for function in ("receiver", "processor"):
        invocations = [inv for inv in result["invocations"] if inv[0] == function]
        memory = facts["functions"][function]["memory_mb"]
        scale = FULL_VCPU_MB / memory
        # the median: a shared machine's stalls and the first invocation's wiring (cold, billed below) are not typical
        own_ms = statistics.median(inv[1] for inv in invocations) if invocations else 0.0
        billed_ms = 0
        for _, _, calls in invocations:
            waited = sum(CALL_LATENCY_MS.get(call.split(".", 1)[0], 10.0) * count for call, count in calls.items())
            billed_ms += math.ceil(own_ms * scale + waited)
        gb_seconds = (
            billed_ms / 1000 * memory / 1024 + len(invocations) * COLD_SHARE * INIT_SECONDS[function] * memory / 1024
        )
        dollars = (
            len(invocations) * Price.LAMBDA_REQUEST_PER_MILLION / PER_MILLION
            + gb_seconds * Price.LAMBDA_ARM64_GB_SECOND
        )
        lines.append(
            Line(
                f"lambda_{function}",
                f"Lambda {function}, {memory} MB arm64",
                dollars / n * PER_MILLION,
                f"{len(invocations) / n:.2f} invocations/delivery, {billed_ms / max(1, len(invocations)):.0f} ms "
                f"billed each (own code {own_ms:.1f} ms here x{scale:.1f} for {memory} MB + call latency)",
            )
        )

    wru, rru = total("wru", "dynamodb"), total("rru", "dynamodb")
    lines.append(
        Line(
            "dynamodb_writes",
            "DynamoDB writes (on-demand)",
            wru * Price.DYNAMODB_WRITE_UNIT_PER_MILLION / n,
            f"{wru / n:.2f} WRU/delivery: {ops('dynamodb', 'wru')}",
        )
    )
    lines.append(
        Line(
            "dynamodb_reads",
            "DynamoDB reads",
            rru * Price.DYNAMODB_READ_UNIT_PER_MILLION / n,
            f"{rru / n:.2f} RRU/delivery",
        )
    )
    stored = result["stored_bytes"]
    ttl_months = prices.months(facts["idempotency_days"])
    table_gb_months = (
        stored.get("dynamodb.idempotency", 0) * ttl_months
        + stored.get("dynamodb.effects", 0) * ttl_months
        + stored.get("dynamodb.orders", 0)  # one month; the orders table keeps every order
    ) / prices.GB
    pitr = stored.get("dynamodb.orders", 0) / prices.GB * Price.DYNAMODB_PITR_GB_MONTH
    lines.append(
        Line(
            "dynamodb_storage",
            "DynamoDB storage + PITR",
            (table_gb_months * Price.DYNAMODB_STORAGE_GB_MONTH + pitr) / n * PER_MILLION,
            f"{sum(v for k, v in stored.items() if k.startswith('dynamodb')) / n:.0f} B/delivery; "
            f"markers kept {facts['idempotency_days']} d, orders 1 month of each month's new ones",
        )
    )

    sqs = total("billed", "sqs")
    lines.append(
        Line(
            "sqs",
            "SQS",
            sqs * Price.SQS_STANDARD_PER_MILLION / n,
            f"{sqs / n:.2f} billed requests/delivery: {ops('sqs', 'billed')}",
        )
    )

    s3_puts = sum(
        counters["requests"]
        for calls in usage.values()
        for call, counters in calls.items()
        if call in ("s3.PutObject", "s3.CopyObject", "s3.PostObject", "s3.ListObjectsV2", "s3.CompleteMultipartUpload")
    )
    s3_gets = (
        total("requests", "s3")
        - s3_puts
        - sum(
            counters["requests"]
            for calls in usage.values()
            for call, counters in calls.items()
            if call == "s3.DeleteObject"
        )
    )
    lines.append(
        Line(
            "s3_requests",
            "S3 requests",
            (s3_puts * Price.S3_PUT_PER_THOUSAND + s3_gets * Price.S3_GET_PER_THOUSAND) / 1000 / n * PER_MILLION,
            f"{s3_puts / n:.2f} PUT + {s3_gets / n:.3f} GET per delivery: {ops('s3', 'requests')}",
        )
    )
    s3_gb_months = (
        stored.get("s3.archive", 0) * prices.months(facts["archive_days"])
        + stored.get("s3.claim-checks", 0) * prices.months(facts["claim_check_days"])
    ) / prices.GB
    lines.append(
        Line(
            "s3_storage",
            "S3 storage",
            s3_gb_months * Price.S3_STANDARD_GB_MONTH / n * PER_MILLION,
            f"archive {stored.get('s3.archive', 0) / n:.0f} B/delivery kept {facts['archive_days']} d; "
            f"claim checks {stored.get('s3.claim-checks', 0) / n:.0f} B kept {facts['claim_check_days']} d",
        )
    )

    log_bytes = dict(result["log_bytes"])
    access = facts["access_log_bytes"] + prices.LOG_EVENT_OVERHEAD_BYTES if facts["access_log_bytes"] else 0
    logged = sum(log_bytes.values()) + access * n
    lines.append(
        Line(
            "logs",
            "CloudWatch Logs ingestion",
            logged / prices.GB * Price.LOGS_INGESTION_GB / n * PER_MILLION,
            ", ".join(f"{fn} {b / n:.0f} B" for fn, b in sorted(log_bytes.items()))
            + f", API access log {access} B per delivery",
        )
    )

    hours = PER_MILLION / DELIVERIES_PER_SECOND / 3600
    forged_share = result["kinds"].get("forged", 0) / n
    refreshes = RECEIVER_INSTANCES * hours * 3600 / (SECRET_REFRESH_SECONDS if forged_share else SECRET_CACHE_SECONDS)
    cached = RECEIVER_INSTANCES * hours * 3600 / SECRET_CACHE_SECONDS
    secret_calls = min(refreshes, forged_share * PER_MILLION) + cached
    lines.append(
        Line(
            "secrets_manager",
            "Secrets Manager API",
            secret_calls / 10_000 * Price.SECRETS_API_PER_10K,
            f"{total('requests', 'secretsmanager'):.0f} GetSecretValue in the run; modelled: "
            f"cache {SECRET_CACHE_SECONDS} s x {RECEIVER_INSTANCES} instances at {DELIVERIES_PER_SECOND:.0f}/s "
            "+ forced refreshes",
        )
    )
    traced = any(f["tracing"] == "Active" for f in facts["functions"].values()) or facts["api_tracing"]
    if traced:
        lines.append(
            Line(
                "xray",
                "X-Ray traces",
                XRAY_SAMPLED_SHARE * Price.XRAY_TRACES_PER_MILLION,
                f"{XRAY_SAMPLED_SHARE:.0%} of requests sampled (default rule)",
            )
        )
    events = total("billed", "events")
    if events:
        lines.append(
            Line(
                "eventbridge",
                "EventBridge fan-out",
                events * Price.EVENTBRIDGE_EVENTS_PER_MILLION / n,
                f"{events / n:.2f} events/delivery",
            )
        )

    metrics = {tuple(map(str, metric)) for found in result["metrics"].values() for metric in found}
    idle = [
        Line(
            "idle.secret",
            "secret",
            facts["secrets"] * Price.SECRET_MONTH,
            f"{facts['secrets']} x ${Price.SECRET_MONTH:.2f}",
        ),
        Line(
            "idle.alarms",
            "alarms",
            facts["alarms"] * Price.ALARM_MONTH,
            f"{facts['alarms']} x ${Price.ALARM_MONTH:.2f}",
        ),
        Line(
            "idle.dashboard",
            "dashboard",
            facts["dashboards"] * Price.DASHBOARD_MONTH,
            f"{facts['dashboards']} x ${Price.DASHBOARD_MONTH:.2f} (free if the account has no more than 3)",
        ),
        Line(
            "idle.sqs_polling",
            "SQS long polls of Lambda's pollers",
            LAMBDA_POLLERS * prices.DAYS_PER_MONTH * 86_400 / 20 * Price.SQS_STANDARD_PER_MILLION / PER_MILLION,
            f"{LAMBDA_POLLERS} pollers x one 20 s ReceiveMessage each",
        ),
        Line(
            "idle.kms",
            "KMS keys",
            facts["kms_keys"] * Price.KMS_KEY_MONTH,
            f"{facts['kms_keys']} customer-managed keys",
        ),
    ]
    busy = Line(
        "metrics",
        "custom metrics (hours with data only)",
        len(metrics) * Price.CUSTOM_METRIC_MONTH,
        f"{len(metrics)} metrics (name x dimension set) x ${Price.CUSTOM_METRIC_MONTH:.2f}; $0 while idle",
    )
    return lines, [*idle, busy]


# --- the benchmark ---------------------------------------------------------------------------------------------

TARGET_PER_MILLION = 9.0  # issue 14: half of the ~$18 the hand estimate gave


def run(quick: bool) -> list[Any]:
    from bench.harness import run_worker
    from bench.report import Figure, Target
    from bench.stats import Summary

    deliveries = 100 if quick else 400
    quiet = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    facts = run_worker("bench.cost", ["stack"], timeout=300, env=quiet)
    # what Lambda's pollers hand over at the assumed traffic: one message at a time, unless they wait to fill a batch
    batch = max(1, min(10, round(DELIVERIES_PER_SECOND * facts["batch_window_seconds"])))
    log_format = facts["functions"]["processor"]["log_format"]
    result = run_worker("bench.cost", ["mix", str(deliveries), str(batch), log_format], timeout=900)
    lines, idle = price(result, facts)

    def figure(line: Line, unit: str) -> Figure:
        return Figure(f"cost.{line.key}", f"  {line.label}", unit, Summary.of([line.dollars]), spread=line.detail)

    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(result["kinds"].items()))
    replies = ", ".join(f"{count} x {reply}" for reply, count in sorted(result["replies"].items()))
    fixed = [line for line in idle if line.key != "metrics"]
    figures = [figure(line, "$/M") for line in lines]
    figures.append(
        Figure(
            "cost.idle_per_month",
            "idle stack, per month",
            "$/month",
            Summary.of([sum(line.dollars for line in fixed)]),
            spread="; ".join(f"{line.label} ${line.dollars:.2f}" for line in fixed if line.dollars),
        )
    )
    figures.extend(figure(line, "$/month") for line in idle if line.key == "metrics")
    figures.append(
        Figure(
            "cost.total_per_million",
            f"total, $ per million deliveries ({prices.REGION} list prices of {prices.PRICES_AS_OF})",
            "$/M",
            Summary.of([sum(line.dollars for line in lines)]),
            target=Target(TARGET_PER_MILLION),
            spread=f"{result['deliveries']} deliveries: {kinds}",
            note=f"replies: {replies}; processor batches of {batch}; {len(result['metrics'].get('receiver', []))} "
            f"receiver + {len(result['metrics'].get('processor', []))} processor metrics. Lambda time: own code "
            f"measured here, scaled to the configured memory's CPU share, plus assumed AWS call latency",
            extra={"usage": result["usage"], "stack": facts, "log_messages": result["log_messages"]},
        )
    )
    return figures


def _worker(args: list[str]) -> dict[str, Any]:
    if args[0] == "stack":
        return stack_facts()
    return measure_mix(int(args[1]), int(args[2]), args[3])


if __name__ == "__main__":
    from bench.harness import worker_main

    worker_main(_worker)
