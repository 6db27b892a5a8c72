"""cdk-nag AwsSolutions and cfn-lint on the synthesized templates; cdk.json runs the app the repo's way."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from infra.config import CDK_JSON, REPO_ROOT
from tests.infra.conftest import Synthesized

CFN_LINT = Path(sys.executable).parent / "cfn-lint"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]


def test_cdk_nag_aws_solutions_has_no_unacknowledged_findings(each_stage: Synthesized) -> None:
    findings = [
        f"{v['ruleName']} at {c['constructPath']}: {v['description']}"
        for v in each_stage.nag_violations
        for c in v["violatingConstructs"]
    ]
    assert findings == []


def acknowledgements(synth: Synthesized) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for node in synth.stack.node.find_all():
        for entry in node.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                found.extend({"id": rule, "reason": reason} for rule, reason in entry.data.items())
    return found


def test_every_nag_acknowledgement_carries_a_reason(each_stage: Synthesized) -> None:
    acks = acknowledgements(each_stage)
    assert acks, "acknowledgements are recorded on the constructs"
    for ack in acks:
        assert ack["id"].startswith("AwsSolutions::AwsSolutions-")
        assert len(ack["reason"].split()) >= 15, ack  # a sentence a reviewer can judge, not a placeholder


def test_cfn_lint_finds_nothing(each_stage: Synthesized) -> None:
    # run from the repo root so .cfnlintrc.yaml applies (it ignores CDK's redundant DependsOn, W3005)
    result = subprocess.run(
        [str(CFN_LINT), "--format", "parseable", str(each_stage.template_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_cdk_json_runs_the_app_with_the_repo_virtualenv_and_recommended_flags() -> None:
    cdk_json = json.loads(CDK_JSON.read_text())
    assert cdk_json["app"] == ".venv/bin/python -m infra.app"
    flags = [key for key in cdk_json["context"] if key.startswith("@aws-cdk")]
    assert len(flags) > 50, "`cdk flags --recommended` output is committed, so synth prints no flag warnings"


def test_preflight_requires_the_bootstrap_version_the_cloud_assembly_needs(dev: Synthesized) -> None:
    from tools.preflight import REQUIRED_BOOTSTRAP_VERSION

    manifest = (dev.outdir / "manifest.json").read_text()
    required = [int(version) for version in re.findall(r'"requiresBootstrapStackVersion":\s*(\d+)', manifest)]
    assert max(required) == REQUIRED_BOOTSTRAP_VERSION
    rule = dev.template["Rules"]["CheckBootstrapVersion"]["Assertions"][0]["Assert"]
    assert rule["Fn::Not"][0]["Fn::Contains"][0] == [str(version) for version in range(1, 6)], "deploying needs 6"
