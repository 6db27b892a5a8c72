"""Build the receiver's Intake from its settings: the only module that creates AWS clients for it."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.parameters import SecretsProvider

from klikit.aws import client
from klikit.settings import ReceiverSettings
from receiver.idempotency import DeliveryAdmission
from receiver.intake import Intake
from receiver.queue import DeliveryQueue
from receiver.secrets import WebhookSecrets


def build_intake(settings: ReceiverSettings | None = None) -> Intake:
    settings = settings or ReceiverSettings.from_env()
    timeout = settings.aws_call_timeout_seconds

    @cache
    def s3() -> Any:
        return client("s3", timeout)

    queue = DeliveryQueue(
        sqs=client("sqs", timeout),
        s3=s3,
        queue_url=settings.queue_url,
        bucket=settings.payload_bucket,
        max_message_bytes=settings.sqs_max_message_bytes,
    )
    admission = DeliveryAdmission(
        persistence=DynamoDBPersistenceLayer(
            table_name=settings.idempotency_table,
            boto3_client=client("dynamodb", timeout),
        ),
        ttl_seconds=settings.idempotency_ttl_seconds,
        enqueue=queue.enqueue,
    )
    secrets = WebhookSecrets(
        provider=SecretsProvider(boto3_client=client("secretsmanager", timeout)),
        secret_id=settings.secret_id,
        cache_seconds=settings.secret_cache_seconds,
        refresh_min_interval_seconds=settings.secret_refresh_min_interval_seconds,
        grace_seconds=settings.secret_grace_seconds,
    )
    return Intake(secrets=secrets, admitter=admission, max_body_bytes=settings.max_body_bytes)
