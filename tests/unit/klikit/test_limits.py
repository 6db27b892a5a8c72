"""The body limit on the way through API Gateway: base64 inside a 6 MB Lambda invocation, not 6 MiB of body."""

from __future__ import annotations

import json

from klikit import limits
from klikit.settings import ReceiverSettings
from tools.local.gateway import api_gateway_event

REQUIRED = {
    "WEBHOOK_SECRET_ID": "s",
    "IDEMPOTENCY_TABLE_NAME": "t",
    "QUEUE_URL": "q",
    "PAYLOAD_BUCKET_NAME": "b",
}


def event_size(body_size: int, header_bytes: int) -> int:
    headers = [("x-klikit-signature", "a" * 64), ("X-Filler", "h" * (header_bytes - 90))]
    return len(json.dumps(api_gateway_event("POST", "/webhooks/klikit", headers, b"x" * body_size, "203.0.113.9")))


def test_largest_accepted_body_fits_lambdas_payload_even_with_api_gateways_largest_headers() -> None:
    # REST API request headers are capped at 10,240 bytes in total; the event carries them twice
    assert event_size(limits.MAX_BODY_BYTES, header_bytes=10_240) <= limits.LAMBDA_INVOKE_PAYLOAD_BYTES


def test_true_limit_is_about_four_and_a_half_mib_not_six() -> None:
    assert limits.MAX_BODY_BYTES == 4_669_440
    assert limits.base64_size(5 * 1024 * 1024) > limits.LAMBDA_INVOKE_PAYLOAD_BYTES, "5 MiB never reaches Lambda"


def test_receiver_refuses_above_the_true_limit_by_default() -> None:
    assert ReceiverSettings.from_env(REQUIRED).max_body_bytes == limits.MAX_BODY_BYTES
