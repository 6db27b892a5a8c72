"""One Lambda function the way this project runs them: python3.13 on arm64, its own log group and role."""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra import lambda_shapes, spec
from infra.config import LOG_RETENTION_DAYS, REPO_ROOT, StackConfig
from infra.storage import removal_policy
from klikit import observability

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
FUNCTIONS_PATH = REPO_ROOT / spec.FUNCTIONS_DIR
CODE_EXCLUDES = ["**/__pycache__", "**/*.pyc", "tests", "**/tests", "**/.pytest_cache", "**/.mypy_cache"]


# cdk.json's log_retention_days -> the CDK member naming it (config.LOG_RETENTION_DAYS holds the names, CDK-free).
RETENTION = {days: logs.RetentionDays[name] for days, name in LOG_RETENTION_DAYS.items()}


def log_group(scope: Construct, construct_id: str, config: StackConfig) -> logs.LogGroup:
    """A log group kept for log_retention_days, retained on `cdk destroy` with the stage's data."""
    return logs.LogGroup(
        scope, construct_id, retention=RETENTION[config.log_retention_days], removal_policy=removal_policy(config)
    )


def code_asset() -> lambda_.Code:
    """The whole functions/ tree: handlers plus the shared klikit package; dependencies come from the layer."""
    return lambda_.Code.from_asset(str(FUNCTIONS_PATH), exclude=CODE_EXCLUDES)


class PythonFunctionConstruct(Construct):
    """A function with a dedicated role that can only write to its own log group and read the one secret it is given
    (no managed policies); the stack adds its other grants."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        handler: str,
        service: str,
        description: str,
        memory_mb: int,
        timeout: cdk.Duration,
        environment: Mapping[str, str],
        layer: lambda_.ILayerVersion,
        reserved_concurrency: int | None = None,
        secret: secretsmanager.ISecret | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = log_group(self, "LogGroup", config)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{service}: its own log group plus the grants the stack adds",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=code_asset(),
            handler=handler,
            memory_size=memory_mb,
            timeout=timeout,
            role=self.role,
            log_group=self.log_group,
            layers=[layer],
            reserved_concurrent_executions=reserved_concurrency,
            # Lambda itself records the invocation's segment: no X-Ray SDK in the function's imports.
            tracing=lambda_.Tracing.ACTIVE if config.tracing else None,
            environment={
                **lambda_shapes.powertools_environment(service, observability.METRICS_NAMESPACE, config.log_level),
                **environment,
            },
        )
        if secret is not None:  # the one secret the function reads (its id is in the function's environment)
            secret.grant_read(self.function)
