"""The project's domain exceptions: adapters raise them, the receiver maps them to HTTP in one place."""

from __future__ import annotations


class KlikitError(Exception):
    """Base class for every error this project raises on purpose."""


class SettingsError(KlikitError):
    """A required environment variable is missing or malformed; the message names it."""


# --- rejected deliveries (the sender's fault) -------------------------------------------------------------


class RejectedDelivery(KlikitError):
    """A delivery we refuse; nothing was written anywhere."""

    reason = "rejected"


class MissingHeaders(RejectedDelivery):
    reason = "missing_headers"

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"missing klikit headers: {', '.join(missing)}")
        self.missing = missing


class InvalidHeaders(RejectedDelivery):
    """A klikit header is present but unusable (repeated with different values, too long, control characters)."""

    reason = "invalid_headers"

    def __init__(self, invalid: list[str]) -> None:
        super().__init__(f"invalid klikit headers: {', '.join(invalid)}")
        self.invalid = invalid


class InvalidBodyEncoding(RejectedDelivery):
    """API Gateway said the body is base64 but it is not."""

    reason = "invalid_body_encoding"


class BodyTooLarge(RejectedDelivery):
    reason = "body_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"body of {size} bytes is over the {limit} byte limit")
        self.size = size
        self.limit = limit


class InvalidSignature(RejectedDelivery):
    """The signature does not match any active secret. `why` is safe to log: it never holds secret material."""

    reason = "invalid_signature"

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


# --- signed deliveries we could not take right now (klikit must retry) -------------------------------------


class DeliveryInProgress(KlikitError):
    """The same event id is being admitted by another invocation right now."""


class EnqueueFailed(KlikitError):
    """A signed delivery could not be stored durably (SQS, S3, DynamoDB or Secrets Manager failed)."""


class SecretUnavailable(EnqueueFailed):
    """The webhook secret could not be read, so the delivery cannot be verified yet."""


class SecretMisconfigured(SecretUnavailable):
    """The secret's value looks like rotation JSON but is not `{"active": [...]}`. The message says what is wrong,
    never what the value is."""


# --- processor side --------------------------------------------------------------------------------------


class PoisonDelivery(KlikitError):
    """A queued delivery that no retry can fix (not JSON, invalid envelope, hash mismatch): quarantine it."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BodyIntegrityError(PoisonDelivery):
    """The body read back from the queue or S3 does not hash to what the receiver recorded."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__("body_hash_mismatch", f"expected sha256 {expected}, got {actual}")


class PublishFailed(KlikitError):
    """EventBridge refused a fan-out event; the record fails and SQS redelivers it."""


# --- reconciler side (klikit's partner orders API) -----------------------------------------------------------


class PartnerApiError(KlikitError):
    """klikit's orders API did not give us the page we asked for."""


class PartnerAuthError(PartnerApiError):
    """klikit refused the partner credentials; `code` is klikit's error code (it says which part is wrong)."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(f"klikit refused the partner credentials: {code} (HTTP {status})")
        self.code = code
        self.status = status


class PartnerUnavailable(PartnerApiError):
    """429 or 5xx (or no answer) after every retry: the run stops at this page and resumes there."""


class PartnerRequestRejected(PartnerApiError):
    """klikit answered 4xx to the request itself (e.g. `request_invalid_range`): retrying cannot help."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(f"klikit rejected the request: {code} (HTTP {status})")
        self.code = code
        self.status = status


class CredentialsUnavailable(PartnerApiError):
    """The partner credentials secret could not be read or is not `{"partner_key": ..., "secret_key": ...}`."""
