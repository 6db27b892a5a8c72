"""Lambda entry point for POST /webhooks/klikit (API Gateway REST proxy). Thin: parse, call Intake, reply.

Imports are kept lean on purpose (no pydantic, no X-Ray SDK, no router): klikit waits on this cold start.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from klikit import observability as names
from klikit.errors import KlikitError
from klikit.headers import EVENT_ID, EVENT_TYPE, MAX_EVENT_ID_LENGTH, MAX_EVENT_TYPE_LENGTH, REPLAY
from receiver import responses
from receiver.intake import Intake
from receiver.request import from_api_gateway
from receiver.wiring import build_intake

logger = Logger(service=names.RECEIVER_SERVICE)
metrics = Metrics(namespace=names.METRICS_NAMESPACE, service=names.RECEIVER_SERVICE)


@cache
def app() -> Intake:
    """Built once per cold start; `app.cache_clear()` makes the next invocation read the environment again."""
    return build_intake()


MAX_LENGTH = {EVENT_ID: MAX_EVENT_ID_LENGTH, EVENT_TYPE: MAX_EVENT_TYPE_LENGTH}  # what a log line may carry of each


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0][: MAX_LENGTH[name]] if values else None


def _replay_mark(headers: dict[str, list[str]]) -> dict[str, Any]:
    """`replayed: true` on the log line of a delivery `klikit replay` sent again (nothing else changes)."""
    return {"replayed": True} if REPLAY in headers else {}


def _offloaded(offloaded_to_s3: bool) -> dict[str, Any]:
    """`offloaded_to_s3: true` on a claim-checked delivery's line only (`klikit events` reads its absence as false)."""
    return {"offloaded_to_s3": True} if offloaded_to_s3 else {}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    names.lean_log_keys(logger)
    metrics.add_metric(name=names.RECEIVED, unit=MetricUnit.Count, value=1)
    headers: dict[str, list[str]] = {}
    try:
        request = from_api_gateway(event)
        headers = request.headers
        logger.set_correlation_id(_first(request.headers, EVENT_ID))
        receipt = app().receive(request, context)
    except KlikitError as exc:
        reply = responses.for_error(exc)
        log = logger.warning if reply.status < 500 else logger.error
        log(
            names.LOG_NOT_ACCEPTED,
            outcome=reply.outcome,
            status=reply.status,
            reason=str(exc),
            event_type=_first(headers, EVENT_TYPE),
            **_replay_mark(headers),
        )
    except Exception:  # any bug still gets a JSON reply, and klikit will retry
        logger.exception(names.LOG_RECEIVER_FAILED)
        reply = responses.for_error(RuntimeError())
    else:
        reply = responses.for_receipt(receipt)
        admission = receipt.admission
        if admission.offloaded_to_s3 and not admission.duplicate:
            metrics.add_metric(name=names.OFFLOADED_TO_S3, unit=MetricUnit.Count, value=1)
        if receipt.secret_refreshed:
            metrics.add_metric(name=names.SECRET_REFRESHES, unit=MetricUnit.Count, value=1)
        if admission.body_differs:
            metrics.add_metric(name=names.DUPLICATE_BODY_DIFFERS, unit=MetricUnit.Count, value=1)
            logger.warning("repeat of an event id with a different body: answered as a duplicate")
        logger.info(
            names.LOG_ACCEPTED,
            outcome=reply.outcome,
            event_type=receipt.event_type,
            body_bytes=receipt.body_bytes,
            **_offloaded(admission.offloaded_to_s3),
            **_replay_mark(headers),
        )
    metrics.add_metric(name=reply.metric, unit=MetricUnit.Count, value=1)
    return reply.to_api_gateway()
