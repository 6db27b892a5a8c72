"""Build the scheduled reconciler from its settings: the only module that creates AWS clients for it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from klikit.aws import client
from klikit.settings import ReconcilerSettings
from reconciler.adapters import DynamoCheckpoints, DynamoProjection, ReconciledQueue, SecretCredentials
from reconciler.app import ScheduledReconciler, count_retry
from reconciler.logic import PAGE_SIZE
from reconciler.partner_api import PartnerApi


def build_reconciler(
    settings: ReconcilerSettings | None = None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] | None = None,
    page_size: int = PAGE_SIZE,
) -> ScheduledReconciler:
    """`now`, `sleep` (klikit's backoff) and `page_size` are the clock and knobs a test turns."""
    settings = settings or ReconcilerSettings.from_env()
    timeout = settings.aws_call_timeout_seconds
    dynamodb = client("dynamodb", timeout)
    credentials = SecretCredentials(client("secretsmanager", timeout), settings.partner_secret_id)
    return ScheduledReconciler(
        api=PartnerApi(settings.klikit_api_url, credentials, sleep=sleep, on_retry=count_retry),
        credentials=credentials,
        projection=DynamoProjection(dynamodb, settings.orders_table),
        queue=ReconciledQueue(client("sqs", timeout), settings.queue_url),
        checkpoints=DynamoCheckpoints(dynamodb, settings.checkpoint_table),
        lookback=timedelta(hours=settings.lookback_hours),
        secret_id=settings.partner_secret_id,
        now=now,
        page_size=page_size,
    )
