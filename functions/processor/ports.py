"""What the processor needs from the outside world, as Protocols: processor.adapters implements them on AWS,
tests hand in fakes where moto cannot inject the failure they need."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from processor.projection import OrdersTable

__all__ = ["DeadLetters", "OrdersTable", "Payloads", "Publisher"]


class Payloads(Protocol):
    """Claim-checked bodies in, the raw delivery archive out (the payload bucket)."""

    def get_object(self, bucket: str, key: str) -> bytes: ...

    def put_archive(self, key: str, data: bytes) -> None:
        """Write one archive object (processor.archive names it and makes its bytes); a repeat changes nothing."""


class DeadLetters(Protocol):
    """Where a poison record goes, with its reason (the DLQ)."""

    def send(self, record: Mapping[str, Any], reason: str, detail: str) -> None: ...


class Publisher(Protocol):
    """Where processed order events go for other services (the optional EventBridge fan-out)."""

    def publish(self, event_type: str, detail: Mapping[str, Any]) -> None: ...
