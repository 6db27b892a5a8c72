"""The one stack: storage, processing, intake and observability, wired through constructor arguments."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra import spec
from infra.config import StackConfig
from infra.intake import IntakeConstruct
from infra.layer import dependencies_layer
from infra.observability import ObservabilityConstruct
from infra.processing import ProcessingConstruct
from infra.reconciliation import ReconciliationConstruct
from infra.saved_queries import SavedQueriesConstruct
from infra.storage import PayloadBucketConstruct


class KlikitWebhooksStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"klikit order webhooks ({config.stage}): API Gateway -> receiver -> SQS -> processor",
            **kwargs,
        )
        self.config = config
        # Powertools and pydantic built for arm64 from requirements.txt's pins: nothing resolved per region at deploy
        layer = dependencies_layer(self, "Dependencies")

        self.payloads = PayloadBucketConstruct(self, "Payloads", config=config)
        self.processing = ProcessingConstruct(
            self, "Processing", config=config, bucket=self.payloads.bucket, layer=layer
        )
        self.intake = IntakeConstruct(
            self, "Intake", config=config, queue=self.processing.queue, bucket=self.payloads.bucket, layer=layer
        )
        self.reconciliation = ReconciliationConstruct(
            self,
            "Reconciliation",
            config=config,
            queue=self.processing.queue,
            orders_table=self.processing.orders_table,
            checkpoint_table=self.intake.idempotency_table,
            layer=layer,
        )
        self.observability = ObservabilityConstruct(
            self,
            "Observability",
            config=config,
            api_stage=self.intake.api.deployment_stage,
            receiver=self.intake.receiver.function,
            processor=self.processing.processor.function,
            queue=self.processing.queue,
            dead_letter_queue=self.processing.dead_letter_queue,
            access_log_group=self.intake.access_log_group,
        )
        self.saved_queries = SavedQueriesConstruct(
            self,
            "SavedQueries",
            folder=config.stack_name,
            log_groups=[self.intake.receiver.log_group, self.processing.processor.log_group],
        )
        self.reconciliation.observe(self.observability)
        cdk.Tags.of(self).add("service", "klikit-webhooks")
        cdk.Tags.of(self).add("stage", config.stage)
        self._outputs()

    def _outputs(self) -> None:
        dashboard_name = self.observability.dashboard.dashboard_name
        outputs = {
            spec.OUTPUT_WEBHOOK_URL: (self.intake.webhook_url, "Register this URL with klikit (HTTPS only)"),
            spec.OUTPUT_QUEUE_URL: (self.processing.queue.queue_url, "Queue between receiver and processor"),
            spec.OUTPUT_DLQ_URL: (
                self.processing.dead_letter_queue.queue_url,
                "Deliveries that could not be processed",
            ),
            spec.OUTPUT_IDEMPOTENCY_TABLE: (self.intake.idempotency_table.table_name, "Receiver idempotency records"),
            spec.OUTPUT_EFFECTS_TABLE: (self.processing.effects_table.table_name, "Processor side-effect records"),
            spec.OUTPUT_ORDERS_TABLE: (self.processing.orders_table.table_name, "Orders as the processor applied them"),
            spec.OUTPUT_BUCKET: (self.payloads.bucket.bucket_name, "Claim checks and the archive"),
            spec.OUTPUT_SECRET_ARN: (self.intake.secret.secret_arn, "Put klikit's webhook secret here"),
            spec.OUTPUT_DASHBOARD_URL: (
                f"https://{self.region}.console.aws.amazon.com/cloudwatch/home?region={self.region}"
                f"#dashboards:name={dashboard_name}",
                "CloudWatch dashboard",
            ),
            spec.OUTPUT_RECEIVER_LOG_GROUP: (self.intake.receiver.log_group.log_group_name, "Receiver logs"),
            spec.OUTPUT_PROCESSOR_LOG_GROUP: (self.processing.processor.log_group.log_group_name, "Processor logs"),
            spec.OUTPUT_RECONCILER_LOG_GROUP: (
                self.reconciliation.reconciler.log_group.log_group_name,
                "Reconciler logs",
            ),
            spec.OUTPUT_PARTNER_SECRET_ARN: (
                self.reconciliation.secret.secret_arn,
                "Put klikit's partner API credentials here",
            ),
            spec.OUTPUT_KLIKIT_API_URL: (self.config.klikit_api_url, "klikit's partner API the reconciler reads"),
        }
        for key, (value, description) in outputs.items():
            cdk.CfnOutput(self, key, value=value, description=description)
