"""The queue message contract between the receiver and the processor.

A verified delivery travels on SQS as its raw body, unchanged, with its metadata in message attributes:

| attribute       | value                                                                 |
|-----------------|-----------------------------------------------------------------------|
| `event_id`      | `x-klikit-event-id`                                                   |
| `event_type`    | `x-klikit-event-type` (any value: unknown types are the processor's call) |
| `received_at`   | ISO-8601 UTC time the receiver took the delivery                      |
| `body_sha256`   | hex SHA-256 of the raw body bytes                                     |
| `body_encoding` | `utf-8` (body is the text), `base64` (bytes were not SQS-safe text) or `empty` |
| `body_s3_uri`   | only when the body was too big for SQS: `s3://bucket/key` of the raw bytes (claim check) |
| `source`        | `reconciler` on an event the reconciler made from klikit's orders API; the receiver never sets it |

A poison delivery that the processor quarantines keeps its body and attributes and gains `quarantine_reason`
and `quarantine_detail`. Claim checks sit at `claim-checks/<token>/<body sha256>`, where the token is the event id
percent-quoted when that is at most 512 bytes, else `sha256-<hex of the UTF-8 id>`, so every key stays under S3's
1,024-byte limit (klikit's ids are unsigned headers of up to 256 characters, up to 3,072 bytes quoted). The raw
archive is written per processor batch (klikit.archive); before that, one object per delivery at
`archive/<YYYY-MM-DD of received_at, UTC>/<token>` (`archive_key`), still read until it expires.

`read_body` is the one function that gives the processor back the exact bytes klikit signed, in either form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from klikit.errors import BodyIntegrityError, PoisonDelivery

if TYPE_CHECKING:  # boto3-stubs' types, for mypy only
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

EVENT_ID = "event_id"
EVENT_TYPE = "event_type"
RECEIVED_AT = "received_at"
BODY_SHA256 = "body_sha256"
BODY_ENCODING = "body_encoding"
BODY_S3_URI = "body_s3_uri"
SOURCE = "source"
RECONCILER = "reconciler"  # the one value of SOURCE; a delivery without it came through the receiver from klikit
KLIKIT = "klikit"
# Added by the processor when it moves a poison delivery to the DLQ itself; removed again by a redrive.
QUARANTINE_REASON = "quarantine_reason"
QUARANTINE_DETAIL = "quarantine_detail"

UTF8 = "utf-8"
BASE64 = "base64"
EMPTY = "empty"  # SQS refuses an empty MessageBody, and klikit's signature over zero bytes is still a delivery

CLAIM_CHECK_PREFIX = "claim-checks/"
ARCHIVE_PREFIX = "archive/"

# Characters SQS accepts in a message body (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html):
# #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF. Checked on the UTF-8 bytes rather than with a
# regex: that regex cost ~9 ms to compile at cold start and ~0.6 ms per 100 KB body (see docs/performance.md).
_SQS_SAFE_BYTES = bytes([0x09, 0x0A, 0x0D, *range(0x20, 0x100)])  # every byte but the C0 controls SQS refuses
_SQS_UNSAFE_NONCHARACTERS = ("\ufffe", "\uffff")  # surrogates never survive a strict UTF-8 decode


def _sqs_safe(body: bytes, text: str) -> bool:
    """True when SQS accepts `text` (the strict UTF-8 decoding of `body`) unchanged."""
    if body.translate(None, _SQS_SAFE_BYTES):  # what is left is a control character SQS refuses
        return False
    return body.isascii() or not any(character in text for character in _SQS_UNSAFE_NONCHARACTERS)


class Delivery(NamedTuple):
    """A verified klikit delivery: the raw bytes and what the headers said about them. Build it with `of`."""

    event_id: str
    event_type: str
    body: bytes
    received_at: str
    body_sha256: str  # hashed once, in `of`: bodies go up to 6 MB and the hash is needed in several places

    @classmethod
    def of(cls, event_id: str, event_type: str, body: bytes, received_at: str) -> Delivery:
        return cls(event_id, event_type, body, received_at, hashlib.sha256(body).hexdigest())


S3_MAX_KEY_BYTES = 1024
MAX_KEY_TOKEN_BYTES = 512  # leaves room for the longest prefix and suffix we add (a day, a SHA-256)
HASHED_TOKEN_PREFIX = "sha256-"


def key_token(event_id: str) -> str:
    """The event id as one S3 key segment: percent-quoted (readable, reversible) when short enough, else hashed."""
    quoted = quote(event_id, safe="")  # ASCII: its length is its size in bytes
    if len(quoted) <= MAX_KEY_TOKEN_BYTES:
        return quoted
    return HASHED_TOKEN_PREFIX + hashlib.sha256(event_id.encode("utf-8")).hexdigest()


def received_moment(received_at: str) -> datetime:
    """The receiver's `received_at` (ISO-8601) as an aware UTC datetime."""
    text = received_at[:-1] + "+00:00" if received_at.endswith("Z") else received_at
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def received_day(received_at: str) -> date:
    """The UTC day of the receiver's `received_at` (ISO-8601): the archive's folder for the delivery."""
    return received_moment(received_at).date()


def claim_check_key(delivery: Delivery) -> str:
    return f"{CLAIM_CHECK_PREFIX}{key_token(delivery.event_id)}/{delivery.body_sha256}"


def archive_key(event_id: str, day: date) -> str:
    """Where the processor archived the delivery `event_id`, received on `day` (UTC), one object per delivery.

    The layout before batch objects (klikit.archive): still read, until the bucket's lifecycle expires it."""
    return f"{ARCHIVE_PREFIX}{day.isoformat()}/{key_token(event_id)}"


def body_as_text(body: bytes) -> tuple[str, str]:
    """(message body, encoding): the raw text when SQS can carry it unchanged, else base64."""
    if not body:
        return "(empty body)", EMPTY
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text and _sqs_safe(body, text):
        return text, UTF8
    return base64.b64encode(body).decode("ascii"), BASE64


def _string_attributes(values: Mapping[str, str]) -> dict[str, MessageAttributeValueTypeDef]:
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}


def sqs_message(
    delivery: Delivery, body_s3_uri: str | None = None, source: str | None = None
) -> tuple[str, dict[str, MessageAttributeValueTypeDef]]:
    """(MessageBody, MessageAttributes) for SendMessage, inline or as a claim check pointing at `body_s3_uri`.

    `source` is set only by the reconciler (RECONCILER); the receiver never passes it.
    """
    attributes = {
        EVENT_ID: delivery.event_id,
        EVENT_TYPE: delivery.event_type,
        RECEIVED_AT: delivery.received_at,
        BODY_SHA256: delivery.body_sha256,
    }
    if body_s3_uri is None:
        text, encoding = body_as_text(delivery.body)
        attributes[BODY_ENCODING] = encoding
    else:
        text = json.dumps({"claim_check": body_s3_uri, "bytes": len(delivery.body)})
        attributes[BODY_ENCODING] = UTF8
        attributes[BODY_S3_URI] = body_s3_uri
    if source is not None:
        attributes[SOURCE] = source
    return text, _string_attributes(attributes)


def sqs_message_size(body: str, attributes: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Bytes SQS counts against MaximumMessageSize: body plus each attribute's name, type and value."""
    size = len(body.encode("utf-8"))
    for name, attribute in (attributes or {}).items():
        value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
        size += len(name.encode()) + len(str(attribute.get("DataType", "")).encode())
        size += len(value) if isinstance(value, bytes) else len(str(value).encode("utf-8"))
    return size


def attribute_value(attributes: Mapping[str, Any], name: str) -> str | None:
    """A string message attribute, from Lambda's record shape ({stringValue}) or boto3's ({StringValue})."""
    value = attributes.get(name) if isinstance(attributes, Mapping) else None
    if not isinstance(value, Mapping):
        return None
    text = value.get("stringValue", value.get("StringValue"))
    return text if isinstance(text, str) else None


def send_attributes(attributes: Mapping[str, Any]) -> dict[str, MessageAttributeValueTypeDef]:
    """Message attributes in either shape (a Lambda record's, a ReceiveMessage message's) as SendMessage takes them."""
    converted: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in attributes.items():
        if not isinstance(value, Mapping):
            continue
        data_type = value.get("dataType") or value.get("DataType") or "String"
        text = value.get("stringValue", value.get("StringValue"))
        binary = value.get("binaryValue", value.get("BinaryValue"))
        if text is not None:
            converted[name] = {"DataType": data_type, "StringValue": str(text)}
        elif binary is not None:
            raw = base64.b64decode(binary) if isinstance(binary, str) else bytes(binary)
            converted[name] = {"DataType": data_type, "BinaryValue": raw}
    return converted


class QueuedDelivery(NamedTuple):
    """One SQS record as the processor sees it, before the body is resolved."""

    message_id: str
    event_id: str
    event_type: str
    received_at: str
    body_sha256: str
    body_encoding: str
    message_body: str
    body_s3_uri: str | None
    source: str = KLIKIT  # RECONCILER when the reconciler made it from klikit's orders API


def message_attribute(record: Mapping[str, Any], name: str) -> str | None:
    """A string message attribute of a Lambda SQS event record or a boto3 ReceiveMessage message."""
    return attribute_value(record.get("messageAttributes") or record.get("MessageAttributes") or {}, name)


def queued_delivery(record: Mapping[str, Any]) -> QueuedDelivery:
    """Read a Lambda SQS event record (or a boto3 ReceiveMessage message); PoisonDelivery if it is not ours."""
    required = {name: message_attribute(record, name) for name in (EVENT_ID, EVENT_TYPE, RECEIVED_AT, BODY_SHA256)}
    missing = sorted(name for name, value in required.items() if not value)
    if missing:
        raise PoisonDelivery("not_a_klikit_delivery", f"message attributes missing: {', '.join(missing)}")
    return QueuedDelivery(
        message_id=str(record.get("messageId") or record.get("MessageId") or ""),
        event_id=required[EVENT_ID] or "",
        event_type=required[EVENT_TYPE] or "",
        received_at=required[RECEIVED_AT] or "",
        body_sha256=required[BODY_SHA256] or "",
        body_encoding=message_attribute(record, BODY_ENCODING) or UTF8,
        message_body=str(record.get("body", record.get("Body", ""))),
        body_s3_uri=message_attribute(record, BODY_S3_URI),
        source=RECONCILER if message_attribute(record, SOURCE) == RECONCILER else KLIKIT,
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise PoisonDelivery("bad_claim_check", f"not an s3 uri: {uri[:200]}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def read_body(queued: QueuedDelivery, get_object: Callable[[str, str], bytes]) -> bytes:
    """The exact bytes klikit signed, from the message itself or from S3, checked against the recorded SHA-256.

    `get_object(bucket, key)` returns an S3 object's bytes; it is only called for claim checks.
    """
    if queued.body_s3_uri:
        body = get_object(*split_s3_uri(queued.body_s3_uri))
    elif queued.body_encoding == EMPTY:
        body = b""
    elif queued.body_encoding == BASE64:
        try:
            body = base64.b64decode(queued.message_body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PoisonDelivery("bad_body_encoding", "body_encoding is base64 but the body is not") from exc
    else:
        body = queued.message_body.encode("utf-8")
    actual = hashlib.sha256(body).hexdigest()
    if actual != queued.body_sha256:
        raise BodyIntegrityError(queued.body_sha256, actual)
    return body
