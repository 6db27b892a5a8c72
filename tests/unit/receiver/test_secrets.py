"""Webhook secrets: the value formats, and a refresh that forged traffic cannot turn into a call per request."""

from __future__ import annotations

from typing import Any

import pytest

from klikit.errors import SecretMisconfigured, SecretUnavailable
from receiver.secrets import WebhookSecrets, parse_secret_value


@pytest.mark.parametrize(
    ("value", "secrets"),
    [
        ("plain-secret", ["plain-secret"]),
        ("with-newline\n", ["with-newline\n"]),
        ('{"active": ["new", "old"]}', ["new", "old"]),
        ("", []),
    ],
)
def test_secret_value_formats(value: str, secrets: list[str]) -> None:
    assert parse_secret_value(value) == secrets


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (' {"active": ["new", "old"]}', "whitespace"),
        ('{"active": ["new", "old"]}\n', "whitespace"),
        ('{"active": ["new", "old"]', "not valid JSON"),
        ('{"active": "new"}', "non-empty list"),
        ('{"active": []}', "non-empty list"),
        ('{"active": ["new", ""]}', "non-empty list"),
        ('{"Active": ["new", "old"]}', "case-sensitive"),
        ('{"other": 1}', "case-sensitive"),
    ],
)
def test_malformed_rotation_json_is_a_configuration_error_that_never_quotes_the_value(value: str, why: str) -> None:
    with pytest.raises(SecretMisconfigured) as raised:
        parse_secret_value(value)

    assert why in str(raised.value)
    assert "new" not in str(raised.value) and "old" not in str(raised.value)


class FakeProvider:
    """Stands in for Powertools' SecretsProvider: counts fetches, can fail."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.forced = 0
        self.fail = False

    def get(self, name: str, max_age: int | None = None, force_fetch: bool = False, **_: Any) -> str:
        if self.fail:
            from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

            raise GetParameterError("boom")
        self.forced += force_fetch
        return self.value


def test_forced_refresh_happens_at_most_once_per_interval() -> None:
    now = [100.0]
    provider = FakeProvider("s")
    secrets = WebhookSecrets(provider, "id", 300, 30.0, clock=lambda: now[0])

    assert secrets.refreshed() == ["s"]
    assert secrets.refreshed() is None
    now[0] += 29.9
    assert secrets.refreshed() is None
    now[0] += 0.2
    assert secrets.refreshed() == ["s"]
    assert provider.forced == 2


def test_an_unreadable_secret_is_reported_as_unavailable() -> None:
    provider = FakeProvider("s")
    provider.fail = True
    secrets = WebhookSecrets(provider, "id", 300, 30.0)
    with pytest.raises(SecretUnavailable):
        secrets.active()


def test_during_an_outage_the_last_good_secret_is_used_for_the_grace_period_only() -> None:
    now = [1000.0]
    provider = FakeProvider("s")
    secrets = WebhookSecrets(provider, "id", 300, 30.0, clock=lambda: now[0], grace_seconds=600)
    assert secrets.active() == ["s"]

    provider.fail = True
    now[0] += 599
    assert secrets.active() == ["s"]
    assert secrets.refreshed() == ["s"]  # a forced refresh fails too: still only the last good secret
    now[0] += 2
    with pytest.raises(SecretUnavailable):
        secrets.active()


def test_a_malformed_value_after_a_good_one_keeps_the_good_one_for_the_grace_period() -> None:
    now = [1000.0]
    provider = FakeProvider('{"active": ["new", "old"]}')
    secrets = WebhookSecrets(provider, "id", 300, 30.0, clock=lambda: now[0], grace_seconds=600)
    assert secrets.active() == ["new", "old"]

    provider.value = '{"Active": ["newer", "new"]}'
    assert secrets.refreshed() == ["new", "old"]
    now[0] += 601
    with pytest.raises(SecretMisconfigured):
        secrets.active()


def test_without_a_last_good_value_there_is_no_grace() -> None:
    provider = FakeProvider("s")
    provider.fail = True
    secrets = WebhookSecrets(provider, "id", 300, 30.0, grace_seconds=3600)

    with pytest.raises(SecretUnavailable):
        secrets.active()
