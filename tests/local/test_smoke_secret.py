"""`./klikit smoke --stack`: it refuses to run while the stack's secret is still the generated placeholder."""

from __future__ import annotations

import contextlib
import io
import json

import boto3
import pytest

from infra import spec
from tools.cli import main
from tools.local.resources import LOCAL_REGION, LocalResources
from tools.smoke import CLOUDFORMATION_STACK_TAG

STACK = "KlikitWebhooks-dev"


def deploy(resources: LocalResources, secret_id: str) -> None:
    """A CloudFormation stack whose outputs name the moto resources, like a deployed one."""
    outputs = {
        spec.OUTPUT_WEBHOOK_URL: "http://127.0.0.1:9/dev/webhooks/klikit",  # nothing listens: never reached here
        spec.OUTPUT_QUEUE_URL: resources.queue_url,
        spec.OUTPUT_DLQ_URL: resources.dlq_url,
        spec.OUTPUT_ORDERS_TABLE: resources.orders_table,
        spec.OUTPUT_BUCKET: resources.bucket,
        spec.OUTPUT_SECRET_ARN: secret_id,
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=LOCAL_REGION).create_stack(
        StackName=STACK, TemplateBody=json.dumps(template)
    )


def smoke() -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["smoke", "--stack", STACK, "--region", LOCAL_REGION])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def generated_secret(aws: LocalResources) -> str:
    """The secret as CloudFormation leaves it: tagged with the stack, one generated version."""
    created = boto3.client("secretsmanager").create_secret(
        Name="WebhookSecret-generated",
        SecretString="Qx7generatedPlaceholder0000000000000000000000000",
        Tags=[{"Key": CLOUDFORMATION_STACK_TAG, "Value": STACK}],
    )
    deploy(aws, created["ARN"])
    return str(created["ARN"])


def test_smoke_refuses_the_generated_placeholder_and_says_how_to_set_the_secret(generated_secret: str) -> None:
    code, out, err = smoke()

    assert code == 1
    (line,) = err.splitlines()
    assert "still the placeholder the stack generated" in line
    assert f"aws secretsmanager put-secret-value --secret-id {generated_secret}" in line
    assert "Traceback" not in out + err


def test_once_klikits_secret_is_put_smoke_goes_on_to_send(generated_secret: str) -> None:
    boto3.client("secretsmanager").put_secret_value(SecretId=generated_secret, SecretString="klikit-issued")

    code, out, _ = smoke()

    assert code == 1, "nothing listens at the URL: the delivery step fails"
    assert "  ok      secret" in out
    assert "  FAILED  delivery" in out
