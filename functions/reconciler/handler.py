"""Lambda entry point for the schedule (EventBridge): walk the look-back window, heal, checkpoint. Thin."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from klikit.settings import ReconcilerSettings
from reconciler.app import ScheduledReconciler, logger, metrics

_app: ScheduledReconciler | None = None


def app() -> ScheduledReconciler:
    global _app
    if _app is None:
        _app = ScheduledReconciler.from_settings(ReconcilerSettings.from_env())
    return _app


def reset() -> None:
    """Forget the built dependencies so the next invocation reads the environment again (tests)."""
    global _app
    _app = None


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app().run(context.get_remaining_time_in_millis)
