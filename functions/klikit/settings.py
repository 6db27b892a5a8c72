"""The one place that reads the environment. Each function validates its settings once, at cold start.

The variable names are constants so that the CDK stack and the local stack set exactly what is read here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple, TypeVar

from klikit import limits
from klikit.errors import SettingsError

# --- names (infra/ and tools/local use these) --------------------------------------------------------------
WEBHOOK_SECRET_ID = "WEBHOOK_SECRET_ID"
IDEMPOTENCY_TABLE_NAME = "IDEMPOTENCY_TABLE_NAME"
IDEMPOTENCY_TTL_DAYS = "IDEMPOTENCY_TTL_DAYS"
QUEUE_URL = "QUEUE_URL"
DLQ_URL = "DLQ_URL"
PAYLOAD_BUCKET_NAME = "PAYLOAD_BUCKET_NAME"
MAX_BODY_BYTES = "MAX_BODY_BYTES"
SQS_MAX_MESSAGE_BYTES = "SQS_MAX_MESSAGE_BYTES"
SECRET_CACHE_SECONDS = "SECRET_CACHE_SECONDS"
SECRET_REFRESH_MIN_INTERVAL_SECONDS = "SECRET_REFRESH_MIN_INTERVAL_SECONDS"
SECRET_GRACE_SECONDS = "SECRET_GRACE_SECONDS"
AWS_CALL_TIMEOUT_SECONDS = "AWS_CALL_TIMEOUT_SECONDS"
ORDERS_TABLE_NAME = "ORDERS_TABLE_NAME"
EFFECTS_TABLE_NAME = "EFFECTS_TABLE_NAME"
EFFECTS_TTL_DAYS = "EFFECTS_TTL_DAYS"
EVENT_BUS_NAME = "EVENT_BUS_NAME"
TRACING_ENABLED = "TRACING_ENABLED"  # "true" when the stack turns X-Ray tracing on (cdk.json `tracing`)
KLIKIT_API_URL = "KLIKIT_API_URL"
PARTNER_SECRET_ID = "PARTNER_SECRET_ID"
CHECKPOINT_TABLE_NAME = "CHECKPOINT_TABLE_NAME"
RECONCILE_LOOKBACK_HOURS = "RECONCILE_LOOKBACK_HOURS"

# --- defaults --------------------------------------------------------------------------------------------
DEFAULT_IDEMPOTENCY_TTL_DAYS = 30
DEFAULT_MAX_BODY_BYTES = limits.MAX_BODY_BYTES  # the largest body API Gateway can hand the receiver, base64
DEFAULT_SQS_MAX_MESSAGE_BYTES = 1024 * 1024  # the stack sets the queue's MaximumMessageSize to this
DEFAULT_SECRET_CACHE_SECONDS = 300
DEFAULT_SECRET_REFRESH_MIN_INTERVAL_SECONDS = 30
# How long the last good secret is used while Secrets Manager cannot be read: long enough to ride out an outage,
# short enough that a secret removed during one stops working within the hour.
DEFAULT_SECRET_GRACE_SECONDS = 3600
DEFAULT_AWS_CALL_TIMEOUT_SECONDS = 2.0
DEFAULT_RECONCILE_LOOKBACK_HOURS = 24
KLIKIT_PROD_API_URL = "https://gateway-enterprise.klikit.io/v1/partner"  # docs/klikit.md, Partner orders API


N = TypeVar("N", int, float)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"environment variable {name} is required but not set")
    return value


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N], minimum: N) -> N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from None
    if value < minimum:
        raise SettingsError(f"environment variable {name}={raw!r} must be at least {minimum}")
    return value


class ReceiverSettings(NamedTuple):
    secret_id: str
    idempotency_table: str
    queue_url: str
    payload_bucket: str
    idempotency_ttl_seconds: int
    max_body_bytes: int
    sqs_max_message_bytes: int
    secret_cache_seconds: int
    secret_refresh_min_interval_seconds: float
    aws_call_timeout_seconds: float
    secret_grace_seconds: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReceiverSettings:
        env = os.environ if env is None else env
        return cls(
            secret_id=_required(env, WEBHOOK_SECRET_ID),
            idempotency_table=_required(env, IDEMPOTENCY_TABLE_NAME),
            queue_url=_required(env, QUEUE_URL),
            payload_bucket=_required(env, PAYLOAD_BUCKET_NAME),
            idempotency_ttl_seconds=86_400 * _number(env, IDEMPOTENCY_TTL_DAYS, DEFAULT_IDEMPOTENCY_TTL_DAYS, int, 1),
            max_body_bytes=_number(env, MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES, int, 1),
            sqs_max_message_bytes=_number(env, SQS_MAX_MESSAGE_BYTES, DEFAULT_SQS_MAX_MESSAGE_BYTES, int, 1024),
            secret_cache_seconds=_number(env, SECRET_CACHE_SECONDS, DEFAULT_SECRET_CACHE_SECONDS, int, 0),
            secret_refresh_min_interval_seconds=_number(
                env,
                SECRET_REFRESH_MIN_INTERVAL_SECONDS,
                float(DEFAULT_SECRET_REFRESH_MIN_INTERVAL_SECONDS),
                float,
                0.0,
            ),
            aws_call_timeout_seconds=_number(
                env, AWS_CALL_TIMEOUT_SECONDS, DEFAULT_AWS_CALL_TIMEOUT_SECONDS, float, 0.1
            ),
            secret_grace_seconds=_number(env, SECRET_GRACE_SECONDS, DEFAULT_SECRET_GRACE_SECONDS, int, 0),
        )


class ProcessorSettings(NamedTuple):
    orders_table: str
    effects_table: str
    payload_bucket: str
    dlq_url: str
    effects_ttl_seconds: int
    event_bus_name: str | None
    aws_call_timeout_seconds: float
    tracing: bool = False
    # the DLQ's limit: a poison body near it is quarantined as a claim check
    sqs_max_message_bytes: int = DEFAULT_SQS_MAX_MESSAGE_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProcessorSettings:
        env = os.environ if env is None else env
        return cls(
            orders_table=_required(env, ORDERS_TABLE_NAME),
            effects_table=_required(env, EFFECTS_TABLE_NAME),
            payload_bucket=_required(env, PAYLOAD_BUCKET_NAME),
            dlq_url=_required(env, DLQ_URL),
            effects_ttl_seconds=86_400 * _number(env, EFFECTS_TTL_DAYS, DEFAULT_IDEMPOTENCY_TTL_DAYS, int, 1),
            event_bus_name=env.get(EVENT_BUS_NAME, "").strip() or None,
            aws_call_timeout_seconds=_number(
                env, AWS_CALL_TIMEOUT_SECONDS, DEFAULT_AWS_CALL_TIMEOUT_SECONDS, float, 0.1
            ),
            tracing=env.get(TRACING_ENABLED, "").strip().lower() == "true",
            sqs_max_message_bytes=_number(env, SQS_MAX_MESSAGE_BYTES, DEFAULT_SQS_MAX_MESSAGE_BYTES, int, 1024),
        )


class ReconcilerSettings(NamedTuple):
    orders_table: str
    queue_url: str
    checkpoint_table: str
    partner_secret_id: str
    klikit_api_url: str
    lookback_hours: int
    aws_call_timeout_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReconcilerSettings:
        env = os.environ if env is None else env
        url = _required(env, KLIKIT_API_URL).rstrip("/")
        if not url.startswith(("https://", "http://")):
            raise SettingsError(f"environment variable {KLIKIT_API_URL}={url!r} is not an http(s) URL")
        return cls(
            orders_table=_required(env, ORDERS_TABLE_NAME),
            queue_url=_required(env, QUEUE_URL),
            checkpoint_table=_required(env, CHECKPOINT_TABLE_NAME),
            partner_secret_id=_required(env, PARTNER_SECRET_ID),
            klikit_api_url=url,
            lookback_hours=_number(env, RECONCILE_LOOKBACK_HOURS, DEFAULT_RECONCILE_LOOKBACK_HOURS, int, 1),
            aws_call_timeout_seconds=_number(
                env, AWS_CALL_TIMEOUT_SECONDS, DEFAULT_AWS_CALL_TIMEOUT_SECONDS, float, 0.1
            ),
        )
