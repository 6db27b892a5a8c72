"""CDK entry point (cdk.json runs `.venv/bin/python -m infra.app`): one stack, checked by cdk-nag AwsSolutions."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import ConfigError, check_deployable, load_config
from infra.nag import acknowledge_findings
from infra.stack import KlikitWebhooksStack


def build_app(
    context: Mapping[str, Any] | None = None, outdir: str | None = None
) -> tuple[cdk.App, KlikitWebhooksStack]:
    """The app with its stack. The CLI passes cdk.json's context itself; tests pass it in (cdk.App does not read it)."""
    app = cdk.App(context=dict(context) if context is not None else None, outdir=outdir)
    config = load_config(app.node.get_all_context())
    check_deployable(config)
    stack = KlikitWebhooksStack(app, config.stack_name, config=config)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    acknowledge_findings(stack)
    return app, stack


def main() -> None:
    try:
        app, _ = build_app()
    except ConfigError as exc:  # one line naming the key and the value, not a traceback
        sys.exit(f"cdk.json: {exc}")
    app.synth()


if __name__ == "__main__":
    main()
