"""The deployment's settings: cdk.json context, validated once, with errors that name the bad key and value.

No CDK import here: the offline local stack (tools/local) reads the same cdk.json through `read_cdk_json_context`
and `load_config`, so a DLQ receive count or TTL set for AWS is the one you run locally.

Values passed on the command line (`cdk deploy -c key=value`) arrive as strings; they are parsed like cdk.json values.
Each key's check is one row of PARSERS; the rules that relate two keys follow in load_config.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import REPO_ROOT, spec
from klikit.settings import KLIKIT_PROD_API_URL

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


Parser = Callable[[str, Any], Any]
"""Takes (key, raw value) and returns what StackConfig holds, or raises ConfigError naming the key and the fix."""


def _bad(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"invalid cdk.json context {key!r}: {value!r} ({expected})")


def integer(lo: int, hi: int) -> Parser:
    expected = f"expected an integer from {lo} to {hi}"

    def parse(key: str, value: Any) -> int:
        if isinstance(value, bool):
            raise _bad(key, value, expected)
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise _bad(key, value, expected) from None
        if not isinstance(value, int) or not lo <= value <= hi:
            raise _bad(key, value, expected)
        return value

    return parse


def number(lo: float, hi: float) -> Parser:
    expected = f"expected a number from {lo:g} to {hi:g}"

    def parse(key: str, raw: Any) -> float:
        value = raw
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise _bad(key, raw, expected) from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise _bad(key, raw, expected)
        return float(value)

    return parse


def choice(choices: tuple[Any, ...]) -> Parser:
    expected = "expected one of " + ", ".join(str(choice) for choice in choices)

    def parse(key: str, value: Any) -> Any:
        if isinstance(value, str) and isinstance(choices[0], int):
            with contextlib.suppress(ValueError):
                value = int(value)
        if isinstance(value, str):
            value = value.strip()
            if isinstance(choices[0], str) and choices[0].isupper():
                value = value.upper()
        if isinstance(value, bool) or value not in choices:
            raise _bad(key, value, expected)
        return value

    return parse


def optional(parser: Parser) -> Parser:
    """None for an empty value (`-c key=` or `-c key=null` on the command line), else what `parser` makes of it."""

    def parse(key: str, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
            return None
        return parser(key, value)

    return parse


def boolean(key: str, value: Any) -> bool:
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


def _stack_name(key: str, value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""  # derived from the stage
    if not isinstance(value, str) or not _STACK_NAME.match(value):
        raise _bad(key, value, "expected a CloudFormation stack name: letters, digits and hyphens")
    return value


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


def _email(key: str, value: Any) -> str | None:
    email = _optional_str(value)
    if value not in (None, "") and (email is None or not _EMAIL.match(email)):
        raise _bad(key, value, "expected an email address, or empty for no subscription")
    return email


def _secret_id(key: str, value: Any) -> str | None:
    name = _optional_str(value)
    if value not in (None, "") and (
        name is None or not (_SECRET_ARN.match(name) or (not name.startswith("arn:") and _SECRET_NAME.match(name)))
    ):
        raise _bad(key, value, "expected a Secrets Manager secret name or ARN, or empty to create one")
    return name


def _https_url(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _HTTPS_URL.match(value.strip()):
        raise _bad(key, value, f"expected klikit's https partner API base URL, e.g. {KLIKIT_PROD_API_URL}")
    return value.strip().rstrip("/")


def _reconcile_interval(key: str, value: Any) -> int:
    minutes: int = integer(0, 1440)(key, value)
    if 0 < minutes < RECONCILE_MIN_INTERVAL_MINUTES:
        raise _bad(key, value, f"expected 0 (off) or {RECONCILE_MIN_INTERVAL_MINUTES} to 1440 minutes")
    return minutes


# Every cdk.json key -> the parser of its raw value (cdk.json or `-c key=value`); the defaults are StackConfig's.
PARSERS: dict[str, Parser] = {
    "stage": choice(STAGES),
    "stack_name": _stack_name,
    "allowed_cidrs": _cidrs,
    "alarm_email": _email,
    "webhook_secret": _secret_id,
    "idempotency_ttl_days": integer(1, 3650),
    "archive_expiry_days": integer(1, 3650),
    "log_retention_days": choice(tuple(LOG_RETENTION_DAYS)),
    "log_level": choice(LOG_LEVELS),
    "throttle_rate_limit": number(1, 10_000),
    "throttle_burst_limit": integer(1, 5_000),
    "receiver_memory_mb": integer(128, 10_240),
    "processor_memory_mb": integer(128, 10_240),
    "processor_timeout_seconds": integer(1, LAMBDA_MAX_TIMEOUT_SECONDS),
    # the range the SQS event source's ScalingConfig.MaximumConcurrency accepts
    "processor_max_concurrency": integer(2, 1000),
    "processor_reserved_concurrency": optional(integer(2, 1000)),
    "dlq_max_receive_count": integer(1, 1000),
    "fan_out": boolean,
    "signature_rejection_alarm_threshold": integer(1, 1_000_000),
    "queue_age_alarm_seconds": integer(60, spec.QUEUE_RETENTION_DAYS * 86_400),
    # CloudWatch evaluates an alarm over at most 7 days (hourly periods x evaluation periods <= 604,800 s).
    "silence_alarm_hours": integer(0, 168),
    "tracing": boolean,
    "reconcile_every_minutes": _reconcile_interval,
    "reconcile_lookback_hours": integer(1, RECONCILE_MAX_LOOKBACK_HOURS),
    "klikit_api_url": _https_url,
    "partner_credentials_secret": _secret_id,
}
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
    values = {key: PARSERS[key](key, context[key]) for key in KEYS if key in context}
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
