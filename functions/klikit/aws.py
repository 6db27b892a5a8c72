"""boto3 clients with bounded timeouts and retries: the receiver must answer klikit well inside 10 s."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, overload

import boto3
from botocore.config import Config

if TYPE_CHECKING:  # boto3-stubs' client types, for mypy only: nothing more is imported on a cold start
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

Service = Literal["dynamodb", "events", "s3", "secretsmanager", "sqs"]  # what the functions call


def client_config(timeout_seconds: float, max_attempts: int = 3) -> Config:
    # standard mode retries throttling and transient errors with backoff; timeouts keep the worst case bounded
    return Config(
        connect_timeout=timeout_seconds,
        read_timeout=timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        tcp_keepalive=True,
    )


@overload
def client(service: Literal["dynamodb"], timeout_seconds: float, max_attempts: int = 3) -> DynamoDBClient: ...
@overload
def client(service: Literal["events"], timeout_seconds: float, max_attempts: int = 3) -> EventBridgeClient: ...
@overload
def client(service: Literal["s3"], timeout_seconds: float, max_attempts: int = 3) -> S3Client: ...
@overload
def client(
    service: Literal["secretsmanager"], timeout_seconds: float, max_attempts: int = 3
) -> SecretsManagerClient: ...
@overload
def client(service: Literal["sqs"], timeout_seconds: float, max_attempts: int = 3) -> SQSClient: ...
def client(
    service: Service, timeout_seconds: float, max_attempts: int = 3
) -> DynamoDBClient | EventBridgeClient | S3Client | SecretsManagerClient | SQSClient:
    """A boto3 client; AWS_ENDPOINT_URL (set by the local stack) points it at moto, unset in AWS."""
    return boto3.client(service, config=client_config(timeout_seconds, max_attempts))
