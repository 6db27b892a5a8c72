"""The partner API client against the fake over real HTTP: klikit's codes, what is retried and what is not."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from klikit.errors import PartnerAuthError, PartnerRequestRejected, PartnerUnavailable
from reconciler.partner_api import Credentials, PartnerApi, RetryPolicy
from tests.integration.reconciler.conftest import Sleeps, order
from tools.fake_klikit import LOCAL_PARTNER_KEY, LOCAL_SECRET_KEY, FakeKlikit

UNTIL = datetime(2026, 6, 25, 12, 0, tzinfo=UTC)
SINCE = UNTIL - timedelta(days=1)


def client(
    url: str, sleeps: Sleeps, partner_key: str = LOCAL_PARTNER_KEY, secret_key: str = LOCAL_SECRET_KEY
) -> PartnerApi:
    return PartnerApi(url, lambda: Credentials(partner_key, secret_key), sleep=sleeps, timeout_seconds=2)


@pytest.mark.parametrize(
    ("partner_key", "secret_key", "revoked", "status", "code"),
    [
        ("someone-else", LOCAL_SECRET_KEY, False, 401, "auth_invalid_credential"),
        (LOCAL_PARTNER_KEY, "an-old-secret", False, 401, "auth_invalid_credential"),
        (LOCAL_PARTNER_KEY, LOCAL_SECRET_KEY, True, 403, "auth_revoked"),
    ],
)
def test_refused_credentials_raise_klikits_code_at_once_without_retrying(
    klikit: FakeKlikit, sleeps: Sleeps, partner_key: str, secret_key: str, revoked: bool, status: int, code: str
) -> None:
    klikit.state.revoked = revoked
    with pytest.raises(PartnerAuthError) as refused:
        client(klikit.url, sleeps, partner_key, secret_key).list_orders(SINCE, UNTIL, 1, 10)
    assert (refused.value.status, refused.value.code, sleeps) == (status, code, [])
    assert secret_key not in str(refused.value) and secret_key not in repr(Credentials(partner_key, secret_key))


def test_a_window_over_90_days_is_klikits_request_invalid_range_and_is_not_retried(
    klikit: FakeKlikit, sleeps: Sleeps
) -> None:
    with pytest.raises(PartnerRequestRejected) as rejected:
        client(klikit.url, sleeps).list_orders(UNTIL - timedelta(days=91), UNTIL, 1, 10)
    assert (rejected.value.code, sleeps) == ("request_invalid_range", [])


def test_429_then_success_returns_the_page_after_backing_off(klikit: FakeKlikit, sleeps: Sleeps) -> None:
    klikit.add(order(1), created_at=UNTIL - timedelta(hours=1))
    klikit.fail(429, times=2)
    page = client(klikit.url, sleeps).list_orders(SINCE, UNTIL, 1, 10)
    assert ([o["id"] for o in page.orders], page.total, len(sleeps)) == ([1], 1, 2)


def test_a_server_that_keeps_failing_is_unavailable_after_the_policys_attempts(
    klikit: FakeKlikit, sleeps: Sleeps
) -> None:
    klikit.fail(500, times=10)
    api = PartnerApi(
        klikit.url, lambda: Credentials(LOCAL_PARTNER_KEY, LOCAL_SECRET_KEY), retry=RetryPolicy(3), sleep=sleeps
    )
    with pytest.raises(PartnerUnavailable, match="3 times, last: HTTP 500"):
        api.list_orders(SINCE, UNTIL, 1, 10)
    assert len(sleeps) == 2 and all(0 <= delay <= 20 for delay in sleeps)


def test_nothing_listening_is_retried_then_unavailable(sleeps: Sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = PartnerApi(
        f"http://127.0.0.1:{port}/v1/partner", lambda: Credentials("k", "s"), retry=RetryPolicy(2), sleep=sleeps
    )
    with pytest.raises(PartnerUnavailable, match="ConnectionRefusedError"):
        api.list_orders(SINCE, UNTIL, 1, 10)


def test_one_order_and_the_count_recipe(klikit: FakeKlikit, sleeps: Sleeps) -> None:
    for n in range(3):
        klikit.add(order(n), created_at=UNTIL - timedelta(hours=1))
    api = client(klikit.url, sleeps)
    assert api.get_order("2")["id"] == 2
    assert api.count_orders(SINCE, UNTIL) == 3
