"""What the processor does with each SQS record: resolve, archive, parse, dispatch, each effect once.

1. Read the record (`klikit.delivery`) and the exact bytes klikit signed, inline or from S3, hash-checked.
2. Archive the bytes under `archive/<event id>` (replay by event id).
3. Unknown event type: count it and give it to the catch-all handlers, if any. Known: parse the envelope.
4. For every order, run every handler for the event type, each at most once per (event id, order id, handler)
   through Powertools idempotency. A handler that fails makes the record fail (so SQS redelivers it) after the
   other handlers ran; on the retry, the handlers that succeeded are skipped.

Poison (not ours, not JSON, invalid envelope, hash mismatch, claim check gone) goes to the DLQ with its reason
and the record counts as handled: no retry can fix it.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from klikit import observability as names
from klikit.aws import client
from klikit.delivery import EVENT_ID, EVENT_TYPE, QueuedDelivery, message_attribute, queued_delivery, read_body
from klikit.errors import PoisonDelivery
from klikit.events import KNOWN_EVENT_TYPES
from klikit.settings import ProcessorSettings
from processor.adapters import DynamoOrdersTable, EventBus, PayloadBucket, Quarantine
from processor.failures import safe_message
from processor.metrics import BatchMetrics
from processor.models import OrderEvent, UnknownEvent, parse_envelope, parse_received_at
from processor.projection import Outcome, project
from processor.registry import REGISTRY, Registered, Registry
from processor.tracing import Span, no_span, xray_span

logger = Logger(service=names.PROCESSOR_SERVICE)

# Pinned so the idempotency keys survive a function rename or a new stack; changing it re-runs every handler.
EFFECT_KEY_PREFIX = "klikit-processor.effect"
PROJECTION_HANDLER = "klikit.order-projection"
FANOUT_HANDLER = "klikit.eventbridge-fanout"


@dataclass(frozen=True)
class Resolved:
    queued: QueuedDelivery
    body: bytes
    received_at: Any


class ProcessorApp:
    def __init__(
        self,
        *,
        payloads: PayloadBucket,
        quarantine: Quarantine,
        orders: DynamoOrdersTable,
        bus: EventBus | None,
        persistence: DynamoDBPersistenceLayer,
        effects_ttl_seconds: int,
        registry: Registry = REGISTRY,
        span: Span = no_span,
    ) -> None:
        self._payloads = payloads
        self._quarantine = quarantine
        self._orders = orders
        self._bus = bus
        self._registry = registry
        self._span = span
        self._metrics = BatchMetrics()
        self._idempotency = IdempotencyConfig(
            event_key_jmespath="[event_id, order_id, handler]",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=effects_ttl_seconds,
        )
        self._run_once = idempotent_function(
            self._run_effect,
            data_keyword_argument="effect",
            persistence_store=persistence,
            config=self._idempotency,
            key_prefix=EFFECT_KEY_PREFIX,
        )
        self._builtins = [Registered(PROJECTION_HANDLER, self._project)]
        if bus is not None:
            self._builtins.append(Registered(FANOUT_HANDLER, self._publish))

    @classmethod
    def from_settings(cls, settings: ProcessorSettings, registry: Registry = REGISTRY) -> ProcessorApp:
        timeout = settings.aws_call_timeout_seconds
        return cls(
            payloads=PayloadBucket(client("s3", timeout), settings.payload_bucket),
            quarantine=Quarantine(client("sqs", timeout), settings.dlq_url),
            orders=DynamoOrdersTable(client("dynamodb", timeout), settings.orders_table),
            bus=EventBus(client("events", timeout), settings.event_bus_name) if settings.event_bus_name else None,
            persistence=DynamoDBPersistenceLayer(
                table_name=settings.effects_table, boto3_client=client("dynamodb", timeout)
            ),
            effects_ttl_seconds=settings.effects_ttl_seconds,
            registry=registry,
            span=xray_span() if settings.tracing else no_span,
        )

    # --- the batch -------------------------------------------------------------------------------------------

    def handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        self._idempotency.register_lambda_context(context)
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        try:
            return dict(process_partial_response(event, self.process_record, processor, context))
        finally:
            self._metrics.flush()

    def process_record(self, record: SQSRecord) -> None:
        raw = record.raw_event
        with (
            self._span(message_attribute(raw, EVENT_ID), message_attribute(raw, EVENT_TYPE)),
            logger.append_context_keys(message_id=raw.get("messageId"), receive_count=_receive_count(raw)),
        ):
            try:
                resolved = self._resolve(raw)
            except PoisonDelivery as poison:
                self._send_to_dlq(raw, poison)
                return
            with logger.append_context_keys(event_id=resolved.queued.event_id, event_type=resolved.queued.event_type):
                self._dispatch(raw, resolved)

    # --- steps -----------------------------------------------------------------------------------------------

    def _resolve(self, raw: Mapping[str, Any]) -> Resolved:
        queued = queued_delivery(raw)
        received_at = parse_received_at(queued.received_at)
        body = read_body(queued, self._payloads.get_object)
        self._payloads.archive(queued, body)
        return Resolved(queued, body, received_at)

    def _send_to_dlq(self, raw: Mapping[str, Any], poison: PoisonDelivery) -> None:
        event_type = message_attribute(raw, EVENT_TYPE) or ""
        # A failed send raises: the record fails and SQS retries it (and moves it to the DLQ after enough tries).
        self._quarantine.send(raw, poison.reason, poison.detail)
        self._metrics.count(names.QUARANTINED, event_type)
        logger.error(
            "poison delivery quarantined in the DLQ",
            event_id=message_attribute(raw, EVENT_ID),
            event_type=event_type[:128],
            reason=poison.reason,
        )

    def _handlers_for(self, event_type: str) -> list[Registered]:
        builtins = self._builtins if event_type in KNOWN_EVENT_TYPES else []
        return [*builtins, *self._registry.handlers_for(event_type)]

    def _dispatch(self, raw: Mapping[str, Any], resolved: Resolved) -> None:
        queued = resolved.queued
        handlers = self._handlers_for(queued.event_type)
        if not handlers:
            self._unknown(resolved)
            return
        try:
            envelope, raw_orders = parse_envelope(resolved.body)
        except PoisonDelivery as poison:
            self._send_to_dlq(raw, poison)
            return
        if envelope.smoke:  # `./klikit smoke`: prove the projection, never call the POS or publish the event
            handlers = [builtin for builtin in handlers if builtin.name == PROJECTION_HANDLER]
        failures: list[Exception] = []
        for order, raw_order in zip(envelope.orders, raw_orders, strict=True):
            event = OrderEvent(
                event_id=queued.event_id,
                event_type=queued.event_type,
                received_at=resolved.received_at,
                brand_id=envelope.brand_id,
                branch_id=envelope.branch_id,
                order=order,
                raw_order=raw_order,
            )
            with logger.append_context_keys(order_id=order.id):
                failures.extend(self._run_handlers(handlers, event.event_id, order.id, event))
        unusable = next((failure for failure in failures if isinstance(failure, PoisonDelivery)), None)
        if unusable is not None:
            # an order no retry can store (or a handler that said so): quarantine now instead of burning retries;
            # after a fix, a redrive re-runs only the effects that did not complete
            self._send_to_dlq(raw, unusable)
            return
        if failures:
            self._metrics.count(names.PROCESSING_FAILED, queued.event_type)
            raise ExceptionGroup(f"{len(failures)} handler call(s) failed for event {queued.event_id}", failures)
        self._metrics.count(names.PROCESSED, queued.event_type)
        logger.info(
            names.LOG_PROCESSED,
            orders=len(envelope.orders),
            handlers=len(handlers),
            order_ids=[order.id for order in envelope.orders],  # `klikit events --order` finds deliveries by these
            branch_id=envelope.branch_id,
        )

    def _unknown(self, resolved: Resolved) -> None:
        queued = resolved.queued
        self._metrics.count(names.UNKNOWN_EVENT_TYPE, queued.event_type)
        catch_all = self._registry.catch_all()
        logger.warning("unknown event type archived", catch_all_handlers=len(catch_all))
        event = UnknownEvent(queued.event_id, queued.event_type, resolved.received_at, resolved.body)
        failures = self._run_handlers(catch_all, queued.event_id, "", event)
        if failures:
            self._metrics.count(names.PROCESSING_FAILED, queued.event_type)
            raise ExceptionGroup(f"{len(failures)} catch-all handler call(s) failed", failures)

    def _run_handlers(self, handlers: list[Registered], event_id: str, order_id: str, event: Any) -> list[Exception]:
        failures: list[Exception] = []
        for handler in handlers:
            effect = {"event_id": event_id, "order_id": order_id, "handler": handler.name}
            try:
                self._run_once(effect=effect, call=_bind(handler.function, event))
            except Exception as exc:  # noqa: BLE001 - a user handler may raise anything; the record fails, not the batch
                # The message is kept (a POS integrator needs "422 unknown SKU"), with the order's customer data
                # taken out; the frames (file, line, code) locate the fault.
                logger.error(
                    names.LOG_HANDLER_FAILED,
                    handler=handler.name,
                    error_type=type(exc).__name__,
                    error_message=safe_message(exc, getattr(event, "raw_order", None)),
                    frames="".join(traceback.format_tb(exc.__traceback__)),
                )
                failures.append(exc)
        return failures

    def _run_effect(self, effect: dict[str, str], call: Callable[[], Any]) -> dict[str, str]:
        result = call()
        return {"handler": effect["handler"], "outcome": result if isinstance(result, str) else "done"}

    # --- built-in handlers -----------------------------------------------------------------------------------

    def _project(self, event: OrderEvent) -> str:
        outcome = project(event, self._orders)
        if outcome is Outcome.STALE:
            self._metrics.count(names.STALE_IGNORED, event.event_type)
            logger.info("stale event ignored by the order projection")
        return outcome.value

    def _publish(self, event: OrderEvent) -> None:
        assert self._bus is not None
        detail = {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "received_at": event.received_at.isoformat().replace("+00:00", "Z"),
            "brand_id": event.brand_id,
            "branch_id": event.branch_id,
            "order": event.raw_order,
        }
        self._bus.publish(event.event_type, detail)


def _bind(function: Callable[[Any], Any], event: Any) -> Callable[[], Any]:
    return lambda: function(event)


def _receive_count(raw: Mapping[str, Any]) -> str | None:
    attributes = raw.get("attributes") or raw.get("Attributes") or {}
    count = attributes.get("ApproximateReceiveCount") if isinstance(attributes, Mapping) else None
    return str(count) if count is not None else None
