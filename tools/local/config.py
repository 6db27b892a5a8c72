"""The deployment settings the local stack shares with `cdk deploy`: cdk.json's context, through infra/config.py."""

from __future__ import annotations

from infra.config import CDK_JSON, StackConfig, config_from_cdk_json


def stack_config() -> StackConfig:
    """cdk.json's values (receive count, TTLs, timeouts, log level), or the stack's defaults when there is none."""
    return config_from_cdk_json(CDK_JSON) if CDK_JSON.exists() else StackConfig()
