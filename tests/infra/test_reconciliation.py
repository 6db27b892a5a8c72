"""The reconciler in the template: off until scheduled, least privilege, its secret, alarms and outputs."""

from __future__ import annotations

from typing import Any

import pytest

from infra import spec
from infra.config import ConfigError, load_config
from klikit import observability as names
from klikit import settings as env
from klikit.settings import KLIKIT_PROD_API_URL, ReconcilerSettings
from reconciler.adapters import CHECKPOINT_KEY
from tests.infra.conftest import PROD_PARTNER_SECRET_ARN, Synthesized
from tests.infra.helpers import function, grants, logical_id, ref_to, role_statements

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]


def reconciler(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    return function(synth, spec.RECONCILER_HANDLER)


def rules_targeting(synth: Synthesized, function_id: str) -> list[dict[str, Any]]:
    return [
        rule["Properties"]
        for rule in synth.resources("AWS::Events::Rule").values()
        if any(ref_to(target["Arn"]) == function_id for target in rule["Properties"].get("Targets", []))
    ]


def test_reconciliation_is_off_by_default_and_runs_on_the_configured_rate(dev: Synthesized, prod: Synthesized) -> None:
    assert dev.config.reconcile_every_minutes == 0
    assert rules_targeting(dev, reconciler(dev)[0]) == []
    [rule] = rules_targeting(prod, reconciler(prod)[0])
    assert rule["ScheduleExpression"] == f"rate({prod.config.reconcile_every_minutes} minutes)"
    assert rule["State"] == "ENABLED"
    assert rule["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"] == 0


def test_a_failed_run_is_not_retried_by_lambda_the_next_run_resumes(each_stage: Synthesized) -> None:
    function_id = reconciler(each_stage)[0]
    [invoke_config] = [
        c["Properties"]
        for c in each_stage.resources("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    assert invoke_config["MaximumRetryAttempts"] == 0


def test_reconciler_runs_python313_arm64_with_its_timeout_and_environment(dev: Synthesized) -> None:
    _, props = reconciler(dev)
    assert (props["Runtime"], props["Architectures"], props["Timeout"]) == (
        "python3.13",
        ["arm64"],
        spec.RECONCILER_TIMEOUT_SECONDS,
    )
    variables = props["Environment"]["Variables"]
    assert variables[env.KLIKIT_API_URL] == KLIKIT_PROD_API_URL
    assert variables[env.RECONCILE_LOOKBACK_HOURS] == "24"
    assert variables["POWERTOOLS_SERVICE_NAME"] == names.RECONCILER_SERVICE
    # every variable the reconciler's settings read is set (tokens stand for names CloudFormation resolves)
    settings = ReconcilerSettings.from_env({name: str(value) for name, value in variables.items()})
    assert settings.klikit_api_url == KLIKIT_PROD_API_URL


def test_reconciler_holds_exactly_its_grants(dev: Synthesized) -> None:
    statements = role_statements(dev, spec.RECONCILER_HANDLER)
    allowed = {action: {ref_to(r) for r in resources} for action, resources in grants(statements).items()}
    secret = logical_id(dev, "AWS::SecretsManager::Secret", "/PartnerCredentials/")
    orders = logical_id(dev, "AWS::DynamoDB::Table", "/OrdersTable/")
    idempotency = logical_id(dev, "AWS::DynamoDB::Table", "/IdempotencyTable/")
    queue = logical_id(dev, "AWS::SQS::Queue", "/Processing/Queue/")
    logs = logical_id(dev, "AWS::Logs::LogGroup", "/Reconciler/LogGroup/")
    assert allowed == {
        "logs:CreateLogStream": {logs},
        "logs:PutLogEvents": {logs},
        "secretsmanager:GetSecretValue": {secret},
        "secretsmanager:DescribeSecret": {secret},
        "dynamodb:BatchGetItem": {orders},
        "sqs:SendMessage": {queue},
        "dynamodb:GetItem": {idempotency},
        "dynamodb:PutItem": {idempotency},
        "dynamodb:DeleteItem": {idempotency},
    }
    [checkpoint] = [s for s in statements if "dynamodb:PutItem" in s["Action"]]
    assert checkpoint["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [CHECKPOINT_KEY]}}


def test_only_the_receiver_and_the_reconciler_may_send_to_the_processing_queue(each_stage: Synthesized) -> None:
    queue = logical_id(each_stage, "AWS::SQS::Queue", "/Processing/Queue/")
    senders: set[str] = set()
    for policy in each_stage.resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if "sqs:SendMessage" in actions and queue in {ref_to(r) for r in resources}:
                senders.update(role["Ref"] for role in policy["Properties"]["Roles"])
    receiver_role = function(each_stage, spec.RECEIVER_HANDLER)[1]["Role"]["Fn::GetAtt"][0]
    reconciler_role = reconciler(each_stage)[1]["Role"]["Fn::GetAtt"][0]
    assert senders == {receiver_role, reconciler_role}


def test_partner_credentials_are_a_generated_placeholder_or_imported(dev: Synthesized, prod: Synthesized) -> None:
    secret_id = logical_id(dev, "AWS::SecretsManager::Secret", "/PartnerCredentials/")
    generated = dev.template["Resources"][secret_id]["Properties"]["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "secret_key"
    assert '"partner_key"' in generated["SecretStringTemplate"]
    assert "SecretString" not in dev.template["Resources"][secret_id]["Properties"], "never a credential here"
    assert reconciler(dev)[1]["Environment"]["Variables"][env.PARTNER_SECRET_ID] == {"Ref": secret_id}
    assert reconciler(prod)[1]["Environment"]["Variables"][env.PARTNER_SECRET_ID] == PROD_PARTNER_SECRET_ARN
    assert prod.template["Outputs"][spec.OUTPUT_PARTNER_SECRET_ARN]["Value"] == PROD_PARTNER_SECRET_ARN


@pytest.mark.parametrize(
    "metric",
    [names.ORDERS_HEALED, names.RECONCILE_AUTH_FAILURES, names.RECONCILE_FAILURES],
)
def test_heals_and_the_reconcilers_own_failures_raise_alarms(each_stage: Synthesized, metric: str) -> None:
    dimension = {"Name": "service", "Value": names.RECONCILER_SERVICE}
    [alarm] = [
        a["Properties"]
        for a in each_stage.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == metric and dimension in a["Properties"].get("Dimensions", [])
    ]
    assert (alarm["Threshold"], alarm["Statistic"], alarm["Namespace"]) == (1, "Sum", names.METRICS_NAMESPACE)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_reconciler_crashes_raise_an_alarm_and_the_dashboard_graphs_heals(dev: Synthesized) -> None:
    function_id = reconciler(dev)[0]
    errors = [
        a["Properties"]
        for a in dev.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "Errors"
        and {"Name": "FunctionName", "Value": {"Ref": function_id}} in a["Properties"].get("Dimensions", [])
    ]
    assert len(errors) == 1
    [dashboard] = dev.resources("AWS::CloudWatch::Dashboard").values()
    body = str(dashboard["Properties"]["DashboardBody"])
    assert "Reconciler: orders checked and healed" in body and names.ORDERS_HEALED in body


def test_the_cli_finds_the_reconciler_through_outputs(dev: Synthesized) -> None:
    outputs = dev.template["Outputs"]
    assert outputs[spec.OUTPUT_KLIKIT_API_URL]["Value"] == KLIKIT_PROD_API_URL
    for key in (spec.OUTPUT_PARTNER_SECRET_ARN, spec.OUTPUT_RECONCILER_LOG_GROUP):
        assert key in outputs


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ({"reconcile_every_minutes": 5}, "reconcile_every_minutes"),
        ({"reconcile_every_minutes": -1}, "reconcile_every_minutes"),
        ({"reconcile_lookback_hours": 24 * 91}, "reconcile_lookback_hours"),
        ({"reconcile_every_minutes": 120, "reconcile_lookback_hours": 1}, "reconcile_lookback_hours"),
        ({"klikit_api_url": "http://gateway-enterprise.klikit.io/v1/partner"}, "klikit_api_url"),
        ({"partner_credentials_secret": "arn:aws:s3:::not-a-secret"}, "partner_credentials_secret"),
    ],
)
def test_bad_reconciliation_settings_fail_naming_the_key(context: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(context)


def test_dev_api_url_and_schedule_load_from_command_line_strings() -> None:
    config = load_config(
        {"reconcile_every_minutes": "30", "klikit_api_url": "https://api.dev.shadowchef.co/v1/partner/"}
    )
    assert (config.reconcile_every_minutes, config.klikit_api_url) == (30, "https://api.dev.shadowchef.co/v1/partner")
