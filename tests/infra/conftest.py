"""Synthesize the stack once per session per configuration (synth is slow): the cdk.json defaults (a dev stage)
and a prod stage with every option turned on. Both run through cdk-nag; the templates feed every infra test."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

from aws_cdk.assertions import Template

from infra.app import build_app
from infra.config import StackConfig, read_cdk_json_context
from infra.stack import KlikitWebhooksStack

PROD_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:klikit/webhook-AbCdEf"
PROD_PARTNER_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:klikit/partner-api-GhIjKl"
PROD_OVERRIDES: dict[str, Any] = {
    "stage": "prod",
    "allowed_cidrs": ["203.0.113.0/24", "2001:db8::/32"],
    "alarm_email": "oncall@example.com",
    "webhook_secret": PROD_SECRET_ARN,
    "fan_out": True,
    "throttle_rate_limit": 25,
    "throttle_burst_limit": 40,
    "processor_reserved_concurrency": 8,
    "processor_max_concurrency": 6,
    "processor_timeout_seconds": 45,
    "receiver_memory_mb": 512,
    "dlq_max_receive_count": 3,
    "log_retention_days": 90,
    "archive_expiry_days": 365,
    "tracing": True,
    "silence_alarm_hours": 6,
    "reconcile_every_minutes": 15,
    "reconcile_lookback_hours": 48,
    "partner_credentials_secret": PROD_PARTNER_SECRET_ARN,
}


@dataclass
class Synthesized:
    config: StackConfig
    stack: KlikitWebhooksStack
    outdir: Path
    template_path: Path
    template: dict[str, Any]
    nag_violations: list[dict[str, Any]]

    @property
    def assertions(self) -> Template:
        return Template.from_json(self.template)

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {key: value for key, value in self.template["Resources"].items() if value["Type"] == resource_type}


def synthesize(outdir: Path, overrides: dict[str, Any]) -> Synthesized:
    # the CLI turns path metadata on; tests find resources by their construct path through it
    context = {**read_cdk_json_context(), "aws:cdk:enable-path-metadata": True, **overrides}
    app, stack = build_app(context, outdir=str(outdir))
    violations: list[dict[str, Any]] = []
    try:
        app.synth()
    except RuntimeError as error:  # cdk-nag findings: the template is written before validation fails
        if "ValidationFailed" not in str(error):
            raise
        report = json.loads((outdir / "validation-report.json").read_text())
        violations = [v for plugin in report["pluginReports"] for v in plugin["violations"]]
    template_path = outdir / stack.template_file
    return Synthesized(stack.config, stack, outdir, template_path, json.loads(template_path.read_text()), violations)


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(tmp_path_factory.mktemp("cdk-dev"), {})


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(tmp_path_factory.mktemp("cdk-prod"), PROD_OVERRIDES)


@pytest.fixture(params=["dev", "prod"], scope="session")
def each_stage(request: pytest.FixtureRequest) -> Synthesized:
    synth: Synthesized = request.getfixturevalue(request.param)
    return synth
