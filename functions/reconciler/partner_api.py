"""klikit's partner orders API (docs/klikit.md) over the standard library's urllib (no new runtime dependency).

Every reply is `{request_id, data}` or `{request_id, error: {code, message}}`; we switch on `code`, never `message`.
429 and 5xx (and no answer at all) are retried with exponential backoff and full jitter, honouring Retry-After;
401/403 mean the credentials are wrong (`PartnerAuthError` carries klikit's code); any other 4xx is our request's
fault and is not retried. The transport is a seam: tests talk real HTTP to the fake API in tools/fake_klikit.py.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote, urlencode

from klikit.errors import PartnerAuthError, PartnerRequestRejected, PartnerUnavailable
from klikit.formats import iso_z

ORDERS_PATH = "/orders"
MAX_WINDOW_DAYS = 90  # klikit answers request_invalid_range beyond it
USER_AGENT = "klikit-webhooks-reconciler"
AUTH_STATUSES = (401, 403)


class Credentials(NamedTuple):
    """What a klikit operator issues for the partner API. Never logged: repr hides the secret."""

    partner_key: str
    secret_key: str

    def authorization(self) -> str:
        token = base64.b64encode(f"{self.partner_key}:{self.secret_key}".encode()).decode("ascii")
        return f"Basic {token}"

    def __repr__(self) -> str:
        return f"Credentials(partner_key={self.partner_key!r}, secret_key=<hidden>)"


class Response(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    def get(self, url: str, headers: Mapping[str, str], timeout: float) -> Response:
        """One GET; raises OSError (or an http.client error) when nothing answered."""
        ...


class UrllibTransport:
    def get(self, url: str, headers: Mapping[str, str], timeout: float) -> Response:
        request = urllib.request.Request(url, headers=dict(headers), method="GET")  # noqa: S310 - http(s) only, checked by settings
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
                return Response(reply.status, dict(reply.headers.items()), reply.read())
        except urllib.error.HTTPError as error:
            with error:
                return Response(error.code, dict((error.headers or {}).items()), error.read())


class RetryPolicy(NamedTuple):
    attempts: int = 6  # per request; 5 sleeps of at most base * 2**n (capped) each
    base_seconds: float = 0.5
    cap_seconds: float = 20.0


DEFAULT_RETRY = RetryPolicy()


class Page(NamedTuple):
    number: int
    size: int
    total: int | None
    orders: list[dict[str, Any]]


def pause(seconds: float) -> None:
    """The backoff sleep (a module function, so a test of a whole command can skip the waiting)."""
    time.sleep(seconds)


def iso(moment: datetime) -> str:
    return iso_z(moment, "seconds")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def _error_code(body: bytes, status: int) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code else f"http_{status}"


def _orders_of(data: Any) -> list[dict[str, Any]] | None:
    """The page's items: `data.orders`, or the one list in `data` (klikit notes the key differs between endpoints)."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("orders"), list):
        return [order for order in data["orders"] if isinstance(order, dict)]
    lists = [value for value in data.values() if isinstance(value, list)]
    return [order for order in lists[0] if isinstance(order, dict)] if len(lists) == 1 else None


class PartnerApi:
    def __init__(
        self,
        base_url: str,
        credentials: Callable[[], Credentials],
        *,
        transport: Transport | None = None,
        timeout_seconds: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] | None = None,
        jitter: Callable[[], float] = random.random,
        on_retry: Callable[[str, float], None] | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._credentials = credentials  # read when first needed, so a dry run without a secret fails at the call
        self._transport = transport or UrllibTransport()
        self._timeout = timeout_seconds
        self._retry = retry
        self._sleep = sleep if sleep is not None else pause
        self._jitter = jitter
        self._on_retry = on_retry

    def list_orders(self, since: datetime, until: datetime, page: int, size: int, branch_id: str | None = None) -> Page:
        """One page of orders created in [since, until), oldest window bound inclusive."""
        query = {"from": iso(since), "to": iso(until), "page": page, "size": size}
        if branch_id:
            query["branch_id"] = branch_id
        data = self._get(ORDERS_PATH, query)
        orders = _orders_of(data)
        if orders is None:
            raise PartnerUnavailable(f"page {page}: the reply has no list of orders")
        total = data.get("total") if isinstance(data, dict) else None
        return Page(page, size, total if isinstance(total, int) and not isinstance(total, bool) else None, orders)

    def get_order(self, order_id: str) -> dict[str, Any]:
        data = self._get(f"{ORDERS_PATH}/{quote(order_id, safe='')}", {})
        if not isinstance(data, dict):
            raise PartnerUnavailable(f"order {order_id}: the reply has no order")
        return data

    def count_orders(self, since: datetime, until: datetime) -> int | None:
        """klikit's documented way to count: one order per page, read `total`. Also proves the credentials work."""
        return self.list_orders(since, until, page=1, size=1).total

    def _get(self, path: str, query: Mapping[str, Any]) -> Any:
        url = f"{self._base}{path}" + (f"?{urlencode(query)}" if query else "")
        headers = {
            "Authorization": self._credentials().authorization(),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        why = "no attempt"
        for attempt in range(self._retry.attempts):
            retry_after: float | None = None
            try:
                response = self._transport.get(url, headers, self._timeout)
            except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out: try again
                reason = getattr(error, "reason", None)  # urllib wraps the socket error in URLError
                why = type(reason if isinstance(reason, BaseException) else error).__name__
            else:
                if 200 <= response.status < 300:
                    try:
                        document = json.loads(response.body)
                    except ValueError:
                        document = None
                    if isinstance(document, dict) and "data" in document:
                        return document["data"]
                    why = f"HTTP {response.status} without a data envelope"
                elif response.status in AUTH_STATUSES:
                    raise PartnerAuthError(_error_code(response.body, response.status), response.status)
                elif response.status == 429 or response.status >= 500:
                    why = f"HTTP {response.status} {_error_code(response.body, response.status)}"
                    retry_after = _retry_after(response.headers)
                else:
                    raise PartnerRequestRejected(_error_code(response.body, response.status), response.status)
            if attempt + 1 == self._retry.attempts:
                break
            # full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"), at least what klikit asked for
            delay = self._jitter() * min(self._retry.cap_seconds, self._retry.base_seconds * 2**attempt)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self._retry.cap_seconds))
            if self._on_retry is not None:
                self._on_retry(why, delay)
            self._sleep(delay)
        raise PartnerUnavailable(f"GET {path} failed {self._retry.attempts} times, last: {why}")
