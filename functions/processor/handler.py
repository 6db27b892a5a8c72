"""Lambda entry point for the SQS event source: partial batch responses, dependencies built once per cold start."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

import processor.integrations  # noqa: F401  registers the user's handlers
from klikit.observability import REDUNDANT_LOG_KEYS
from klikit.settings import ProcessorSettings
from processor.app import ProcessorApp, logger

_app: ProcessorApp | None = None


def app() -> ProcessorApp:
    global _app
    if _app is None:
        _app = ProcessorApp.from_settings(ProcessorSettings.from_env())
    return _app


def reset() -> None:
    """Forget the built dependencies so the next invocation reads the environment again (tests)."""
    global _app
    _app = None


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.remove_keys(REDUNDANT_LOG_KEYS)
    return app().handle(event, context)
