"""The deployment's settings: cdk.json context, validated once, with errors that name the bad key and value.

No CDK import here: the offline local stack (tools/local) reads the same cdk.json through `read_cdk_json_context`
and `load_config`, so a DLQ receive count or TTL set for AWS is the one you run locally.

Values passed on the command line (`cdk deploy -c key=value`) arrive as strings; they are parsed like cdk.json values.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import spec
from klikit.settings import KLIKIT_PROD_API_URL

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = REPO_ROOT / "cdk.json"
REQUIREMENTS_TXT = REPO_ROOT / "requirements.txt"

STAGES = ("dev", "prod")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The retention periods CloudWatch Logs accepts, and the aws_logs.RetentionDays member naming each (no CDK import here).
LOG_RETENTION_DAYS = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}
LAMBDA_MAX_TIMEOUT_SECONDS = 900
# SQS caps the visibility timeout at 12 hours; the queue's is 6x the processor timeout.
SQS_MAX_VISIBILITY_SECONDS = 43_200

# A delivery can sit in the queue, then in the DLQ, then wait for someone to fix the cause and redrive it: the
# effects it already had must still be remembered when it comes back.
REDRIVE_MARGIN_DAYS = 7
MIN_EFFECTS_WINDOW_DAYS = spec.QUEUE_RETENTION_DAYS + spec.DLQ_RETENTION_DAYS + REDRIVE_MARGIN_DAYS

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")
# A run takes at most the reconciler's timeout (5 min): a schedule at least twice as long never overlaps itself.
RECONCILE_MIN_INTERVAL_MINUTES = 10
RECONCILE_MAX_LOOKBACK_HOURS = 90 * 24  # klikit lists at most 90 days at a time
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")


class ConfigError(ValueError):
    """A context value is missing its shape; the message names the key and the value."""


@dataclass(frozen=True)
class StackConfig:
    stage: str = "dev"
    stack_name: str = ""  # empty: derived from the stage (spec.default_stack_name)
    allowed_cidrs: tuple[str, ...] = ()
    alarm_email: str | None = None
    webhook_secret: str | None = None  # name or ARN of an existing secret; None = the stack creates one
    idempotency_ttl_days: int = 30
    archive_expiry_days: int = 30
    log_retention_days: int = 30
    log_level: str = "INFO"
    # sized for a group of a few hundred branches at a few requests per second each (docs/deploy.md, "Capacity")
    throttle_rate_limit: float = 1000.0
    throttle_burst_limit: int = 2000
    receiver_memory_mb: int = 256
    processor_memory_mb: int = 512
    processor_timeout_seconds: int = 30
    processor_max_concurrency: int = 5
    processor_reserved_concurrency: int | None = None
    dlq_max_receive_count: int = 5
    fan_out: bool = False
    signature_rejection_alarm_threshold: int = 10
    queue_age_alarm_seconds: int = 600
    # No accepted delivery for this many hours raises an alarm (0 = off). A restaurant's longest normal quiet
    # stretch is the night (last order ~22:00, first ~10:00: 12 h); 16 h leaves room and still alarms the next day.
    silence_alarm_hours: int = 16
    tracing: bool = False  # X-Ray active tracing on the API stage and both functions
    reconcile_every_minutes: int = 0  # 0 = off until klikit's partner credentials are in their secret
    reconcile_lookback_hours: int = 24
    klikit_api_url: str = KLIKIT_PROD_API_URL
    partner_credentials_secret: str | None = None  # name or ARN of an existing secret; None = the stack creates one

    def __post_init__(self) -> None:
        if not self.stack_name:
            object.__setattr__(self, "stack_name", spec.default_stack_name(self.stage))

    @property
    def retain_data(self) -> bool:
        """Tables, bucket, secret and log groups survive `cdk destroy` in prod; dev tears everything down."""
        return self.stage == "prod"

    @property
    def queue_visibility_timeout_seconds(self) -> int:
        # AWS guidance: at least 6x the function timeout, so retries of a throttled batch do not redeliver early.
        return 6 * self.processor_timeout_seconds


# key -> (parser, default); the parser receives (key, raw value) and raises ConfigError.
def _bad(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"invalid cdk.json context {key!r}: {value!r} ({expected})")


def _int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise _bad(key, value, f"expected an integer from {lo} to {hi}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _bad(key, value, f"expected an integer from {lo} to {hi}") from None
    if not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(key, value, f"expected an integer from {lo} to {hi}")
    return value


def _number(key: str, value: Any, lo: float, hi: float) -> float:
    raw = value
    if isinstance(value, bool):
        raise _bad(key, raw, f"expected a number from {lo:g} to {hi:g}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _bad(key, raw, f"expected a number from {lo:g} to {hi:g}") from None
    if not isinstance(value, int | float) or not lo <= value <= hi:
        raise _bad(key, raw, f"expected a number from {lo:g} to {hi:g}")
    return float(value)


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad(key, value, "expected true or false")


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    return None


def _cidrs(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else [part for part in text.split(",") if part.strip()]
    if not isinstance(value, list):
        raise _bad(key, value, 'expected a list of CIDR blocks such as ["203.0.113.0/24"]')
    cidrs = []
    for item in value:
        try:
            cidrs.append(str(ipaddress.ip_network(str(item).strip(), strict=True)))
        except ValueError:
            raise _bad(key, item, "expected a CIDR block such as 203.0.113.0/24, with no host bits set") from None
    return tuple(cidrs)


def _choice(key: str, value: Any, choices: tuple[Any, ...]) -> Any:
    if isinstance(value, str) and isinstance(choices[0], int):
        with contextlib.suppress(ValueError):
            value = int(value)
    if isinstance(value, str):
        value = value.strip()
        if isinstance(choices[0], str) and choices[0].isupper():
            value = value.upper()
    if isinstance(value, bool) or value not in choices:
        raise _bad(key, value, "expected one of " + ", ".join(str(choice) for choice in choices))
    return value


def _parse(key: str, value: Any) -> Any:
    if key == "stage":
        return _choice(key, value, STAGES)
    if key == "stack_name":
        if value is None or (isinstance(value, str) and not value.strip()):
            return ""
        if not isinstance(value, str) or not _STACK_NAME.match(value):
            raise _bad(key, value, "expected a CloudFormation stack name: letters, digits and hyphens")
        return value
    if key == "allowed_cidrs":
        return _cidrs(key, value)
    if key == "alarm_email":
        email = _optional_str(value)
        if value not in (None, "") and (email is None or not _EMAIL.match(email)):
            raise _bad(key, value, "expected an email address, or empty for no subscription")
        return email
    if key == "reconcile_every_minutes":
        minutes = _int(key, value, 0, 1440)
        if 0 < minutes < RECONCILE_MIN_INTERVAL_MINUTES:
            raise _bad(key, value, f"expected 0 (off) or {RECONCILE_MIN_INTERVAL_MINUTES} to 1440 minutes")
        return minutes
    if key == "reconcile_lookback_hours":
        return _int(key, value, 1, RECONCILE_MAX_LOOKBACK_HOURS)
    if key == "klikit_api_url":
        if not isinstance(value, str) or not _HTTPS_URL.match(value.strip()):
            raise _bad(key, value, f"expected klikit's https partner API base URL, e.g. {KLIKIT_PROD_API_URL}")
        return value.strip().rstrip("/")
    if key in ("webhook_secret", "partner_credentials_secret"):
        name = _optional_str(value)
        if value not in (None, "") and (
            name is None or not (_SECRET_ARN.match(name) or (not name.startswith("arn:") and _SECRET_NAME.match(name)))
        ):
            raise _bad(key, value, "expected a Secrets Manager secret name or ARN, or empty to create one")
        return name
    if key in ("idempotency_ttl_days", "archive_expiry_days"):
        return _int(key, value, 1, 3650)
    if key == "log_retention_days":
        return _choice(key, value, tuple(LOG_RETENTION_DAYS))
    if key == "log_level":
        return _choice(key, value, LOG_LEVELS)
    if key == "throttle_rate_limit":
        return _number(key, value, 1, 10_000)
    if key == "throttle_burst_limit":
        return _int(key, value, 1, 5_000)
    if key in ("receiver_memory_mb", "processor_memory_mb"):
        return _int(key, value, 128, 10_240)
    if key == "processor_timeout_seconds":
        return _int(key, value, 1, LAMBDA_MAX_TIMEOUT_SECONDS)
    if key == "processor_max_concurrency":
        # the range the SQS event source's ScalingConfig.MaximumConcurrency accepts
        return _int(key, value, 2, 1000)
    if key == "processor_reserved_concurrency":
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
            return None
        return _int(key, value, 2, 1000)
    if key == "dlq_max_receive_count":
        return _int(key, value, 1, 1000)
    if key == "fan_out":
        return _bool(key, value)
    if key == "signature_rejection_alarm_threshold":
        return _int(key, value, 1, 1_000_000)
    if key == "queue_age_alarm_seconds":
        return _int(key, value, 60, spec.QUEUE_RETENTION_DAYS * 86_400)
    if key == "silence_alarm_hours":
        # CloudWatch evaluates an alarm over at most 7 days (hourly periods x evaluation periods <= 604,800 s).
        return _int(key, value, 0, 168)
    if key == "tracing":
        return _bool(key, value)
    raise AssertionError(key)  # pragma: no cover - KEYS and _parse list the same keys


KEYS = tuple(StackConfig.__dataclass_fields__)


def _is_ours(key: str) -> bool:
    # CDK's own context keys carry "@", ":", "/" or "-" (feature flags, lookups, CLI settings); ours are snake_case.
    return re.fullmatch(r"[a-z][a-z0-9_]*", key) is not None


def load_config(context: Mapping[str, Any]) -> StackConfig:
    """Validate the stack's context keys (others, such as feature flags, are ignored) into a StackConfig."""
    unknown = sorted(key for key in context if _is_ours(key) and key not in KEYS)
    if unknown:
        raise ConfigError(
            f"unknown cdk.json context {unknown[0]!r}: {context[unknown[0]]!r} (known keys: {', '.join(KEYS)})"
        )
    values = {key: _parse(key, context[key]) for key in KEYS if key in context}
    config = StackConfig(**values)
    if config.idempotency_ttl_days < MIN_EFFECTS_WINDOW_DAYS:
        # the processor's effects table keeps its records this long: a redrive after they expired repeats effects
        raise _bad(
            "idempotency_ttl_days",
            config.idempotency_ttl_days,
            f"the effects window must outlive the queue's retention ({spec.QUEUE_RETENTION_DAYS} days), the DLQ's "
            f"({spec.DLQ_RETENTION_DAYS} days) and {REDRIVE_MARGIN_DAYS} days to redrive: at least "
            f"{MIN_EFFECTS_WINDOW_DAYS}",
        )
    reserved = config.processor_reserved_concurrency
    if reserved is not None and reserved < config.processor_max_concurrency:
        raise _bad(
            "processor_reserved_concurrency",
            reserved,
            f"at least processor_max_concurrency ({config.processor_max_concurrency}), or the poller's batches are "
            "throttled and redelivered; or leave it empty",
        )
    if config.reconcile_every_minutes and config.reconcile_lookback_hours * 60 <= config.reconcile_every_minutes:
        raise _bad(
            "reconcile_lookback_hours",
            config.reconcile_lookback_hours,
            "the look-back must be longer than reconcile_every_minutes, or orders between runs go unchecked",
        )
    if config.queue_visibility_timeout_seconds > SQS_MAX_VISIBILITY_SECONDS:  # pragma: no cover - 6 x 900 < 43200
        raise _bad("processor_timeout_seconds", config.processor_timeout_seconds, "6x it exceeds SQS's 12 hours")
    return config


def check_deployable(config: StackConfig) -> None:
    """What synth refuses that the offline local stack does not need: a prod stage whose alarms reach no one."""
    if config.stage == "prod" and not config.alarm_email:
        raise ConfigError(
            "a prod stage needs someone to receive its alarms: deploy with -c alarm_email=oncall@example.com "
            "(or set alarm_email in cdk.json)"
        )


def read_cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """The `context` object of cdk.json (feature flags and the stack's keys)."""
    context = json.loads(path.read_text(encoding="utf-8")).get("context", {})
    if not isinstance(context, dict):
        raise ConfigError(f"invalid cdk.json 'context': expected an object, got {type(context).__name__}")
    return context


def config_from_cdk_json(path: Path = CDK_JSON) -> StackConfig:
    return load_config(read_cdk_json_context(path))
