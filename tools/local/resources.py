"""Create the stack's stateful resources on moto (in-process or server) from infra/spec.py.

Used by the local stack and by the tests, so both run against what `cdk deploy` would create.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from infra import lambda_shapes, spec
from klikit import settings as env_names
from tools.fake_klikit import LOCAL_PARTNER_KEY, LOCAL_SECRET_KEY

LOCAL_REGION = lambda_shapes.REGION


@dataclass(frozen=True)
class LocalResources:
    secret_id: str
    idempotency_table: str
    effects_table: str
    orders_table: str
    queue_url: str
    dlq_url: str
    bucket: str
    partner_secret_id: str = ""  # klikit's partner API credentials, for the reconciler

    def receiver_env(self, ttl_days: int = env_names.DEFAULT_IDEMPOTENCY_TTL_DAYS) -> dict[str, str]:
        return lambda_shapes.receiver_environment(
            secret_id=self.secret_id,
            idempotency_table=self.idempotency_table,
            queue_url=self.queue_url,
            bucket=self.bucket,
            ttl_days=ttl_days,
            queue_max_bytes=spec.QUEUE_MAX_MESSAGE_BYTES,
        )

    def processor_env(self, ttl_days: int = env_names.DEFAULT_IDEMPOTENCY_TTL_DAYS) -> dict[str, str]:
        return lambda_shapes.processor_environment(
            orders_table=self.orders_table,
            effects_table=self.effects_table,
            bucket=self.bucket,
            dlq_url=self.dlq_url,
            ttl_days=ttl_days,
        )

    def reconciler_env(
        self, klikit_api_url: str, lookback_hours: int = env_names.DEFAULT_RECONCILE_LOOKBACK_HOURS
    ) -> dict[str, str]:
        return lambda_shapes.reconciler_environment(
            orders_table=self.orders_table,
            queue_url=self.queue_url,
            checkpoint_table=self.idempotency_table,
            partner_secret_id=self.partner_secret_id,
            klikit_api_url=klikit_api_url,
            lookback_hours=lookback_hours,
        )

    def env(self, ttl_days: int = env_names.DEFAULT_IDEMPOTENCY_TTL_DAYS) -> dict[str, str]:
        """Both functions' resources, for a test process that runs the two handlers side by side."""
        return {**self.receiver_env(ttl_days), **self.processor_env(ttl_days)}


def _create_table(dynamodb: Any, name: str, table: spec.TableSpec) -> None:
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": table.partition_key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": table.partition_key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    if table.ttl_attribute:
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )


def table_name(prefix: str, table: spec.TableSpec) -> str:
    return f"{prefix}-{table.logical_id}"


def create_resources(
    session: Any,
    secrets: list[str],
    prefix: str = "klikit-local",
    max_receive_count: int = 5,
    visibility_timeout_seconds: int = 30,
    partner_credentials: tuple[str, str] = (LOCAL_PARTNER_KEY, LOCAL_SECRET_KEY),
) -> LocalResources:
    """Create tables, queues, bucket and secret with `session` (a boto3 Session aimed at moto)."""
    dynamodb = session.client("dynamodb")
    sqs = session.client("sqs")
    s3 = session.client("s3")
    secretsmanager = session.client("secretsmanager")

    names = {table.logical_id: table_name(prefix, table) for table in spec.TABLES}
    for table in spec.TABLES:
        _create_table(dynamodb, names[table.logical_id], table)

    dlq_url = sqs.create_queue(
        QueueName=f"{prefix}-dlq",
        Attributes={
            "MessageRetentionPeriod": str(spec.DLQ_RETENTION_DAYS * 86_400),
            "MaximumMessageSize": str(spec.QUEUE_MAX_MESSAGE_BYTES),
        },
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=f"{prefix}-deliveries",
        Attributes={
            "MaximumMessageSize": str(spec.QUEUE_MAX_MESSAGE_BYTES),
            "MessageRetentionPeriod": str(spec.QUEUE_RETENTION_DAYS * 86_400),
            "VisibilityTimeout": str(visibility_timeout_seconds),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
        },
    )["QueueUrl"]

    bucket = f"{prefix}-payloads"
    s3.create_bucket(Bucket=bucket)

    secret_value = secrets[0] if len(secrets) == 1 else json.dumps({"active": secrets})
    secret_id = secretsmanager.create_secret(Name=f"{prefix}/webhook-secret", SecretString=secret_value)["ARN"]
    partner_key, secret_key = partner_credentials
    partner_secret_id = secretsmanager.create_secret(
        Name=f"{prefix}/partner-credentials",
        SecretString=json.dumps({"partner_key": partner_key, "secret_key": secret_key}),
    )["ARN"]

    return LocalResources(
        secret_id=secret_id,
        idempotency_table=names[spec.IDEMPOTENCY_TABLE.logical_id],
        effects_table=names[spec.EFFECTS_TABLE.logical_id],
        orders_table=names[spec.ORDERS_TABLE.logical_id],
        queue_url=queue_url,
        dlq_url=dlq_url,
        bucket=bucket,
        partner_secret_id=partner_secret_id,
    )
