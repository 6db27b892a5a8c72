"""The active webhook secrets, read from Secrets Manager through Powertools Parameters (cached).

The secret's value is either klikit's webhook secret as a plain string, used byte for byte (a trailing newline is
part of it), or, during a rotation, JSON `{"active": ["<new>", "<old>"]}`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from klikit.errors import SecretUnavailable


def parse_secret_value(value: str) -> list[str]:
    """Every active secret held in a Secrets Manager value."""
    if value.startswith("{"):
        try:
            document = json.loads(value)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("active"), list):
            return [secret for secret in document["active"] if isinstance(secret, str) and secret]
    return [value] if value else []


class WebhookSecrets:
    """Cached active secrets, with a forced refresh that forged traffic cannot turn into one call per request."""

    def __init__(
        self,
        provider: SecretsProvider,
        secret_id: str,
        cache_seconds: int,
        refresh_min_interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._secret_id = secret_id
        self._cache_seconds = cache_seconds
        self._refresh_min_interval = refresh_min_interval_seconds
        self._clock = clock
        self._last_forced: float | None = None

    def _fetch(self, force: bool) -> list[str]:
        try:
            value: Any = self._provider.get(self._secret_id, max_age=self._cache_seconds, force_fetch=force)
        except GetParameterError as exc:  # Powertools wraps every SDK failure in it
            raise SecretUnavailable(f"could not read the webhook secret: {type(exc).__name__}") from exc
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        return parse_secret_value(str(value))

    def active(self) -> list[str]:
        return self._fetch(force=False)

    def refreshed(self) -> list[str] | None:
        """Fresh secrets from Secrets Manager, or None when the last forced refresh was too recent."""
        now = self._clock()
        if self._last_forced is not None and now - self._last_forced < self._refresh_min_interval:
            return None
        self._last_forced = now
        return self._fetch(force=True)
