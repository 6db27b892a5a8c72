"""Lambda entry point for the SQS event source: partial batch responses, dependencies built once per cold start."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

import processor.integrations  # noqa: F401  registers the user's handlers
from klikit.observability import lean_log_keys
from processor.app import ProcessorApp, logger
from processor.wiring import build_app


@cache
def app() -> ProcessorApp:
    """Built once per cold start; `app.cache_clear()` makes the next invocation read the environment again."""
    return build_app()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    lean_log_keys(logger)
    return app().handle(event, context)
