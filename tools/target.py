"""Which stack a CLI command talks to: the local stack (default) or a deployed one (`--stack NAME`).

Either way the command gets the same `Target`: the webhook URL, the resource names, boto3 clients aimed at the
right place, and the webhook secret to sign with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

from infra import spec
from tools.local.state import (
    DEFAULT_PORT,
    PROCESSOR,
    RECEIVER,
    SECRET_ENV,
    StackState,
    default_state_dir,
    read_state,
    running_stacks,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

Service = Literal["cloudwatch", "dynamodb", "logs", "s3", "secretsmanager", "sqs"]  # what the CLI commands call

RECONCILER = "reconciler"  # deployed only: the local stack runs the reconciler from the CLI (./klikit reconcile)
LOG_GROUP_OUTPUTS = {
    RECEIVER: spec.OUTPUT_RECEIVER_LOG_GROUP,
    PROCESSOR: spec.OUTPUT_PROCESSOR_LOG_GROUP,
    RECONCILER: spec.OUTPUT_RECONCILER_LOG_GROUP,
}


class CliError(Exception):
    """A failure the user can act on: the message says what happened and what to do next."""

    exit_code = 1


class StackNotRunning(CliError):
    exit_code = 3


class NoCredentials(CliError):
    """Nothing can be checked or sent without AWS credentials."""

    exit_code = 2


@dataclass(frozen=True)
class Target:
    description: str
    webhook_url: str
    queue_url: str
    dlq_url: str
    orders_table: str
    bucket: str
    secret_id: str
    region: str | None
    endpoint_url: str | None = None  # the local stack's moto
    local: StackState | None = None
    log_groups: dict[str, str] = field(default_factory=dict)  # deployed: function -> CloudWatch log group
    stack_name: str | None = None
    partner_secret_id: str = ""  # klikit's partner API credentials (the reconciler's secret)
    klikit_api_url: str = ""  # klikit's partner API: the local stack's fake, or the deployed stack's klikit_api_url

    @overload
    def client(self, service: Literal["cloudwatch"]) -> CloudWatchClient: ...
    @overload
    def client(self, service: Literal["dynamodb"]) -> DynamoDBClient: ...
    @overload
    def client(self, service: Literal["logs"]) -> CloudWatchLogsClient: ...
    @overload
    def client(self, service: Literal["s3"]) -> S3Client: ...
    @overload
    def client(self, service: Literal["secretsmanager"]) -> SecretsManagerClient: ...
    @overload
    def client(self, service: Literal["sqs"]) -> SQSClient: ...
    def client(
        self, service: Service
    ) -> CloudWatchClient | DynamoDBClient | CloudWatchLogsClient | S3Client | SecretsManagerClient | SQSClient:
        import boto3

        if self.endpoint_url is not None:
            return boto3.client(
                service,
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id="local",
                aws_secret_access_key="local",  # noqa: S106 - moto's dummy credentials
            )
        return boto3.client(service, region_name=self.region)

    def signing_secret(self) -> str:
        """KLIKIT_WEBHOOK_SECRET, else the first active secret the stack holds in Secrets Manager."""
        if os.environ.get(SECRET_ENV):
            return os.environ[SECRET_ENV]
        from receiver.secrets import parse_secret_value

        try:
            value = self.client("secretsmanager").get_secret_value(SecretId=self.secret_id)["SecretString"]
        except Exception as exc:  # noqa: BLE001 - any failure has the same advice
            raise CliError(
                f"could not read the webhook secret of {self.description} ({type(exc).__name__}): "
                f"pass --secret or set {SECRET_ENV}"
            ) from None
        active = parse_secret_value(value)
        if not active:
            raise CliError(f"the webhook secret of {self.description} is empty: pass --secret or set {SECRET_ENV}")
        return active[0]


def local_target(state_dir: Path | None, port: int) -> Target:
    state_dir = state_dir or default_state_dir()
    state = read_state(state_dir, port)
    if state is None:
        others = [str(running.port) for running in running_stacks(state_dir)]
        if others:
            raise StackNotRunning(
                f"no local stack is running on port {port}; local stacks run on port {', '.join(others)}: "
                f"pass --port {others[0]}"
            )
        start = "make local" if port == DEFAULT_PORT else f"PORT={port} make local"
        raise StackNotRunning(
            f"no local stack is running on port {port} (looked in {state_dir}): start one with `{start}`, "
            "or pass --port/--state-dir to find it, or --stack NAME for a deployed stack"
        )
    resources = state.resources
    return Target(
        description=f"the local stack on port {port}",
        webhook_url=state.webhook_url,
        queue_url=resources.queue_url,
        dlq_url=resources.dlq_url,
        orders_table=resources.orders_table,
        bucket=resources.bucket,
        secret_id=resources.secret_id,
        region="us-east-1",
        endpoint_url=state.moto_endpoint,
        local=state,
        partner_secret_id=resources.partner_secret_id,
        klikit_api_url=state.klikit_api_url,
    )


def stack_outputs(stack_name: str, region: str | None) -> dict[str, str]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    # Credentials first: without them the region is the second problem, and botocore would name it first.
    if boto3.Session().get_credentials() is None:
        raise CliError("no AWS credentials: set AWS_PROFILE (or the AWS_* variables) for the stack's account")
    try:
        stacks = boto3.client("cloudformation", region_name=region).describe_stacks(StackName=stack_name)["Stacks"]
    except NoRegionError:
        raise CliError(f"no AWS region for stack {stack_name}: pass --region (or set AWS_REGION)") from None
    except NoCredentialsError:
        raise CliError("no AWS credentials: set AWS_PROFILE (or the AWS_* variables) for the stack's account") from None
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if "does not exist" in message:
            raise StackNotRunning(
                f"stack {stack_name} does not exist in {region or 'the default region'}: deploy it with `make deploy`"
                " or pass the right --stack/--region"
            ) from None
        raise CliError(f"could not describe stack {stack_name}: {message}") from None
    except BotoCoreError as exc:
        raise CliError(f"could not reach CloudFormation: {exc}") from None
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}


def deployed_target(stack_name: str, region: str | None) -> Target:
    outputs = stack_outputs(stack_name, region)

    def output(key: str) -> str:
        if key not in outputs:
            raise CliError(f"stack {stack_name} has no output {key}: is it this project's stack, and up to date?")
        return outputs[key]

    return Target(
        description=f"stack {stack_name}",
        webhook_url=output(spec.OUTPUT_WEBHOOK_URL),
        queue_url=output(spec.OUTPUT_QUEUE_URL),
        dlq_url=output(spec.OUTPUT_DLQ_URL),
        orders_table=output(spec.OUTPUT_ORDERS_TABLE),
        bucket=output(spec.OUTPUT_BUCKET),
        secret_id=output(spec.OUTPUT_SECRET_ARN),
        region=region,
        log_groups={name: outputs[key] for name, key in LOG_GROUP_OUTPUTS.items() if key in outputs},
        stack_name=stack_name,
        partner_secret_id=outputs.get(spec.OUTPUT_PARTNER_SECRET_ARN, ""),
        klikit_api_url=outputs.get(spec.OUTPUT_KLIKIT_API_URL, ""),
    )


def resolve(stack: str | None, region: str | None, state_dir: Path | None, port: int) -> Target:
    return deployed_target(stack, region) if stack else local_target(state_dir, port)


__all__ = ["CliError", "NoCredentials", "StackNotRunning", "Target", "resolve"]
