"""The reconciler's runs: the scheduled one (look-back window, checkpoint, Lambda deadline) and the CLI's.

Logs name the order and what was behind, never order content; metrics count orders checked and healed, pages,
retries and failures (names in klikit.observability, alarms in infra/observability.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from klikit import observability as names
from klikit.errors import CredentialsUnavailable, PartnerAuthError
from klikit.formats import iso_z
from reconciler.adapters import Checkpoint, DynamoCheckpoints, DynamoProjection, ReconciledQueue, SecretCredentials
from reconciler.logic import PAGE_SIZE, Heal, Report, Window, reconcile
from reconciler.partner_api import PartnerApi

logger = Logger(service=names.RECONCILER_SERVICE)
metrics = Metrics(namespace=names.METRICS_NAMESPACE, service=names.RECONCILER_SERVICE)

# Stop walking with this much of the Lambda's time left, and resume from the checkpoint on the next run: one page
# at worst takes 6 attempts of 10 s plus ~16 s of backoff.
STOP_WITH_MS_LEFT = 90_000

CREDENTIALS_SHAPE = '{"partner_key":"...","secret_key":"..."}'
# klikit's 401/403 codes (docs/klikit.md, Partner orders API) -> which part is wrong and what to do.
AUTH_ADVICE = {
    "auth_missing": "klikit saw no credentials: the secret needs both partner_key and secret_key",
    "auth_invalid_credential": "partner_key or secret_key is wrong (a rotated secret_key stops working at once): "
    "store the current pair in the secret",
    "auth_revoked": "these credentials were revoked: ask your klikit operator for a new partner_key and secret_key",
    "auth_forbidden": "the credentials lack the orders:read scope: ask your klikit operator to grant it",
}


def put_secret_command(secret_id: str) -> str:
    return f"aws secretsmanager put-secret-value --secret-id {secret_id} --secret-string '{CREDENTIALS_SHAPE}'"


def refused(error: PartnerAuthError) -> str:
    """What klikit's 401/403 code says is wrong."""
    return f"klikit answered {error.status} {error.code}: {AUTH_ADVICE.get(error.code, 'it refused the credentials')}"


def auth_advice(error: PartnerAuthError, secret_id: str) -> str:
    return f"{refused(error)}. Fix: {put_secret_command(secret_id)}"


def failure_line(error: Exception, secret_id: str) -> str:
    """One line naming what went wrong and the fix (no secret material: messages never hold it)."""
    if isinstance(error, PartnerAuthError):
        return auth_advice(error, secret_id)
    if isinstance(error, CredentialsUnavailable):
        return f"{error}. Fix: {put_secret_command(secret_id)}"
    return str(error)


def log_heal(heal: Heal) -> None:
    fields: dict[str, Any] = heal.summary()
    logger.warning("order healed from klikit's orders API", event_id=heal.delivery.event_id, **fields)


def count_retry(why: str, delay: float) -> None:
    metrics.add_metric(name=names.PARTNER_API_RETRIES, unit=MetricUnit.Count, value=1)
    logger.info("klikit's orders API asked us to back off", why=why, delay_seconds=round(delay, 2))


def record(report: Report, secret_id: str) -> dict[str, Any]:
    """Metrics and the run's log line; the summary the Lambda returns."""
    metrics.add_metric(name=names.ORDERS_CHECKED, unit=MetricUnit.Count, value=report.checked)
    metrics.add_metric(name=names.PARTNER_API_PAGES, unit=MetricUnit.Count, value=report.pages)
    metrics.add_metric(name=names.ORDERS_HEALED, unit=MetricUnit.Count, value=len({h.order_id for h in report.heals}))
    summary: dict[str, Any] = {
        "since": iso_z(report.window.since, "auto"),
        "until": iso_z(report.window.until, "auto"),
        "branch_id": report.window.branch_id,
        "start_page": report.start_page,
        "pages": report.pages,
        "checked": report.checked,
        "healed": len({heal.order_id for heal in report.heals}),
        "events": len(report.heals),
        "skipped": len(report.skipped),
        "complete": report.complete,
        "next_page": report.next_page,
    }
    if isinstance(report.failure, PartnerAuthError | CredentialsUnavailable):
        metrics.add_metric(name=names.RECONCILE_AUTH_FAILURES, unit=MetricUnit.Count, value=1)
        logger.error("reconciliation stopped", reason=failure_line(report.failure, secret_id), **summary)
    elif report.failure is not None:
        metrics.add_metric(name=names.RECONCILE_FAILURES, unit=MetricUnit.Count, value=1)
        logger.error("reconciliation stopped", reason=str(report.failure), **summary)
    else:
        logger.info("reconciliation finished" if report.complete else "reconciliation paused", **summary)
    if report.skipped:
        logger.warning("orders klikit listed that are not usable", order_ids=report.skipped[:20])
    return summary


class ScheduledReconciler:
    def __init__(
        self,
        *,
        api: PartnerApi,
        credentials: SecretCredentials,
        projection: DynamoProjection,
        queue: ReconciledQueue,
        checkpoints: DynamoCheckpoints,
        lookback: timedelta,
        secret_id: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._page_size = page_size
        self._api = api
        self._credentials = credentials
        self._projection = projection
        self._queue = queue
        self._checkpoints = checkpoints
        self._lookback = lookback
        self._secret_id = secret_id
        self._now = now

    def run(self, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        self._credentials.refresh()
        now = self._now()
        checkpoint = self._checkpoints.load()
        if checkpoint is not None and checkpoint.window.until > now - self._lookback:
            window, start = checkpoint.window, checkpoint.next_page  # finish the walk a failure or the deadline cut
        else:
            window, start = Window.of(now - self._lookback, now), 1

        def save(next_page: int) -> None:
            self._checkpoints.save(Checkpoint(window, next_page), int(time.time()))

        report = reconcile(
            window,
            self._api,
            self._projection,
            self._queue,
            now=self._now,
            start_page=start,
            page_size=self._page_size,
            on_page=save,
            on_heal=log_heal,
            should_stop=lambda: remaining_ms() < STOP_WITH_MS_LEFT,
        )
        if report.complete:
            self._checkpoints.clear()
        return record(report, self._secret_id)
