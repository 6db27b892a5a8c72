"""Webhook secrets: the value formats, and a refresh that forged traffic cannot turn into a call per request."""

from __future__ import annotations

from typing import Any

import pytest

from klikit.errors import SecretUnavailable
from receiver.secrets import WebhookSecrets, parse_secret_value


@pytest.mark.parametrize(
    ("value", "secrets"),
    [
        ("plain-secret", ["plain-secret"]),
        ("with-newline\n", ["with-newline\n"]),
        ('{"active": ["new", "old"]}', ["new", "old"]),
        ('{"other": 1}', ['{"other": 1}']),
        ("", []),
    ],
)
def test_secret_value_formats(value: str, secrets: list[str]) -> None:
    assert parse_secret_value(value) == secrets


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
    secrets = WebhookSecrets(provider, "id", 300, 30.0, clock=lambda: now[0])  # type: ignore[arg-type]

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
    secrets = WebhookSecrets(provider, "id", 300, 30.0)  # type: ignore[arg-type]
    with pytest.raises(SecretUnavailable):
        secrets.active()
