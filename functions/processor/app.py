"""What the processor does with each SQS record: resolve, parse, project, dispatch, archive, each effect once.

1. Read the record (`klikit.delivery`) and the exact bytes klikit signed, inline or from S3, hash-checked.
2. Unknown event type: count it and give it to the catch-all handlers, if any. Known: parse the envelope.
3. For every order, in array order: the order projection decides what is news (processor.projection), then each
   handler runs at most once per effect key (processor.idempotency: handler, order id and the order as signed;
   created.v2 handlers once per order) through Powertools idempotency. Status and cart handlers run only when the
   projection took the event as news for that order, unless registered with `include_stale=True`. A handler that
   fails makes the record fail (SQS redelivers it) after the other handlers ran; on the retry, the handlers that
   succeeded are skipped. A body already processed under another event id is counted (`ReplayedUnderNewId`).
4. Archive the bytes after the effects, so an S3 outage does not hold up the POS: the batch's deliveries go in one
   object per received minute at the end of the batch (processor.archive, klikit.archive). A failed archive write
   fails the records of that object, which SQS retries (effects are not repeated) and finally moves to the DLQ,
   which alarms. Nothing signed leaves the pipeline unarchived without an alarm.

Poison (not ours, not JSON, invalid envelope, hash mismatch, claim check gone) goes to the DLQ with its reason
and the record counts as handled: no retry can fix it. An unusable order is quarantined that way after the other
orders of its delivery were processed. Every failure outside the handlers (reading a claim check, projecting,
archiving, quarantining) logs one line with its step and error type and counts in `EventsFailed`.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
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
from klikit.delivery import EVENT_ID, EVENT_TYPE, QueuedDelivery, message_attribute, queued_delivery, read_body
from klikit.errors import PoisonDelivery
from klikit.events import KNOWN_EVENT_TYPES, ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from klikit.formats import iso_z
from klikit.headers import MAX_EVENT_TYPE_LENGTH
from processor.archive import BatchArchive, Unarchived, failed_message_ids, with_failures
from processor.failures import safe_message
from processor.idempotency import catch_all_effect_key, digest, effect_key
from processor.metrics import BatchMetrics
from processor.models import OrderEvent, UnknownEvent, parse_envelope, parse_order, parse_received_at
from processor.ports import DeadLetters, OrdersTable, Payloads, Publisher
from processor.projection import CART, STATUS, Projection, project
from processor.registry import REGISTRY, Registered, Registry
from processor.tracing import Span, no_span

logger = Logger(service=names.PROCESSOR_SERVICE)

# Pinned so the idempotency keys survive a function rename or a new stack; changing it re-runs every handler.
EFFECT_KEY_PREFIX = "klikit-processor.effect"
PROJECTION_HANDLER = "klikit.order-projection"
FANOUT_HANDLER = "klikit.eventbridge-fanout"
# The projection part a handler of each event type cares about: it runs only when the event is news for it.
NEWS_PART = {ORDER_STATUS_UPDATED: STATUS, ORDER_CART_UPDATED: CART}


@dataclass(frozen=True)
class Resolved:
    queued: QueuedDelivery
    body: bytes
    received_at: Any


class ProcessorApp:
    def __init__(
        self,
        *,
        payloads: Payloads,
        quarantine: DeadLetters,
        orders: OrdersTable,
        bus: Publisher | None,
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
        self._archive = BatchArchive()
        self._idempotency = IdempotencyConfig(
            event_key_jmespath="effect_key",
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
        # The projection runs first and outside the effects table: its conditional writes are idempotent already.
        # The fan-out publishes every signed order fact once, news or not (subscribers order by updated_at).
        self._builtins = [] if bus is None else [Registered(FANOUT_HANDLER, self._publish, include_stale=True)]

    # --- the batch -------------------------------------------------------------------------------------------

    def handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        self._idempotency.register_lambda_context(context)
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        self._archive = BatchArchive()  # this batch's deliveries only, whatever became of the last invocation
        try:
            response = dict(process_partial_response(event, self.process_record, processor, context))
            already = set(failed_message_ids(response))
            unarchived: list[str] = []
            self._archive.write(self._payloads, lambda failed: unarchived.extend(self._archive_failed(failed, already)))
            return with_failures(response, unarchived)
        finally:
            self._metrics.flush()

    def process_record(self, record: SQSRecord) -> None:
        raw = record.raw_event
        with (
            self._span(message_attribute(raw, EVENT_ID), message_attribute(raw, EVENT_TYPE)),
            logger.append_context_keys(message_id=raw.get("messageId"), receive_count=_receive_count(raw)),
        ):
            try:
                self._process(raw)
            except Exception:
                # the alarms watch this series: every record that fails, whatever step failed, counts once
                self._metrics.count(names.PROCESSING_FAILED, message_attribute(raw, EVENT_TYPE) or "")
                raise

    # --- steps -----------------------------------------------------------------------------------------------

    def _process(self, raw: Mapping[str, Any]) -> None:
        try:
            resolved = self._resolve(raw)
        except PoisonDelivery as poison:
            self._send_to_dlq(raw, poison)
            return
        except Exception as exc:
            _step_failed("read_body", "the delivery's body could not be read (claim check in S3)", exc)
            raise
        queued = resolved.queued
        with logger.append_context_keys(event_id=queued.event_id, event_type=queued.event_type):
            failed: Exception | None = None
            try:
                self._dispatch(raw, resolved)
            except Exception as exc:  # noqa: BLE001 - archived first, then re-raised: the record fails either way
                failed = exc
            self._archive.add(str(raw.get("messageId") or ""), queued, resolved.body)  # written after the batch
            if failed is not None:
                raise failed

    def _resolve(self, raw: Mapping[str, Any]) -> Resolved:
        queued = queued_delivery(raw)
        received_at = parse_received_at(queued.received_at)
        body = read_body(queued, self._payloads.get_object)
        return Resolved(queued, body, received_at)

    def _archive_failed(self, failed: Unarchived, already: set[str]) -> list[str]:
        """Count and log records whose archive object was not written; their message ids, to fail them."""
        for message_id, event_type in zip(failed.message_ids, failed.event_types, strict=True):
            self._metrics.count(names.ARCHIVE_FAILED, event_type)
            if message_id not in already:  # the alarms' series counts every failed record once
                self._metrics.count(names.PROCESSING_FAILED, event_type)
        with logger.append_context_keys(event_ids=failed.event_ids[:10]):
            _step_failed("archive", "the raw delivery could not be archived; the record is retried", failed.error)
        return failed.message_ids

    def _send_to_dlq(self, raw: Mapping[str, Any], poison: PoisonDelivery) -> None:
        event_type = message_attribute(raw, EVENT_TYPE) or ""
        try:
            self._quarantine.send(raw, poison.reason, poison.detail)
        except Exception as exc:
            # the record fails and SQS retries it (and moves it to the DLQ after enough tries)
            _step_failed("quarantine", "a poison delivery could not be sent to the DLQ", exc)
            raise
        self._metrics.count(names.QUARANTINED, event_type)
        logger.error(
            names.LOG_QUARANTINED,
            event_id=message_attribute(raw, EVENT_ID),
            event_type=event_type[:MAX_EVENT_TYPE_LENGTH],
            reason=poison.reason,
            detail=poison.detail,
        )

    def _dispatch(self, raw: Mapping[str, Any], resolved: Resolved) -> None:
        queued = resolved.queued
        known = queued.event_type in KNOWN_EVENT_TYPES
        handlers = [*(self._builtins if known else []), *self._registry.handlers_for(queued.event_type)]
        if not known and not handlers:
            self._unknown(resolved)
            return
        try:
            envelope = parse_envelope(resolved.body)
        except PoisonDelivery as poison:
            self._send_to_dlq(raw, poison)
            return
        if envelope.smoke:  # `./klikit smoke`: prove the projection, never call the POS or publish the event
            handlers = []
        failures: list[Exception] = []
        unusable: list[PoisonDelivery] = []
        replayed: set[str] = set()
        order_ids: list[str] = []
        # In array order, each entry its own effect: the same order twice in one delivery is two facts.
        for index, raw_order in enumerate(envelope.orders):
            try:
                order = parse_order(index, raw_order)
            except PoisonDelivery as poison:
                unusable.append(poison)
                continue
            order_ids.append(order.id)
            event = OrderEvent(
                event_id=queued.event_id,
                event_type=queued.event_type,
                received_at=resolved.received_at,
                brand_id=envelope.brand_id,
                branch_id=envelope.branch_id,
                order=order,
                raw_order=raw_order,
                source=queued.source,
                order_digest=digest(raw_order),
            )
            with logger.append_context_keys(order_id=order.id):
                projection: Projection | None = None
                if known:
                    try:
                        projection = self._project(event)
                    except PoisonDelivery as poison:
                        unusable.append(poison)
                        continue
                    except Exception as exc:  # noqa: BLE001 - the record fails; the other orders still run
                        _step_failed("projection", "the order projection could not be written", exc)
                        failures.append(exc)
                        continue
                    replayed |= projection.earlier_event_ids
                hearing = [handler for handler in handlers if _hears(handler, event, projection)]
                failures.extend(self._run_handlers(hearing, event))
        if replayed:
            self._metrics.count(names.REPLAYED_UNDER_NEW_ID, queued.event_type)
            logger.warning(
                "delivery already processed under another event id: its effects were not repeated",
                earlier_event_ids=sorted(replayed)[:5],
            )
        unusable += [failure for failure in failures if isinstance(failure, PoisonDelivery)]
        if unusable:
            # an order no retry can store (or a handler that said so): quarantine now instead of burning retries,
            # after the other orders were processed; a redrive after a fix re-runs only what did not complete
            first = unusable[0]
            more = f" (+{len(unusable) - 1} more)" if len(unusable) > 1 else ""
            self._send_to_dlq(raw, PoisonDelivery(first.reason, first.detail + more))
            return
        if failures:
            raise ExceptionGroup(f"{len(failures)} handler call(s) failed for event {queued.event_id}", failures)
        self._metrics.count(names.PROCESSED, queued.event_type)
        logger.info(
            names.LOG_PROCESSED,
            orders=len(envelope.orders),
            handlers=len(handlers),
            order_ids=order_ids,  # `klikit events --order` finds deliveries by these
            branch_id=envelope.branch_id,
        )

    def _unknown(self, resolved: Resolved) -> None:
        queued = resolved.queued
        self._metrics.count(names.UNKNOWN_EVENT_TYPE, queued.event_type)
        catch_all = self._registry.catch_all()
        logger.warning(names.LOG_UNKNOWN_TYPE, catch_all_handlers=len(catch_all))
        event = UnknownEvent(queued.event_id, queued.event_type, resolved.received_at, resolved.body)
        failures = []
        for handler in catch_all:
            key = catch_all_effect_key(handler.name, queued.body_sha256)
            failures += self._run_handler(handler, key, replace(event, effect_key=key))
        if failures:
            raise ExceptionGroup(f"{len(failures)} catch-all handler call(s) failed", failures)

    def _run_handlers(self, handlers: list[Registered], event: OrderEvent) -> list[Exception]:
        failures: list[Exception] = []
        for handler in handlers:
            key = effect_key(handler.name, event.event_type, event.order_id, event.order_digest)
            failures += self._run_handler(handler, key, replace(event, effect_key=key))
        return failures

    def _run_handler(self, handler: Registered, key: str, event: Any) -> list[Exception]:
        try:
            self._run_once(effect={"effect_key": key, "handler": handler.name}, call=_bind(handler.function, event))
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
            return [exc]
        return []

    def _run_effect(self, effect: dict[str, str], call: Callable[[], Any]) -> dict[str, str]:
        result = call()
        return {"handler": effect["handler"], "outcome": result if isinstance(result, str) else "done"}

    # --- built-in handlers -----------------------------------------------------------------------------------

    def _project(self, event: OrderEvent) -> Projection:
        projection = project(event, event.order_digest, self._orders)
        if projection.stale:
            self._metrics.count(names.STALE_IGNORED, event.event_type)
            logger.info(names.LOG_STALE)
        return projection

    def _publish(self, event: OrderEvent) -> None:
        assert self._bus is not None
        detail = {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "received_at": iso_z(event.received_at, "auto"),
            "brand_id": event.brand_id,
            "branch_id": event.branch_id,
            "order": event.raw_order,
        }
        self._bus.publish(event.event_type, detail)


def _hears(handler: Registered, event: OrderEvent, projection: Projection | None) -> bool:
    """Whether a handler hears of this order event: status and cart handlers only of news, unless they opted in."""
    if handler.include_stale or projection is None or event.event_type == ORDER_CREATED:
        return True  # created.v2 handlers: once per order, by their effect key
    part = NEWS_PART.get(event.event_type)
    return part is None or projection.is_news_for(part)


def _step_failed(step: str, message: str, exc: BaseException) -> None:
    """One line for a failure outside the handlers: the step and the error type (messages may quote data)."""
    logger.error(message, step=step, error_type=type(exc).__name__, error_code=_error_code(exc))


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code")) if isinstance(response, Mapping) else None


def _bind(function: Callable[[Any], Any], event: Any) -> Callable[[], Any]:
    return lambda: function(event)


def _receive_count(raw: Mapping[str, Any]) -> str | None:
    attributes = raw.get("attributes") or raw.get("Attributes") or {}
    count = attributes.get("ApproximateReceiveCount") if isinstance(attributes, Mapping) else None
    return str(count) if count is not None else None
