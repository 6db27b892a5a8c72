"""Settings are validated once, with a message that names the variable to fix."""

from __future__ import annotations

import pytest

from klikit.errors import SettingsError
from klikit.settings import ProcessorSettings, ReceiverSettings

RECEIVER = {
    "WEBHOOK_SECRET_ID": "arn:secret",
    "IDEMPOTENCY_TABLE_NAME": "idem",
    "QUEUE_URL": "https://sqs/queue",
    "PAYLOAD_BUCKET_NAME": "bucket",
}


def test_receiver_defaults() -> None:
    settings = ReceiverSettings.from_env(RECEIVER)
    assert settings.idempotency_ttl_seconds == 30 * 86_400
    assert settings.sqs_max_message_bytes == 1024 * 1024


@pytest.mark.parametrize("missing", sorted(RECEIVER))
def test_a_missing_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in RECEIVER.items() if k != missing}
    with pytest.raises(SettingsError, match=missing):
        ReceiverSettings.from_env(env)


@pytest.mark.parametrize(("name", "value"), [("IDEMPOTENCY_TTL_DAYS", "thirty"), ("IDEMPOTENCY_TTL_DAYS", "0")])
def test_a_malformed_number_is_named_with_its_value(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}='{value}'"):
        ReceiverSettings.from_env({**RECEIVER, name: value})


def test_processor_fan_out_is_off_unless_a_bus_is_named() -> None:
    env = {"ORDERS_TABLE_NAME": "o", "EFFECTS_TABLE_NAME": "e", "PAYLOAD_BUCKET_NAME": "b", "DLQ_URL": "d"}
    assert ProcessorSettings.from_env(env).event_bus_name is None
    assert ProcessorSettings.from_env({**env, "EVENT_BUS_NAME": "bus"}).event_bus_name == "bus"
