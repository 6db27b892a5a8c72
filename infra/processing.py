"""The asynchronous half: the queue and its DLQ, the orders and effects tables, the processor, optional fan-out."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import lambda_shapes, spec
from infra.config import StackConfig
from infra.function import PythonFunctionConstruct
from infra.storage import removal_policy, table
from klikit import observability

BATCH_SIZE = 10
# Lambda's pollers wait up to this long to fill a batch: at ~10 deliveries/s one invocation, one ReceiveMessage and
# one DeleteMessageBatch carry ~10 deliveries instead of one each (docs/performance.md, cost). klikit's ack does not
# wait for it; processing starts at most this much later.
BATCHING_WINDOW = cdk.Duration.seconds(1)


class ProcessingConstruct(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        bucket: s3.IBucket,
        layer: lambda_.ILayerVersion,
    ) -> None:
        super().__init__(scope, construct_id)
        removal = removal_policy(config)

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            retention_period=cdk.Duration.days(spec.DLQ_RETENTION_DAYS),
            max_message_size_bytes=spec.QUEUE_MAX_MESSAGE_BYTES,  # it receives the main queue's messages unchanged
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            removal_policy=removal,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            visibility_timeout=cdk.Duration.seconds(config.queue_visibility_timeout_seconds),
            retention_period=cdk.Duration.days(spec.QUEUE_RETENTION_DAYS),
            max_message_size_bytes=spec.QUEUE_MAX_MESSAGE_BYTES,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=config.dlq_max_receive_count
            ),
            removal_policy=removal,
        )
        self.orders_table = table(self, spec.ORDERS_TABLE, config)
        self.effects_table = table(self, spec.EFFECTS_TABLE, config)
        self.event_bus = events.EventBus(self, "OrderEvents") if config.fan_out else None

        environment = lambda_shapes.processor_environment(
            orders_table=self.orders_table.table_name,
            effects_table=self.effects_table.table_name,
            bucket=bucket.bucket_name,
            dlq_url=self.dead_letter_queue.queue_url,
            ttl_days=config.idempotency_ttl_days,
            event_bus=self.event_bus.event_bus_name if self.event_bus is not None else None,
            tracing=config.tracing,
        )

        self.processor = PythonFunctionConstruct(
            self,
            "Processor",
            config=config,
            handler=spec.PROCESSOR_HANDLER,
            service=observability.PROCESSOR_SERVICE,
            description="Applies queued klikit deliveries to the orders table",
            memory_mb=config.processor_memory_mb,
            timeout=cdk.Duration.seconds(config.processor_timeout_seconds),
            environment=environment,
            layer=layer,
            # none by default: Lambda refuses any reservation that leaves an account under 10 unreserved executions
            reserved_concurrency=config.processor_reserved_concurrency,
        )
        function = self.processor.function
        function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=BATCH_SIZE,
                max_batching_window=BATCHING_WINDOW,
                report_batch_item_failures=True,
                # AWS's cap for an SQS consumer: never more concurrent batches than this, so a slow POS sees no
                # stampede, without taking executions out of the account's shared pool.
                max_concurrency=config.processor_max_concurrency,
            )
        )
        self.orders_table.grant(function, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        self.effects_table.grant(
            function, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"
        )
        iam.Grant.add_to_principal(
            grantee=function,
            actions=["s3:GetObject"],
            resource_arns=[
                bucket.arn_for_objects(f"{spec.CLAIM_CHECKS_PREFIX}*"),
                bucket.arn_for_objects(f"{spec.ARCHIVE_OBJECTS_PREFIX}*"),
            ],
        )
        iam.Grant.add_to_principal(
            grantee=function,
            actions=["s3:PutObject"],
            resource_arns=[
                bucket.arn_for_objects(f"{spec.ARCHIVE_OBJECTS_PREFIX}*"),
                # a poison body too large for the DLQ once the quarantine reasons are added
                bucket.arn_for_objects(f"{spec.CLAIM_CHECKS_PREFIX}*"),
            ],
        )
        # Without ListBucket, S3 answers a missing claim check 403 (retried into the DLQ with no reason) instead of
        # 404 (quarantined as claim_check_missing); the prefix condition keeps the rest of the bucket unlistable.
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{spec.CLAIM_CHECKS_PREFIX}*"]}},
            )
        )
        # Poison deliveries are quarantined into the DLQ by the processor itself (with the reason attached).
        self.dead_letter_queue.grant(function, "sqs:SendMessage")
        if self.event_bus is not None:
            self.event_bus.grant_put_events_to(function)
