"""Alarms on every failure mode the pipeline has, wired to one topic; one dashboard."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import spec
from klikit import observability as names
from tests.infra.conftest import Synthesized
from tests.infra.helpers import function, logical_id

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]


def alarms(synth: Synthesized) -> list[dict[str, Any]]:
    return [alarm["Properties"] for alarm in synth.resources("AWS::CloudWatch::Alarm").values()]


def alarm_on(synth: Synthesized, namespace: str, metric: str, dimension: dict[str, Any]) -> dict[str, Any]:
    found = [
        a
        for a in alarms(synth)
        if a["Namespace"] == namespace and a["MetricName"] == metric and dimension in a.get("Dimensions", [])
    ]
    assert len(found) == 1, (namespace, metric, dimension)
    return found[0]


def test_dlq_messages_and_queue_age_raise_alarms(dev: Synthesized) -> None:
    dlq = logical_id(dev, "AWS::SQS::Queue", "/DeadLetterQueue/")
    queue = logical_id(dev, "AWS::SQS::Queue", "/Processing/Queue/")
    in_dlq = alarm_on(
        dev,
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}},
    )
    assert in_dlq["Threshold"] == 1
    assert in_dlq["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    age = alarm_on(
        dev,
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}},
    )
    assert age["Threshold"] == dev.config.queue_age_alarm_seconds


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
@pytest.mark.parametrize("handler", [spec.RECEIVER_HANDLER, spec.PROCESSOR_HANDLER])
def test_function_errors_and_throttles_raise_alarms(dev: Synthesized, handler: str, metric: str) -> None:
    function_id = function(dev, handler)[0]
    alarm = alarm_on(dev, "AWS/Lambda", metric, {"Name": "FunctionName", "Value": {"Ref": function_id}})
    assert alarm["Threshold"] == 1


def test_api_5xx_raises_an_alarm(dev: Synthesized) -> None:
    stage = logical_id(dev, "AWS::ApiGateway::Stage", "DeploymentStage")
    alarm_on(dev, "AWS/ApiGateway", "5XXError", {"Name": "Stage", "Value": {"Ref": stage}})


@pytest.mark.parametrize(
    ("service", "metric", "threshold"),
    [
        (names.RECEIVER_SERVICE, names.REJECTED_SIGNATURE, 10),
        (names.RECEIVER_SERVICE, names.ENQUEUE_FAILURES, 1),
        (names.RECEIVER_SERVICE, names.SECRET_MISCONFIGURED, 1),  # malformed rotation JSON
        (names.PROCESSOR_SERVICE, names.PROCESSING_FAILED, 1),
    ],
)
def test_custom_metrics_alarm_with_the_powertools_service_dimension(
    dev: Synthesized, service: str, metric: str, threshold: int
) -> None:
    alarm = alarm_on(dev, names.METRICS_NAMESPACE, metric, {"Name": "service", "Value": service})
    assert alarm["Threshold"] == threshold
    assert alarm["Statistic"] == "Sum"


def test_every_alarm_notifies_the_topic_and_ignores_missing_data(each_stage: Synthesized) -> None:
    (topic_id,) = each_stage.resources("AWS::SNS::Topic")
    for alarm in alarms(each_stage):
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        # the silence alarm is the one that fires on missing data: no accepted delivery publishes no datapoint
        silence = alarm["MetricName"] == names.ENQUEUED
        assert alarm["TreatMissingData"] == ("breaching" if silence else "notBreaching")


def test_alarm_email_subscribes_only_when_configured(dev: Synthesized, prod: Synthesized) -> None:
    assert dev.resources("AWS::SNS::Subscription") == {}
    (subscription,) = prod.resources("AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "oncall@example.com"


def test_one_dashboard_graphs_the_pipeline(dev: Synthesized) -> None:
    (dashboard,) = dev.resources("AWS::CloudWatch::Dashboard").values()
    body = str(dashboard["Properties"]["DashboardBody"])
    for metric in (
        names.RECEIVED,
        names.ENQUEUED,
        names.REJECTED_SIGNATURE,
        names.PROCESSED,
        names.REPLAYED_UNDER_NEW_ID,  # a replay attack or an id-changing retry is visible
        names.ARCHIVE_FAILED,
        "ApproximateAgeOfOldestMessage",
    ):
        assert metric in body


def test_cloudwatch_may_publish_alarms_to_the_tls_only_topic_for_this_account_only(each_stage: Synthesized) -> None:
    (topic_id,) = each_stage.resources("AWS::SNS::Topic")
    (policy,) = each_stage.resources("AWS::SNS::TopicPolicy").values()
    assert {"Ref": topic_id} in policy["Properties"]["Topics"]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (publish,) = [s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert publish["Effect"] == "Allow"
    assert publish["Action"] == "sns:Publish"
    assert publish["Resource"] == {"Ref": topic_id}
    assert publish["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in str(s.get("Condition")) for s in statements)


def test_api_throttling_429s_raise_an_alarm_from_the_access_log(each_stage: Synthesized) -> None:
    (metric_filter,) = each_stage.resources("AWS::Logs::MetricFilter").values()
    props = metric_filter["Properties"]
    assert props["LogGroupName"] == {"Ref": logical_id(each_stage, "AWS::Logs::LogGroup", "AccessLogs")}
    # the gateway response type of a stage/account throttle refusal (429); 4XXError would also count forged 401s
    assert props["FilterPattern"] == '{ $.errorType = "THROTTLED" }'
    (transformation,) = props["MetricTransformations"]
    assert transformation["MetricNamespace"] == names.METRICS_NAMESPACE
    assert transformation["MetricName"] == names.API_THROTTLED
    assert transformation["Dimensions"] == [{"Key": "stage", "Value": "$.stage"}]
    alarm = alarm_on(
        each_stage, names.METRICS_NAMESPACE, names.API_THROTTLED, {"Name": "stage", "Value": each_stage.config.stage}
    )
    assert alarm["Threshold"] == 1


def test_access_log_lines_carry_the_fields_the_throttle_filter_reads(dev: Synthesized) -> None:
    (api_stage,) = dev.resources("AWS::ApiGateway::Stage").values()
    fields = json.loads(api_stage["Properties"]["AccessLogSetting"]["Format"])
    assert fields["errorType"] == "$context.error.responseType"
    assert fields["stage"] == "$context.stage"
