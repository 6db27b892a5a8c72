"""Create the stack's stateful resources on moto (in-process or server) from infra/spec.py.

Used by the local stack and by the tests, so both run against what `cdk deploy` would create.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from infra import spec
from klikit import settings as env_names
from tools.fake_klikit import LOCAL_PARTNER_KEY, LOCAL_SECRET_KEY

LOCAL_REGION = "us-east-1"


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

    def receiver_env(self) -> dict[str, str]:
        return {
            env_names.WEBHOOK_SECRET_ID: self.secret_id,
            env_names.IDEMPOTENCY_TABLE_NAME: self.idempotency_table,
            env_names.QUEUE_URL: self.queue_url,
            env_names.PAYLOAD_BUCKET_NAME: self.bucket,
        }

    def processor_env(self) -> dict[str, str]:
        return {
            env_names.ORDERS_TABLE_NAME: self.orders_table,
            env_names.EFFECTS_TABLE_NAME: self.effects_table,
            env_names.PAYLOAD_BUCKET_NAME: self.bucket,
            env_names.DLQ_URL: self.dlq_url,
        }

    def reconciler_env(self, klikit_api_url: str) -> dict[str, str]:
        return {
            env_names.ORDERS_TABLE_NAME: self.orders_table,
            env_names.QUEUE_URL: self.queue_url,
            env_names.CHECKPOINT_TABLE_NAME: self.idempotency_table,
            env_names.PARTNER_SECRET_ID: self.partner_secret_id,
            env_names.KLIKIT_API_URL: klikit_api_url,
        }

    def env(self) -> dict[str, str]:
        return {**self.receiver_env(), **self.processor_env()}


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

    names = {table.logical_id: f"{prefix}-{table.logical_id}" for table in spec.TABLES}
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
