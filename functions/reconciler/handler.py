"""Lambda entry point for the schedule (EventBridge): walk the look-back window, heal, checkpoint. Thin."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from reconciler.app import ScheduledReconciler, logger, metrics
from reconciler.wiring import build_reconciler


@cache
def app() -> ScheduledReconciler:
    """Built once per cold start; `app.cache_clear()` makes the next invocation read the environment again."""
    return build_reconciler()


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app().run(context.get_remaining_time_in_millis)
