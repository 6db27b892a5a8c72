"""Turn an API Gateway REST proxy event into what klikit sent: its headers and the exact body bytes."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, NamedTuple

from klikit.errors import InvalidBodyEncoding
from klikit.headers import header_values


class WebhookRequest(NamedTuple):
    headers: dict[str, list[str]]  # lower-cased names, every value sent
    body: bytes


def from_api_gateway(event: Mapping[str, Any]) -> WebhookRequest:
    """Headers case-insensitively (single- and multi-value), body as raw bytes: never re-serialized."""
    raw = event.get("body")
    if raw is None:
        body = b""
    elif event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise InvalidBodyEncoding("isBase64Encoded is true but the body is not valid base64") from None
    elif isinstance(raw, str):
        # API Gateway passes text bodies as the UTF-8 text it received; encoding it back restores the bytes.
        body = raw.encode("utf-8", "surrogatepass")
    else:
        raise InvalidBodyEncoding("body is not a string")
    return WebhookRequest(headers=header_values(event), body=body)
