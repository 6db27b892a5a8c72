"""boto3 clients with bounded timeouts and retries: the receiver must answer klikit well inside 10 s."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def client_config(timeout_seconds: float, max_attempts: int = 3) -> Config:
    # standard mode retries throttling and transient errors with backoff; timeouts keep the worst case bounded
    return Config(
        connect_timeout=timeout_seconds,
        read_timeout=timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        tcp_keepalive=True,
    )


def client(service: str, timeout_seconds: float, max_attempts: int = 3) -> Any:
    """A boto3 client; AWS_ENDPOINT_URL (set by the local stack) points it at moto, unset in AWS."""
    return boto3.client(service, config=client_config(timeout_seconds, max_attempts))  # type: ignore[call-overload]
