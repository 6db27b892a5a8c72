"""Reconciliation with klikit's orders API: the partner credentials secret, the reconciler and its schedule.

The reconciler is deployed whatever the schedule (so `./klikit reconcile --stack` finds its outputs); it runs on a
schedule only when `reconcile_every_minutes` is above 0, which needs klikit's partner credentials in the secret.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import lambda_shapes, spec
from infra.config import StackConfig
from infra.function import PythonFunctionConstruct
from infra.observability import RECONCILER_ALARMS, ObservabilityConstruct, metrics_of, service_metric
from infra.secrets import secret
from klikit import observability as observability_names
from reconciler.adapters import CHECKPOINT_KEY

PLACEHOLDER_PARTNER_KEY = "replace-with-klikits-partner-key"


def partner_credentials_secret(scope: Construct, config: StackConfig) -> tuple[secretsmanager.ISecret, str]:
    """The secret holding `{"partner_key", "secret_key"}`, and the id the reconciler reads it by."""
    return secret(
        scope,
        "PartnerCredentials",
        config=config,
        given=config.partner_credentials_secret,
        description='klikit partner API credentials for the reconciler: {"partner_key": ..., "secret_key": ...}',
        # Until `aws secretsmanager put-secret-value` stores what klikit's operator issued (docs/deploy.md), klikit
        # answers it with 401 auth_invalid_credential, which preflight reports.
        placeholder=secretsmanager.SecretStringGenerator(
            secret_string_template=json.dumps({"partner_key": PLACEHOLDER_PARTNER_KEY}),
            generate_string_key="secret_key",
            password_length=48,
            exclude_punctuation=True,
        ),
    )


class ReconciliationConstruct(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        queue: sqs.IQueue,
        orders_table: dynamodb.ITable,
        checkpoint_table: dynamodb.ITable,
        layer: lambda_.ILayerVersion,
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret, secret_id = partner_credentials_secret(self, config)
        self.reconciler = PythonFunctionConstruct(
            self,
            "Reconciler",
            config=config,
            handler=spec.RECONCILER_HANDLER,
            service=observability_names.RECONCILER_SERVICE,
            description="Heals orders klikit's webhooks missed from klikit's orders API",
            memory_mb=spec.RECONCILER_MEMORY_MB,
            timeout=cdk.Duration.seconds(spec.RECONCILER_TIMEOUT_SECONDS),
            environment=lambda_shapes.reconciler_environment(
                orders_table=orders_table.table_name,
                queue_url=queue.queue_url,
                checkpoint_table=checkpoint_table.table_name,
                partner_secret_id=secret_id,
                klikit_api_url=config.klikit_api_url,
                lookback_hours=config.reconcile_lookback_hours,
            ),
            layer=layer,
            secret=self.secret,
        )
        function = self.reconciler.function
        # A failed run is not retried by Lambda: the next scheduled run resumes from the checkpoint.
        function.configure_async_invoke(retry_attempts=0, max_event_age=cdk.Duration.minutes(15))
        orders_table.grant(function, "dynamodb:BatchGetItem")
        queue.grant(function, "sqs:SendMessage")
        # Its one checkpoint item in the idempotency table, and no other key (the receiver's records stay its own).
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
                resources=[checkpoint_table.table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [CHECKPOINT_KEY]}},
            )
        )
        self.schedule: events.Rule | None = None
        if config.reconcile_every_minutes:
            self.schedule = events.Rule(
                self,
                "Schedule",
                description=f"Reconcile with klikit's orders API every {config.reconcile_every_minutes} minutes",
                schedule=events.Schedule.rate(cdk.Duration.minutes(config.reconcile_every_minutes)),
                targets=[targets.LambdaFunction(function, retry_attempts=0)],
            )

    def observe(self, observability: ObservabilityConstruct) -> None:
        """Alarms on heals and on the reconciler's own failures, and a dashboard row (the topic is the stack's)."""
        function = self.reconciler.function

        def metric(name: str, label: str | None = None) -> cw.Metric:
            return service_metric(observability_names.RECONCILER_SERVICE, name, label)

        alarms = observability.add_alarms(RECONCILER_ALARMS, reconciler=metrics_of(function))
        observability.dashboard.add_widgets(
            cw.GraphWidget(
                title="Reconciler: orders checked and healed",
                left=[
                    metric(observability_names.ORDERS_CHECKED, "checked"),
                    metric(observability_names.ORDERS_HEALED, "healed"),
                ],
                right=[
                    metric(observability_names.PARTNER_API_PAGES, "API pages"),
                    metric(observability_names.PARTNER_API_RETRIES, "API retries"),
                ],
                width=12,
            ),
            cw.AlarmStatusWidget(title="Reconciler alarms", alarms=alarms, width=12, height=6),
        )
