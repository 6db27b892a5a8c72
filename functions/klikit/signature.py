"""klikit's signature: lowercase hex HMAC-SHA256 of the raw body bytes under the webhook secret (docs/klikit.md)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def sign(secret: str, body: bytes) -> str:
    """What klikit puts in `x-klikit-signature` for `body`."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def matches_any(signature: str, body: bytes, secrets: Iterable[str]) -> bool:
    """True when `signature` equals the signature of `body` under any of `secrets`, compared in constant time.

    Every secret is checked (no early exit), and the header is compared as bytes so a non-ASCII header cannot
    raise from `hmac.compare_digest`. Uppercase hex is not accepted: klikit sends lowercase.
    """
    received = signature.encode("utf-8", "surrogateescape")
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(sign(secret, body).encode("ascii"), received)
    return found
