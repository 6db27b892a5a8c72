"""Meter what the functions are billed for while they run on moto: every AWS request, and every log byte.

`AwsMeter` hooks botocore's events on the boto3 default session (the one the functions' clients come from):
`before-parameter-build` sees each request's parameters, `after-call` its response, refused or not. It counts
requests by function, service and operation, and the units each is billed in: DynamoDB write and read units from
the items' real sizes (read before and after each write through a separate, unmetered client), SQS 64 KB chunks,
S3 requests and bytes stored, EventBridge entries. `LogMeter` counts the bytes and events each function logs, and
the CloudWatch metrics its embedded-metric (EMF) lines define.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from bench import prices
from klikit.delivery import sqs_message_size

# DynamoDB writes whose item is read back before and after to size it.
_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
_READS = {"GetItem", "Query", "Scan"}


class Usage:
    """Counters per (function, "service.Operation"): requests plus the billed units the call consumed."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)

    def add(self, function: str, call: str, **amounts: float) -> None:
        counter = self.counters[(function, call)]
        counter["requests"] += 1
        for name, amount in amounts.items():
            counter[name] += amount  # type: ignore[assignment]  # Counter is typed int; billed units are floats

    def as_dict(self) -> dict[str, dict[str, dict[str, float]]]:
        """{function: {"service.Operation": {"requests": n, unit: amount, ...}}}, sorted, for JSON."""
        document: dict[str, dict[str, dict[str, float]]] = {}
        for (function, call), counter in sorted(self.counters.items()):
            document.setdefault(function, {})[call] = dict(sorted(counter.items()))
        return document


def _body_bytes(body: Any) -> int:
    if isinstance(body, bytes | bytearray):
        return len(body)
    if isinstance(body, str):
        return len(body.encode("utf-8"))
    if isinstance(body, io.BytesIO):
        return body.getbuffer().nbytes
    raise TypeError(f"cannot size an S3 body of type {type(body).__name__}")


class AwsMeter:
    """Register on the boto3 default session *before* the functions create their clients; `running(name)` says who."""

    def __init__(self, region: str) -> None:
        import boto3

        self.usage = Usage()
        self.function = "outside"
        self.s3_bytes_put: Counter[str] = Counter()  # by key prefix ("archive/", "claim-checks/")
        self.seconds: Counter[str] = Counter()  # time inside AWS calls (moto and the metering included), by function
        self._region = region
        self._probe = boto3.Session(region_name=region).client("dynamodb")  # its own session: never metered
        self._key_schemas: dict[str, list[str]] = {}
        self._session: Any = None

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def install(self) -> AwsMeter:
        import boto3

        boto3.setup_default_session()
        self._session = boto3.DEFAULT_SESSION
        assert self._session is not None
        self._session.events.register("before-parameter-build", self._before)
        self._session.events.register("after-call", self._after)
        return self

    def uninstall(self) -> None:
        if self._session is not None:
            self._session.events.unregister("before-parameter-build", self._before)
            self._session.events.unregister("after-call", self._after)
            self._session = None

    @contextlib.contextmanager
    def running(self, function: str) -> Iterator[None]:
        previous, self.function = self.function, function
        try:
            yield
        finally:
            self.function = previous

    # --- hooks -------------------------------------------------------------------------------------------------

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        service, operation = model.service_model.service_name, model.name
        metered: dict[str, Any] = {"service": service, "operation": operation, "params": params}
        metered["started"] = time.perf_counter()
        if service == "dynamodb" and operation in _WRITES:
            key = self._key(params)
            metered["key"] = key
            metered["before"] = self._item_bytes(params["TableName"], key)
        if service == "s3" and operation == "PutObject":
            metered["bytes"] = _body_bytes(params.get("Body", b""))  # before botocore wraps it in a file object
        context["cost_meter"] = metered

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        metered = context.pop("cost_meter", None)
        if metered is None:
            return
        service, operation, params = metered["service"], metered["operation"], metered["params"]
        call = f"{service}.{operation}"
        try:
            self._meter(call, service, operation, params, parsed, metered)
        finally:
            self.seconds[self.function] += time.perf_counter() - metered["started"]

    def _meter(
        self,
        call: str,
        service: str,
        operation: str,
        params: Mapping[str, Any],
        parsed: Mapping[str, Any],
        metered: Mapping[str, Any],
    ) -> None:
        error = str(parsed.get("Error", {}).get("Code", "")) if isinstance(parsed, dict) else ""
        if service == "dynamodb":
            self._dynamodb(call, operation, params, parsed, metered, error)
        elif service == "sqs":
            self.usage.add(self.function, call, billed=self._sqs_billed(operation, params, parsed))
        elif service == "s3":
            amounts: dict[str, float] = {}
            if operation == "PutObject" and not error:
                size = int(metered["bytes"])
                amounts["bytes"] = size
                prefix = str(params.get("Key", "")).split("/", 1)[0] + "/"
                self.s3_bytes_put[prefix] += size
            self.usage.add(self.function, call, **amounts)
        elif service == "events" and operation == "PutEvents":
            entries = params.get("Entries", [])
            self.usage.add(self.function, call, billed=sum(prices.sqs_requests(len(json.dumps(e))) for e in entries))
        else:
            self.usage.add(self.function, call)

    # --- DynamoDB ----------------------------------------------------------------------------------------------

    def _key(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if "Key" in params:
            return dict(params["Key"])
        table = params["TableName"]
        if table not in self._key_schemas:
            described = self._probe.describe_table(TableName=table)["Table"]["KeySchema"]
            self._key_schemas[table] = [element["AttributeName"] for element in described]
        return {name: params["Item"][name] for name in self._key_schemas[table]}

    def _item_bytes(self, table: str, key: Mapping[str, Any]) -> int:
        # Straight from in-process moto's store: a GetItem would spend ~50 ms serializing a cart-sized item.
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        item = dynamodb_backends[DEFAULT_ACCOUNT_ID][self._region].get_item(table, dict(key))
        return prices.item_bytes(item.to_json()["Attributes"] if item is not None else None)

    def _dynamodb(
        self,
        call: str,
        operation: str,
        params: Mapping[str, Any],
        parsed: Mapping[str, Any],
        metered: Mapping[str, Any],
        error: str,
    ) -> None:
        if operation in _WRITES:
            before = int(metered["before"])
            after = before if error else self._item_bytes(params["TableName"], metered["key"])
            # a refused conditional write is billed on the item as it stands, like any other write
            amounts = {"wru": prices.write_units(before, after)}
            if error == "ConditionalCheckFailedException":
                amounts["refused"] = 1
            self.usage.add(self.function, call, **amounts)
        elif operation in _READS:
            items = [parsed["Item"]] if parsed.get("Item") else list(parsed.get("Items", []))
            returned = sum(prices.item_bytes(item) for item in items)
            consistent = bool(params.get("ConsistentRead"))
            self.usage.add(self.function, call, rru=prices.read_units(returned, consistent))
        else:  # any other DynamoDB call is counted, and shows up unpriced in the report
            self.usage.add(self.function, call, unpriced=1)

    # --- SQS ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _sqs_billed(operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> int:
        if operation == "SendMessage":
            size = sqs_message_size(params.get("MessageBody", ""), params.get("MessageAttributes"))
        elif operation == "SendMessageBatch":
            size = sum(
                sqs_message_size(entry.get("MessageBody", ""), entry.get("MessageAttributes"))
                for entry in params.get("Entries", [])
            )
        elif operation == "ReceiveMessage":
            size = sum(
                sqs_message_size(message.get("Body", ""), message.get("MessageAttributes"))
                for message in parsed.get("Messages", [])
            )
        else:
            size = 0
        return prices.sqs_requests(size)


class _EmfTap(io.TextIOBase):
    """Stands in for stdout during an invocation: keeps the EMF lines Powertools Metrics prints, drops the rest."""

    def __init__(self, sink: LogMeter) -> None:
        self._sink = sink
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._buffer = (self._buffer + text).split("\n")
        for line in lines:
            self._sink.emf_line(line)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            self._sink.emf_line(self._buffer)
            self._buffer = ""


class _LogLines(logging.Handler):
    def __init__(self, sink: LogMeter, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self._sink = sink
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.log_line(self.format(record))


class LogMeter:
    """Bytes and events each function sends to CloudWatch Logs, and the custom metrics its EMF lines define.

    Log lines are taken from the Powertools loggers themselves (formatted by their own formatter), since a
    Powertools Logger writes to the stream it was created with; EMF lines are printed, so stdout is swapped for
    the length of an invocation.
    """

    def __init__(self, services: Mapping[str, str]) -> None:
        self._services = services  # logger name -> function
        self.function = "outside"
        self.bytes: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.messages: Counter[tuple[str, str]] = Counter()  # (function, message) -> count
        self.metrics: dict[str, set[tuple[str, str, tuple[tuple[str, str], ...]]]] = defaultdict(set)
        self._handlers: list[tuple[logging.Logger, logging.Handler]] = []

    def install(self) -> LogMeter:
        for name in self._services:
            logger = logging.getLogger(name)
            formatter = next((h.formatter for h in logger.handlers if h.formatter is not None), None)
            handler = _LogLines(self, formatter)
            logger.addHandler(handler)
            self._handlers.append((logger, handler))
        return self

    def uninstall(self) -> None:
        for logger, handler in self._handlers:
            logger.removeHandler(handler)
        self._handlers.clear()

    @contextlib.contextmanager
    def running(self, function: str) -> Iterator[None]:
        previous, self.function = self.function, function
        tap = _EmfTap(self)
        try:
            with contextlib.redirect_stdout(tap):
                yield
        finally:
            tap.flush()
            self.function = previous

    def platform_lines(self, lines: list[str]) -> None:
        for line in lines:
            self._count(line)

    def log_line(self, line: str) -> None:
        self._count(line)
        try:
            message = json.loads(line).get("message")
        except (ValueError, AttributeError):
            message = None
        self.messages[(self.function, str(message))] += 1

    def emf_line(self, line: str) -> None:
        if not line.strip():
            return
        try:
            document = json.loads(line)
        except ValueError:
            return
        if not isinstance(document, dict) or "_aws" not in document:
            return  # a log line that also reached stdout is counted by the logging handler
        self._count(line)
        for directive in document["_aws"].get("CloudWatchMetrics", []):
            namespace = directive.get("Namespace", "")
            for dimension_set in directive.get("Dimensions", []):
                dimensions = tuple(sorted((name, str(document.get(name, ""))) for name in dimension_set))
                for metric in directive.get("Metrics", []):
                    self.metrics[self.function].add((namespace, metric["Name"], dimensions))

    def _count(self, line: str) -> None:
        self.bytes[self.function] += len(line.encode("utf-8")) + prices.LOG_EVENT_OVERHEAD_BYTES
        self.events[self.function] += 1


@contextlib.contextmanager
def metered(region: str, services: Mapping[str, str]) -> Iterator[tuple[AwsMeter, LogMeter]]:
    """Both meters installed for the block, and removed after it (tests share the process with other tests)."""
    aws = AwsMeter(region).install()
    logs = LogMeter(services).install()
    try:
        yield aws, logs
    finally:
        logs.uninstall()
        aws.uninstall()
        sys.stdout.flush()
