"""The receiver's logic, in klikit's order: headers, size, signature, then admit and queue.

Plain values in, a Receipt or a domain exception out; AWS sits behind the ports it is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple, Protocol

from aws_lambda_powertools.utilities.typing import LambdaContext

from klikit.delivery import Delivery
from klikit.errors import BodyTooLarge, InvalidSignature
from klikit.formats import iso_z
from klikit.headers import klikit_headers
from klikit.signature import matches_any
from receiver.idempotency import Admission
from receiver.request import WebhookRequest

_SIGNATURE_SHAPE = re.compile(r"[0-9a-f]{64}")


class SecretSource(Protocol):
    def active(self) -> list[str]: ...

    def refreshed(self) -> list[str] | None: ...


class Admitter(Protocol):
    def admit(self, delivery: Delivery, context: LambdaContext | None) -> Admission: ...


class Receipt(NamedTuple):
    event_id: str
    event_type: str
    body_bytes: int
    admission: Admission
    secret_refreshed: bool


def utc_now() -> str:
    return iso_z()


class Intake:
    def __init__(
        self,
        secrets: SecretSource,
        admitter: Admitter,
        max_body_bytes: int,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self._secrets = secrets
        self._admitter = admitter
        self._max_body_bytes = max_body_bytes
        self._clock = clock

    def _verify(self, signature: str, body: bytes) -> bool:
        """True when a secret refresh was needed to verify; InvalidSignature when nothing verifies."""
        if not _SIGNATURE_SHAPE.fullmatch(signature):
            # not a lowercase hex SHA-256: no secret can match, so do not spend a Secrets Manager call on it
            raise InvalidSignature("signature is not 64 lowercase hex characters")
        active = self._secrets.active()
        if matches_any(signature, body, active):
            return False
        fresh = self._secrets.refreshed()  # the secret may have been rotated since we cached it
        if fresh is not None and matches_any(signature, body, fresh):
            return True
        count = len(fresh if fresh is not None else active)
        refreshed = "after a refresh" if fresh is not None else "(refresh skipped: done recently)"
        raise InvalidSignature(f"signature matches none of {count} active secret(s) {refreshed}")

    def receive(self, request: WebhookRequest, context: LambdaContext | None = None) -> Receipt:
        signature, event_id, event_type = klikit_headers(request.headers)
        if len(request.body) > self._max_body_bytes:
            raise BodyTooLarge(len(request.body), self._max_body_bytes)
        refreshed = self._verify(signature, request.body)
        delivery = Delivery.of(event_id, event_type, request.body, self._clock())
        return Receipt(
            event_id=event_id,
            event_type=event_type,
            body_bytes=len(request.body),
            admission=self._admitter.admit(delivery, context),
            secret_refreshed=refreshed,
        )
