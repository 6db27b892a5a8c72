"""cdk.json context validation: good values load, bad ones fail at synth with the key and the value named."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.config import (
    KEYS,
    PARSERS,
    REPO_ROOT,
    ConfigError,
    StackConfig,
    check_deployable,
    config_from_cdk_json,
    load_config,
    read_cdk_json_context,
)
from infra.layer import layer_requirements


def test_committed_cdk_json_is_a_valid_dev_configuration() -> None:
    config = config_from_cdk_json()
    assert config.stage == "dev"
    assert config.retain_data is False
    assert config == StackConfig(), "cdk.json states the documented defaults"


def test_feature_flags_and_cli_keys_in_the_context_are_not_ours_to_validate() -> None:
    config = load_config({"@aws-cdk/core:newStyleStackSynthesis": True, "aws:cdk:enable-path-metadata": True})
    assert config == StackConfig()


def test_command_line_strings_are_parsed_like_cdk_json_values() -> None:
    config = load_config(
        {
            "stage": "prod",
            "fan_out": "true",
            "throttle_rate_limit": "12.5",
            "throttle_burst_limit": "30",
            "processor_reserved_concurrency": "null",
            "allowed_cidrs": "203.0.113.0/24, 198.51.100.7/32",
            "log_retention_days": "90",
            "log_level": "debug",
            "alarm_email": "",
        }
    )
    assert config.retain_data is True
    assert config.fan_out is True
    assert config.throttle_rate_limit == 12.5
    assert config.throttle_burst_limit == 30
    assert config.processor_reserved_concurrency is None
    assert config.allowed_cidrs == ("203.0.113.0/24", "198.51.100.7/32")
    assert config.log_retention_days == 90
    assert config.log_level == "DEBUG"
    assert config.alarm_email is None


@pytest.mark.parametrize(
    "secret",
    [
        "klikit/webhook",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:klikit/webhook-AbCdEf",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:klikit/webhook",
    ],
)
def test_an_existing_secret_can_be_named_or_given_by_arn(secret: str) -> None:
    assert load_config({"webhook_secret": secret}).webhook_secret == secret


def test_queue_visibility_is_six_processor_timeouts() -> None:
    assert load_config({"processor_timeout_seconds": 45}).queue_visibility_timeout_seconds == 270


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("stage", "staging"),
        ("stack_name", "1-bad name"),
        ("allowed_cidrs", ["203.0.113.1/24"]),
        ("allowed_cidrs", ["klikit"]),
        ("allowed_cidrs", {"cidr": "203.0.113.0/24"}),
        ("alarm_email", "oncall"),
        ("alarm_email", 42),
        ("webhook_secret", "arn:aws:s3:::bucket"),
        ("idempotency_ttl_days", 0),
        ("idempotency_ttl_days", "thirty"),
        ("archive_expiry_days", True),
        ("log_retention_days", 10),
        ("log_level", "VERBOSE"),
        ("throttle_rate_limit", -1),
        ("throttle_burst_limit", 0),
        ("receiver_memory_mb", 64),
        ("processor_memory_mb", 20_000),
        ("processor_timeout_seconds", 901),
        ("processor_reserved_concurrency", 1),
        ("dlq_max_receive_count", 0),
        ("fan_out", "yes"),
        ("signature_rejection_alarm_threshold", 0),
        ("queue_age_alarm_seconds", 5),
    ],
)
def test_bad_value_fails_with_the_key_and_value_named(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as error:
        load_config({key: value})
    message = str(error.value)
    assert repr(key) in message
    bad = value[0] if isinstance(value, list) else value
    assert repr(bad) in message, message


# One bad value per key, each the kind of mistake a user makes; a key added without a row here fails the test below.
BAD_VALUE_OF_EVERY_KEY: dict[str, Any] = {
    "stage": "production",
    "stack_name": "klikit webhooks",
    "allowed_cidrs": "10.0.0.1/8",
    "alarm_email": "oncall@",
    "webhook_secret": "arn:aws:ssm:eu-west-1:123456789012:parameter/klikit",
    "idempotency_ttl_days": 3651,
    "archive_expiry_days": "a month",
    "log_retention_days": 31,
    "log_level": "TRACE",
    "throttle_rate_limit": "fast",
    "throttle_burst_limit": 5001,
    "receiver_memory_mb": "1GB",
    "processor_memory_mb": 127,
    "processor_timeout_seconds": 0,
    "processor_max_concurrency": 1001,
    "processor_reserved_concurrency": "lots",
    "dlq_max_receive_count": 1001,
    "fan_out": "on",
    "signature_rejection_alarm_threshold": 1.5,
    "queue_age_alarm_seconds": 14 * 86_400 + 1,
    "silence_alarm_hours": 169,
    "tracing": 1,
    "reconcile_every_minutes": 5,
    "reconcile_lookback_hours": 90 * 24 + 1,
    "klikit_api_url": "http://api.klikit.io/v1/partner",
    "partner_credentials_secret": "arn:partner",
}


def test_every_key_has_a_parser_and_a_bad_value_case() -> None:
    assert set(PARSERS) == set(KEYS)
    assert set(BAD_VALUE_OF_EVERY_KEY) == set(KEYS)


@pytest.mark.parametrize(("key", "value"), BAD_VALUE_OF_EVERY_KEY.items())
def test_every_key_rejects_a_bad_value_in_one_line_naming_the_key_value_and_fix(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as error:
        load_config({key: value})
    message = str(error.value)
    bad = value.split(",")[0] if key == "allowed_cidrs" else value
    assert message.startswith(f"invalid cdk.json context {key!r}: {bad!r} (expected "), message
    assert "\n" not in message


@pytest.mark.parametrize("days", [1, 24])
def test_an_effects_window_a_redrive_could_outlive_is_refused_naming_the_key(days: int) -> None:
    with pytest.raises(ConfigError) as error:
        load_config({"idempotency_ttl_days": days})

    message = str(error.value)
    assert message.startswith(f"invalid cdk.json context 'idempotency_ttl_days': {days} ")
    assert "at least 25" in message and "DLQ" in message


def test_an_effects_window_as_long_as_queue_dlq_and_redrive_is_accepted() -> None:
    assert load_config({"idempotency_ttl_days": 25}).idempotency_ttl_days == 25


def test_misspelt_key_fails_instead_of_being_ignored() -> None:
    with pytest.raises(ConfigError, match=re.escape("unknown cdk.json context 'alarm_emial': 'ops@example.com'")):
        load_config({"alarm_emial": "ops@example.com"})


def test_layer_pins_are_every_exact_pin_but_boto3_which_the_runtime_provides(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# shipped\naws-lambda-powertools[parser]==3.37.0  # layer\nboto3==1.44.5\n")
    assert layer_requirements(requirements) == ("aws-lambda-powertools[parser]==3.37.0",)


def test_an_unpinned_requirement_fails_because_the_layer_would_drift(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("aws-lambda-powertools>=3\n")
    with pytest.raises(ConfigError, match="not an exact pin"):
        layer_requirements(requirements)


def test_default_stack_name_follows_the_stage_so_prod_never_replaces_dev() -> None:
    assert load_config({}).stack_name == "KlikitWebhooks-dev"
    assert load_config({"stage": "prod", "stack_name": ""}).stack_name == "KlikitWebhooks-prod"
    assert load_config({"stage": "prod", "stack_name": "Orders"}).stack_name == "Orders", "an explicit name wins"


def test_processor_is_capped_by_the_poller_and_reserves_nothing_by_default() -> None:
    config = load_config({})
    assert (config.processor_max_concurrency, config.processor_reserved_concurrency) == (5, None)
    assert load_config({"processor_max_concurrency": "1000"}).processor_max_concurrency == 1000


@pytest.mark.parametrize("value", [1, 1001, "many"])
def test_poller_cap_outside_what_sqs_accepts_is_refused(value: Any) -> None:
    with pytest.raises(ConfigError, match="'processor_max_concurrency'"):
        load_config({"processor_max_concurrency": value})


def test_a_reservation_below_the_poller_cap_is_refused_because_batches_would_be_throttled() -> None:
    with pytest.raises(ConfigError, match=r"'processor_reserved_concurrency': 3 .*processor_max_concurrency \(5\)"):
        load_config({"processor_reserved_concurrency": 3})


def test_prod_without_an_alarm_subscriber_is_refused_with_the_flag_to_add() -> None:
    with pytest.raises(ConfigError, match="-c alarm_email="):
        check_deployable(load_config({"stage": "prod"}))
    check_deployable(load_config({"stage": "prod", "alarm_email": "oncall@example.com"}))
    check_deployable(load_config({"stage": "dev"}))


def test_cdk_synth_of_prod_without_alarm_email_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    # what `make synth CDK_ARGS="-c stage=prod"` runs: the CLI hands the app its context in CDK_CONTEXT_JSON
    context = {**read_cdk_json_context(), "stage": "prod"}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    app = subprocess.run(
        [sys.executable, "-m", "infra.app"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert app.returncode == 1
    assert "Traceback" not in app.stderr
    (line,) = [text for text in app.stderr.splitlines() if text.startswith("cdk.json:")]
    assert "-c alarm_email=" in line
    assert not list(tmp_path.glob("*.template.json")), "nothing synthesized"
