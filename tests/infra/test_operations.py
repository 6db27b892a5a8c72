"""What operators get from the stack: the silence alarm, the saved Logs Insights queries, X-Ray tracing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra import insights, spec
from infra.config import ConfigError, load_config
from klikit import observability as names
from tests.infra.conftest import Synthesized, synthesize
from tests.infra.helpers import function, logical_id
from tools import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]


def silence_alarms(synth: Synthesized) -> list[dict[str, Any]]:
    return [
        alarm["Properties"]
        for alarm in synth.resources("AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == names.ENQUEUED
    ]


@pytest.mark.parametrize(("stage", "hours"), [("dev", 16), ("prod", 6)])
def test_no_accepted_delivery_for_n_hours_raises_the_silence_alarm(
    stage: str, hours: int, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(stage)
    [alarm] = silence_alarms(synth)

    assert alarm["Namespace"] == names.METRICS_NAMESPACE
    assert alarm["Dimensions"] == [{"Name": "service", "Value": names.RECEIVER_SERVICE}]
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 3600, hours)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert alarm["TreatMissingData"] == "breaching"  # silence publishes no datapoint at all
    topic = logical_id(synth, "AWS::SNS::Topic", "/AlarmTopic/")
    assert alarm["AlarmActions"] == [{"Ref": topic}]


def test_silence_alarm_hours_0_turns_it_off(tmp_path: Path) -> None:
    assert silence_alarms(synthesize(tmp_path, {"silence_alarm_hours": 0})) == []


@pytest.mark.parametrize("value", [-1, 169, "sixteen", True])
def test_silence_alarm_hours_outside_what_cloudwatch_evaluates_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="silence_alarm_hours"):
        load_config({"silence_alarm_hours": value})


def test_the_stack_saves_each_search_over_both_log_groups(each_stage: Synthesized) -> None:
    definitions = {
        props["Name"]: props
        for props in (r["Properties"] for r in each_stage.resources("AWS::Logs::QueryDefinition").values())
    }
    groups = [
        {"Ref": logical_id(each_stage, "AWS::Logs::LogGroup", "/Receiver/LogGroup/")},
        {"Ref": logical_id(each_stage, "AWS::Logs::LogGroup", "/Processor/LogGroup/")},
    ]

    expected = {f"{each_stage.config.stack_name}/{name}": text for name, text in insights.saved_queries().items()}
    assert {name: props["QueryString"] for name, props in definitions.items()} == expected
    assert all(props["LogGroupNames"] == groups for props in definitions.values())


def test_tracing_turns_on_xray_for_the_stage_and_both_functions(prod: Synthesized) -> None:
    stage = prod.resources("AWS::ApiGateway::Stage")[logical_id(prod, "AWS::ApiGateway::Stage", "DeploymentStage")]

    assert stage["Properties"]["TracingEnabled"] is True
    for handler in (spec.RECEIVER_HANDLER, spec.PROCESSOR_HANDLER):
        assert function(prod, handler)[1]["TracingConfig"] == {"Mode": "Active"}


def test_tracing_is_off_by_default(dev: Synthesized) -> None:
    stage = dev.resources("AWS::ApiGateway::Stage")[logical_id(dev, "AWS::ApiGateway::Stage", "DeploymentStage")]

    assert "TracingEnabled" not in stage["Properties"] or stage["Properties"]["TracingEnabled"] is False
    for handler in (spec.RECEIVER_HANDLER, spec.PROCESSOR_HANDLER):
        assert "TracingConfig" not in function(dev, handler)[1]


def test_the_receiver_never_imports_the_xray_sdk() -> None:
    """Active tracing is Lambda's own segment: the receiver's cold start stays free of aws_xray_sdk."""
    probe = "import sys, receiver.handler; print('aws_xray_sdk' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT / spec.FUNCTIONS_DIR,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "", "POWERTOOLS_TRACE_DISABLED": "false", "AWS_DEFAULT_REGION": "us-east-1"},
    )

    assert result.stdout.strip() == "False"


def test_every_alarm_has_a_row_in_the_troubleshooting_guide(dev: Synthesized) -> None:
    guide = (REPO_ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    alarm_ids = {
        resource["Metadata"]["aws:cdk:path"].split("/")[-2]
        for resource in dev.resources("AWS::CloudWatch::Alarm").values()
    }

    undocumented = sorted(alarm for alarm in alarm_ids if f"| **{alarm}** |" not in guide)
    assert not undocumented, f"docs/troubleshooting.md has no row for these alarms: {undocumented}"


def test_tracing_tells_the_processor_to_annotate_its_deliveries(prod: Synthesized, dev: Synthesized) -> None:
    assert function(prod, spec.PROCESSOR_HANDLER)[1]["Environment"]["Variables"]["TRACING_ENABLED"] == "true"
    assert "TRACING_ENABLED" not in function(dev, spec.PROCESSOR_HANDLER)[1]["Environment"]["Variables"]
