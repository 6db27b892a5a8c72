"""The active webhook secrets, read from Secrets Manager through Powertools Parameters (cached).

The secret's value is either klikit's webhook secret as a plain string, used byte for byte (a trailing newline is
part of it), or, during a rotation, JSON `{"active": ["<new>", "<old>"]}`. A value that looks like JSON (starts with
`{` once whitespace is ignored) but is not exactly that shape is a configuration error, never a literal secret:
taken literally it would answer every delivery 401 with nothing saying why.

When Secrets Manager cannot be read (an outage) or the value is malformed, the last good value is used for a bounded
grace period (`SECRET_GRACE_SECONDS`), so signed deliveries keep flowing and forged ones are still refused; each use
logs one line and counts `SecretGraceUsed`, and a malformed value counts `SecretMisconfigured` (alarmed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from klikit import observability as names
from klikit.errors import SecretMisconfigured, SecretUnavailable

logger = Logger(service=names.RECEIVER_SERVICE, child=True)

ROTATION_FORMAT = '{"active": ["<new secret>", "<old secret>"]}'


def parse_secret_value(value: str) -> list[str]:
    """Every active secret held in a Secrets Manager value; SecretMisconfigured for malformed rotation JSON."""
    if not value.lstrip().startswith("{"):
        return [value] if value else []
    if value != value.strip():
        raise SecretMisconfigured("the JSON value has whitespace around it")
    try:
        document = json.loads(value)
    except ValueError:
        raise SecretMisconfigured("the value starts with { but is not valid JSON") from None
    if not isinstance(document, dict) or "active" not in document:
        raise SecretMisconfigured('the JSON has no "active" key (keys are case-sensitive)')
    active = document["active"]
    if not isinstance(active, list) or not active or not all(isinstance(item, str) and item for item in active):
        raise SecretMisconfigured('"active" must be a non-empty list of non-empty strings')
    return list(active)


def _count(metric: str) -> None:
    with single_metric(name=metric, unit=MetricUnit.Count, value=1, namespace=names.METRICS_NAMESPACE) as emitted:
        emitted.add_dimension(name="service", value=names.RECEIVER_SERVICE)


class SecretStore(Protocol):
    """What WebhookSecrets reads the secret through: Powertools' SecretsProvider in Lambda, a fake in unit tests."""

    def get(self, name: str, *, max_age: int | None = ..., force_fetch: bool = ...) -> Any: ...


class WebhookSecrets:
    """Cached active secrets, with a forced refresh that forged traffic cannot turn into one call per request."""

    def __init__(
        self,
        provider: SecretStore,
        secret_id: str,
        cache_seconds: int,
        refresh_min_interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        grace_seconds: float = 0.0,
    ) -> None:
        self._provider = provider
        self._secret_id = secret_id
        self._cache_seconds = cache_seconds
        self._refresh_min_interval = refresh_min_interval_seconds
        self._clock = clock
        self._grace_seconds = grace_seconds
        self._last_forced: float | None = None
        self._last_good: tuple[list[str], float] | None = None  # (secrets, when they were read)

    def _fetch(self, force: bool) -> list[str]:
        try:
            try:
                value: Any = self._provider.get(self._secret_id, max_age=self._cache_seconds, force_fetch=force)
            except GetParameterError as exc:  # Powertools wraps every SDK failure in it
                raise SecretUnavailable(f"could not read the webhook secret: {type(exc).__name__}") from exc
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            secrets = parse_secret_value(str(value))
        except SecretMisconfigured as exc:
            _count(names.SECRET_MISCONFIGURED)
            logger.error(
                "the webhook secret's value is malformed rotation JSON: fix it in Secrets Manager",
                why=str(exc),
                expected=ROTATION_FORMAT,
            )
            return self._grace(exc)
        except SecretUnavailable as exc:
            return self._grace(exc)
        self._last_good = (secrets, self._clock())
        return secrets

    def _grace(self, failure: SecretUnavailable) -> list[str]:
        """The last good secrets while they are within the grace period; else the failure."""
        if self._last_good is None:
            raise failure
        secrets, read_at = self._last_good
        age = self._clock() - read_at
        if age > self._grace_seconds:
            raise failure
        _count(names.SECRET_GRACE_USED)
        logger.warning(
            "webhook secret unavailable: verifying with the last good value",
            why=type(failure).__name__,
            age_seconds=round(age),
            grace_seconds=self._grace_seconds,
        )
        return secrets

    def active(self) -> list[str]:
        return self._fetch(force=False)

    def refreshed(self) -> list[str] | None:
        """Fresh secrets from Secrets Manager, or None when the last forced refresh was too recent."""
        now = self._clock()
        if self._last_forced is not None and now - self._last_forced < self._refresh_min_interval:
            return None
        self._last_forced = now
        return self._fetch(force=True)
