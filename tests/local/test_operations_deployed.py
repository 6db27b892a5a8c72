"""`events` and `doctor` against a deployed stack (`--stack NAME`) on moto: Logs Insights over both log groups,
the secret, the DLQ, the stack's alarms.

moto 5.2.5 runs Logs Insights queries without their `filter` lines (it returns every line of the groups in the
window): the CLI applies the same test to each line it gets back (infra/insights.py), so these tests check the
plumbing and the client-side half; the query texts are checked in tests/unit/test_insights.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from infra import spec
from klikit import observability as names
from tests.local.test_deployed_target import STACK, _deploy_outputs, run
from tools.local.resources import LOCAL_REGION, LocalResources

RECEIVER_GROUP = "/aws/lambda/KlikitWebhooksTest-IntakeReceiver"
PROCESSOR_GROUP = "/aws/lambda/KlikitWebhooksTest-ProcessingProcessor"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _write(group: str, records: list[dict[str, Any]], minutes_ago: float = 0) -> None:
    logs = boto3.client("logs", region_name=LOCAL_REGION)
    start = _now_ms() - int(minutes_ago * 60_000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": start + i, "message": json.dumps(record)} for i, record in enumerate(records)],
    )


@pytest.fixture
def deployed(aws: LocalResources) -> LocalResources:
    logs = boto3.client("logs", region_name=LOCAL_REGION)
    for group in (RECEIVER_GROUP, PROCESSOR_GROUP):
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="s")
    _deploy_outputs(
        aws, **{spec.OUTPUT_RECEIVER_LOG_GROUP: RECEIVER_GROUP, spec.OUTPUT_PROCESSOR_LOG_GROUP: PROCESSOR_GROUP}
    )
    return aws


def accepted(event_id: str, outcome: str = "received", **extra: Any) -> dict[str, Any]:
    return {
        "level": "INFO",
        "message": names.LOG_ACCEPTED,
        "service": names.RECEIVER_SERVICE,
        "correlation_id": event_id,
        "outcome": outcome,
        "event_type": "klikit.order.created.v2",
        "body_bytes": 2882,
        **extra,
    }


def processed(event_id: str, order_ids: list[str], branch_id: int = 1062) -> dict[str, Any]:
    return {
        "level": "INFO",
        "message": names.LOG_PROCESSED,
        "service": names.PROCESSOR_SERVICE,
        "event_id": event_id,
        "event_type": "klikit.order.created.v2",
        "order_ids": order_ids,
        "branch_id": branch_id,
    }


def rejected(event_id: str, status: int, reason: str) -> dict[str, Any]:
    return {
        "level": "WARNING",
        "message": names.LOG_NOT_ACCEPTED,
        "service": names.RECEIVER_SERVICE,
        "correlation_id": event_id,
        "outcome": "rejected",
        "status": status,
        "reason": reason,
        "event_type": "klikit.order.status.updated",
    }


def test_events_follow_one_delivery_across_both_log_groups(deployed: LocalResources) -> None:
    _write(RECEIVER_GROUP, [accepted("evt-a"), {"message": "unrelated"}], 5)
    _write(PROCESSOR_GROUP, [processed("evt-a", ["7821", "7822"])], 4)
    _write(RECEIVER_GROUP, [accepted("evt-a", "duplicate")], 3)

    code, out, err = run("events", "--event-id", "evt-a")

    assert code == 0, err
    assert "received -> processed -> duplicate" in out
    assert "7821,7822" in out
    assert "1062" in out


def test_events_by_order_branch_and_outcome_as_json(deployed: LocalResources) -> None:
    _write(RECEIVER_GROUP, [accepted("evt-a"), accepted("evt-b"), rejected("evt-c", 401, "signature matches none")])
    _write(PROCESSOR_GROUP, [processed("evt-a", ["7821"]), processed("evt-b", ["9000"], branch_id=7)])

    by_order = run("events", "--order", "7821", "--json")
    by_branch = run("events", "--branch", "7", "--json")
    by_outcome = run("events", "--outcome", "rejected", "--json")

    assert [d["event_id"] for d in json.loads(by_order[1])] == ["evt-a"]
    assert json.loads(by_order[1])[0]["path"] == ["received", "processed"]
    assert [d["event_id"] for d in json.loads(by_branch[1])] == ["evt-b"]
    [refused] = json.loads(by_outcome[1])
    assert refused["event_id"] == "evt-c"
    assert refused["steps"][0]["detail"] == "401 signature matches none"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--event-id", "evt-never"], "no delivery with event id 'evt-never'"),
        (["--since", "yesterday"], "--since: not a time: 'yesterday'"),
        (["--since", "1h", "--until", "2h"], "empty window"),
    ],
)
def test_events_bad_input_is_one_line_and_a_nonzero_exit(
    deployed: LocalResources, args: list[str], message: str
) -> None:
    code, _, err = run("events", *args)

    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [["events"], ["doctor"], ["replay", "--since", "1h"]])
def test_without_credentials_the_commands_say_so(monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    """No moto here: boto3 looks for credentials for real, finds none, and the CLI says what to set."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    code, _, err = run(*command)

    assert code == 1
    assert err.strip() == "klikit: no AWS credentials: set AWS_PROFILE (or the AWS_* variables) for the stack's account"


def doctor_lines(out: str) -> dict[str, str]:
    return {line[8:22].strip(): line[:8].strip() + " " + line[22:].strip() for line in out.splitlines()[1:-1]}


def test_doctor_on_a_healthy_stack_passes(deployed: LocalResources) -> None:
    _write(RECEIVER_GROUP, [accepted("evt-a")], 30)

    code, out, _ = run("doctor")

    lines = doctor_lines(out)
    assert code == 0, out
    assert lines["secret"] == "ok 1 active secret, no stray whitespace"
    assert lines["dead letters"] == "ok the DLQ is empty"
    assert lines["alarms"] == "ok none in ALARM"
    assert lines["rejections"] == "ok none in the last 24 h"
    assert lines["last accepted"].startswith("ok 30 min ago: evt evt-a (created.v2)")
    assert out.splitlines()[-1] == "nothing to fix"


def test_doctor_names_each_problem_and_exits_nonzero(deployed: LocalResources) -> None:
    boto3.client("secretsmanager", region_name=LOCAL_REGION).put_secret_value(
        SecretId=deployed.secret_id, SecretString="whsec_pasted_from_a_file\n"
    )
    boto3.client("sqs", region_name=LOCAL_REGION).send_message(QueueUrl=deployed.dlq_url, MessageBody="{}")
    cloudwatch = boto3.client("cloudwatch", region_name=LOCAL_REGION)
    for name in (f"{STACK}-ObservabilityDeadLetterQueueNotEmpty-AB12", "SomeoneElses-Alarm"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            MetricName="m",
            Namespace="n",
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    _write(RECEIVER_GROUP, [rejected("evt-x", 401, "signature matches none of 1 active secret(s)")] * 3, 10)

    code, out, _ = run("doctor")

    lines = doctor_lines(out)
    assert code == 1
    assert lines["secret"].startswith("FAIL the secret ends with a newline (\\n)")
    assert lines["dead letters"].startswith("FAIL 1 in the DLQ")
    assert lines["alarms"] == (
        "FAIL 1 in ALARM: ObservabilityDeadLetterQueueNotEmpty-AB12 (docs/troubleshooting.md says what each means)"
    )
    assert lines["rejections"].startswith("warn 3 in the last 24 h: 3 x 401 signature matches none")
    assert "./klikit doctor signature" in lines["rejections"]
    assert lines["last accepted"].startswith("FAIL no delivery accepted in the last 2 days")
    assert out.splitlines()[-1] == "4 to fix: secret, dead letters, alarms, last accepted"


def test_doctor_spots_the_placeholder_the_stack_generated(deployed: LocalResources) -> None:
    secrets = boto3.client("secretsmanager", region_name=LOCAL_REGION)
    generated = secrets.get_random_password(PasswordLength=48, ExcludePunctuation=True)["RandomPassword"]
    arn = secrets.create_secret(Name="generated-by-the-stack", SecretString=generated)["ARN"]
    boto3.client("cloudformation", region_name=LOCAL_REGION).delete_stack(StackName=STACK)
    _deploy_outputs(
        deployed,
        **{
            spec.OUTPUT_SECRET_ARN: arn,
            spec.OUTPUT_RECEIVER_LOG_GROUP: RECEIVER_GROUP,
            spec.OUTPUT_PROCESSOR_LOG_GROUP: PROCESSOR_GROUP,
        },
    )

    code, out, _ = run("doctor")

    assert code == 1
    assert "FAIL  secret         still the placeholder the stack generated" in out
    assert f"aws secretsmanager put-secret-value --secret-id {arn}" in out
