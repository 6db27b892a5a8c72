"""`./klikit preflight` and `./klikit setup-api-logging` against an account played by in-process moto.

Lambda's GetAccountSettings is not in moto: a botocore Stubber answers it with the account limits under test.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from infra.config import load_config
from tools import cli
from tools.api_logging import ROLE_NAME, setup_api_logging
from tools.preflight import BOOTSTRAP_VERSION_PARAMETER, Check, Preflight, concurrency_needed

REGION = "eu-west-1"


@pytest.fixture
def managed_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    # setup-api-logging attaches the AWS-managed AmazonAPIGatewayPushToCloudWatchLogs policy (slow to load in moto)
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")


@pytest.fixture
def account() -> Iterator[boto3.Session]:
    """A bootstrapped account whose API Gateway has its CloudWatch role: everything preflight wants."""
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        session.client("ssm").put_parameter(Name=BOOTSTRAP_VERSION_PARAMETER, Value="29", Type="String")
        role = session.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        session.client("apigateway").update_account(
            patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": role}]
        )
        yield session


def lambda_limits(session: boto3.Session, limit: int = 1000, unreserved: int = 1000) -> Any:
    client = session.client("lambda")
    stubber = Stubber(client)
    answer = {"AccountLimit": {"ConcurrentExecutions": limit, "UnreservedConcurrentExecutions": unreserved}}
    stubber.add_response("get_account_settings", answer)
    stubber.activate()
    return client


def checks(session: boto3.Session, context: dict[str, Any] | None = None, **limits: int) -> dict[str, Check]:
    lambda_client = lambda_limits(session, **limits)

    def client(name: Any) -> Any:  # whichever service Preflight names, as boto3's session.client takes it
        return lambda_client if name == "lambda" else session.client(name)

    preflight = Preflight(client, REGION, load_config(context or {}))
    return {check.name: check for check in preflight.run()}


def problems(found: dict[str, Check]) -> dict[str, Check]:
    return {name: check for name, check in found.items() if not check.ok}


def test_a_ready_account_passes_every_check(account: boto3.Session) -> None:
    found = checks(account)

    assert problems(found) == {}
    assert set(found) == {
        "credentials",
        "settings",
        "region",
        "cdk bootstrap",
        "lambda concurrency",
        "api gateway logging",
        "webhook secret",
        "stack",
    }
    assert "123456789012" in found["credentials"].detail


def test_missing_bootstrap_says_the_command_that_bootstraps(account: boto3.Session) -> None:
    account.client("ssm").delete_parameter(Name=BOOTSTRAP_VERSION_PARAMETER)

    (problem,) = problems(checks(account)).values()

    assert problem.name == "cdk bootstrap"
    assert problem.fix is not None and problem.fix.startswith(f"make bootstrap AWS_REGION={REGION}")


def test_too_old_a_bootstrap_is_a_problem(account: boto3.Session) -> None:
    account.client("ssm").put_parameter(Name=BOOTSTRAP_VERSION_PARAMETER, Value="7", Type="String", Overwrite=True)

    (problem,) = problems(checks(account)).values()

    assert "needs 8 or later" in problem.detail


def test_new_account_concurrency_quota_of_ten_is_a_problem_with_the_quota_request(account: boto3.Session) -> None:
    (problem,) = problems(checks(account, limit=10, unreserved=10)).values()

    assert problem.name == "lambda concurrency"
    assert f"needs ~{concurrency_needed(load_config({}))}" in problem.detail
    assert problem.fix is not None and "--quota-code L-B99A9384 --desired-value 1000" in problem.fix


def test_a_reservation_that_would_roll_the_deploy_back_is_a_problem(account: boto3.Session) -> None:
    found = checks(account, {"processor_reserved_concurrency": 8}, limit=1000, unreserved=15)

    (problem,) = problems(found).values()

    assert "would leave 7 unreserved executions" in problem.detail
    assert problem.fix is not None and "processor_reserved_concurrency=null" in problem.fix


def test_missing_api_gateway_cloudwatch_role_says_to_run_setup_api_logging(account: boto3.Session) -> None:
    account.client("apigateway").update_account(
        patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": ""}]
    )

    (problem,) = problems(checks(account)).values()

    assert problem.name == "api gateway logging"
    assert problem.fix == f"./klikit setup-api-logging --region {REGION}"


def test_an_imported_secret_must_exist_and_be_readable_in_the_region(account: boto3.Session) -> None:
    missing = problems(checks(account, {"webhook_secret": "klikit/webhook"}))
    account.client("secretsmanager").create_secret(Name="klikit/webhook", SecretString="s3cret")
    present = checks(account, {"webhook_secret": "klikit/webhook"})
    elsewhere = "arn:aws:secretsmanager:us-east-1:123456789012:secret:klikit/webhook-AbCdEf"

    assert missing["webhook secret"].fix is not None
    assert "aws secretsmanager create-secret" in missing["webhook secret"].fix
    assert present["webhook secret"].ok
    assert "s3cret" not in present["webhook secret"].detail
    assert "is in us-east-1" in problems(checks(account, {"webhook_secret": elsewhere}))["webhook secret"].detail


def test_prod_without_alarm_email_is_a_problem_before_anything_is_deployed(account: boto3.Session) -> None:
    (problem,) = problems(checks(account, {"stage": "prod"})).values()

    assert problem.name == "settings"
    assert problem.fix is not None and "-c alarm_email=" in problem.fix


def test_a_stack_under_the_old_default_name_is_pointed_out(account: boto3.Session) -> None:
    template = {"Resources": {"Marker": {"Type": "AWS::SQS::Queue"}}}
    account.client("cloudformation").create_stack(StackName="KlikitWebhooks", TemplateBody=json.dumps(template))

    (problem,) = problems(checks(account)).values()

    assert problem.name == "stack"
    assert problem.fix is not None and "-c stack_name=KlikitWebhooks" in problem.fix


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_preflight_without_credentials_says_so_in_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)

    code, out, err = run_cli("preflight")

    assert code == 2, "credentials are named before the missing region"
    (line,) = err.splitlines()
    assert line.startswith("klikit: no AWS credentials") and "AWS_PROFILE" in line
    assert "Traceback" not in out + err


def test_preflight_command_prints_each_check_and_fails_on_a_problem(account: boto3.Session) -> None:
    # Lambda's account settings are not in moto: the command's own client is swapped for the stubbed one
    stubbed = lambda_limits(account, limit=10, unreserved=10)
    with pytest.MonkeyPatch.context() as patch:
        original = boto3.Session.client
        patch.setattr(
            boto3.Session,
            "client",
            lambda self, name, *a, **k: stubbed if name == "lambda" else original(self, name, *a, **k),
        )
        code, out, _ = run_cli("preflight", "--region", REGION)

    assert code == 1
    assert "  ok       cdk bootstrap" in out
    assert "  PROBLEM  lambda concurrency" in out
    assert "fix: aws service-quotas request-service-quota-increase" in out
    assert "1 problem: fix, then run ./klikit preflight again" in out


@pytest.mark.usefixtures("managed_policies")
def test_setup_api_logging_creates_the_role_once_and_sets_the_account() -> None:
    with mock_aws():
        session = boto3.Session(region_name=REGION)

        first = setup_api_logging(session)
        second = setup_api_logging(session)

        role = session.client("iam").get_role(RoleName=ROLE_NAME)["Role"]
        attached = session.client("iam").list_attached_role_policies(RoleName=ROLE_NAME)["AttachedPolicies"]
        assert session.client("apigateway").get_account()["cloudwatchRoleArn"] == role["Arn"] == first.role_arn
        assert "apigateway.amazonaws.com" in json.dumps(role["AssumeRolePolicyDocument"])
        assert [p["PolicyArn"] for p in attached] == [
            "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
        ]
        assert first.changed and not second.changed
        assert "nothing to do" in second.message


def test_setup_api_logging_leaves_a_role_someone_else_set() -> None:
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        theirs = "arn:aws:iam::123456789012:role/their-apigw-logs"
        session.client("apigateway").update_account(
            patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": theirs}]
        )

        code, out, _ = run_cli("setup-api-logging", "--region", REGION)

        assert code == 0
        assert theirs in out
        assert session.client("apigateway").get_account()["cloudwatchRoleArn"] == theirs


def partner_checks(session: boto3.Session, klikit_api_url: str, **context: Any) -> dict[str, Check]:
    lambda_client = lambda_limits(session)

    def client(name: Any) -> Any:  # whichever service Preflight names, as boto3's session.client takes it
        return lambda_client if name == "lambda" else session.client(name)

    config = load_config({"reconcile_every_minutes": 15, **context})
    return {check.name: check for check in Preflight(client, REGION, config, klikit_api_url=klikit_api_url).run()}


def test_with_reconciliation_on_preflight_asks_klikit_whether_it_accepts_the_partner_credentials(
    account: boto3.Session,
) -> None:
    from tools.fake_klikit import LOCAL_PARTNER_KEY, LOCAL_SECRET_KEY, FakeKlikit

    secrets = account.client("secretsmanager")
    good = json.dumps({"partner_key": LOCAL_PARTNER_KEY, "secret_key": LOCAL_SECRET_KEY})
    secret = secrets.create_secret(Name="klikit/partner-api", SecretString=good)["ARN"]
    with FakeKlikit() as klikit:
        accepted = partner_checks(account, klikit.url, partner_credentials_secret=secret)
        klikit.rotate_secret("a-newer-secret")  # the operator rotated it: the stored one dies at once
        rotated = partner_checks(account, klikit.url, partner_credentials_secret=secret)
        secrets.put_secret_value(SecretId=secret, SecretString="partner-key:secret")
        garbled = partner_checks(account, klikit.url, partner_credentials_secret=secret)
        placeholder = partner_checks(account, klikit.url)
    off = checks(account)

    assert accepted["partner credentials"].ok and "klikit accepts them" in accepted["partner credentials"].detail
    problem = rotated["partner credentials"]
    assert not problem.ok and "401 auth_invalid_credential" in problem.detail
    assert problem.fix is not None and f"put-secret-value --secret-id {secret}" in problem.fix
    assert LOCAL_SECRET_KEY not in problem.detail + problem.fix
    assert "is not JSON" in garbled["partner credentials"].detail
    assert "reconcile_every_minutes=0" in (placeholder["partner credentials"].fix or "")
    assert "partner credentials" not in off, "reconciliation off: nothing to check"
