"""The one place that turns the receiver's outcomes and errors into HTTP replies, log reasons and metrics.

klikit retries every non-2xx, so a 4xx here means "this request will never be accepted as sent" and a 409/503
means "we could not take it right now, send it again".
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from klikit import errors
from klikit import observability as names
from receiver.intake import Receipt

JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


class Reply(NamedTuple):
    status: int
    body: dict[str, Any]
    metric: str
    outcome: str  # a short word for logs: received, duplicate, rejected, in_flight, unavailable

    def to_api_gateway(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": dict(JSON_HEADERS),
            "body": json.dumps(self.body, separators=(",", ":")),
            "isBase64Encoded": False,
        }


def for_receipt(receipt: Receipt) -> Reply:
    if receipt.admission.duplicate:
        return Reply(200, {"status": "duplicate-ignored"}, names.DUPLICATES, "duplicate")
    return Reply(200, {"status": "received"}, names.ENQUEUED, "received")


def for_error(exc: Exception) -> Reply:
    match exc:
        case errors.MissingHeaders():
            return Reply(
                400,
                {"error": "missing klikit headers", "missing": exc.missing},
                names.REJECTED_MISSING_HEADERS,
                "rejected",
            )
        case errors.InvalidHeaders():
            return Reply(
                400,
                {"error": "invalid klikit headers", "invalid": exc.invalid},
                names.REJECTED_INVALID_HEADERS,
                "rejected",
            )
        case errors.InvalidBodyEncoding():
            return Reply(400, {"error": "invalid body encoding"}, names.REJECTED_BODY_ENCODING, "rejected")
        case errors.BodyTooLarge():
            return Reply(
                413,
                {"error": "body too large", "size_bytes": exc.size, "limit_bytes": exc.limit},
                names.REJECTED_TOO_LARGE,
                "rejected",
            )
        case errors.InvalidSignature():
            return Reply(401, {"error": "invalid signature"}, names.REJECTED_SIGNATURE, "rejected")
        case errors.DeliveryInProgress():
            return Reply(
                409,
                {"error": "delivery in progress", "detail": "the same event id is being processed; retry later"},
                names.IN_FLIGHT_CONFLICTS,
                "in_flight",
            )
        case errors.EnqueueFailed():
            return Reply(
                503,
                {"error": "temporarily unavailable", "detail": "the delivery was not stored; retry later"},
                names.ENQUEUE_FAILURES,
                "unavailable",
            )
    # A bug, not the sender's fault. Nothing was acknowledged, so klikit's retry keeps the delivery safe.
    return Reply(500, {"error": "internal error"}, names.ENQUEUE_FAILURES, "error")
