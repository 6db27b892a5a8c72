"""AWS list prices (us-east-1) and the billing rules that turn measured requests and bytes into dollars. Pure.

Every price is the public on-demand list price of the first tier, without free tier, as published when
PRICES_AS_OF says; change the date with the numbers. The rules (item sizes, 1 KB write units, 4 KB read units,
64 KB SQS chunks) are the ones the services document for billing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

PRICES_AS_OF = "2025-11-01"
REGION = "us-east-1"


class Price:
    """us-east-1 list prices, USD."""

    API_GATEWAY_REST_PER_MILLION = 3.50  # first 333 million requests a month
    API_GATEWAY_HTTP_PER_MILLION = 1.00  # first 300 million; each 512 KB of a request is metered as one
    LAMBDA_REQUEST_PER_MILLION = 0.20
    LAMBDA_ARM64_GB_SECOND = 0.0000133334  # first 7.5 billion GB-s a month
    DYNAMODB_WRITE_UNIT_PER_MILLION = 0.625  # on-demand, Standard table class (since 2024-11-01)
    DYNAMODB_READ_UNIT_PER_MILLION = 0.125
    DYNAMODB_STORAGE_GB_MONTH = 0.25  # first 25 GB a month are free; not deducted here
    DYNAMODB_PITR_GB_MONTH = 0.20
    SQS_STANDARD_PER_MILLION = 0.40  # each 64 KB chunk of a request is billed as one request
    S3_PUT_PER_THOUSAND = 0.005  # PUT, COPY, POST, LIST
    S3_GET_PER_THOUSAND = 0.0004  # GET, HEAD and all other requests
    S3_STANDARD_GB_MONTH = 0.023  # first 50 TB
    LOGS_INGESTION_GB = 0.50  # CloudWatch Logs Standard class (and the first tier of Lambda's vended logs)
    LOGS_STORAGE_GB_MONTH = 0.03  # of the compressed size
    CUSTOM_METRIC_MONTH = 0.30  # first 10,000 metrics; prorated by the hour, only for hours with data
    ALARM_MONTH = 0.10  # standard resolution, one metric
    DASHBOARD_MONTH = 3.00  # the first 3 dashboards of an account are free
    SECRET_MONTH = 0.40
    SECRETS_API_PER_10K = 0.05
    KMS_KEY_MONTH = 1.00  # customer-managed keys only; AWS-owned and AWS-managed keys have no monthly fee
    KMS_REQUESTS_PER_10K = 0.03
    XRAY_TRACES_PER_MILLION = 5.00  # recorded
    EVENTBRIDGE_EVENTS_PER_MILLION = 1.00  # custom events, each 64 KB chunk one event


KB = 1024
GB = 1024**3
DAYS_PER_MONTH = 30.4375  # 365.25 / 12
SQS_CHUNK_BYTES = 64 * KB
# CloudWatch Logs counts each event as its UTF-8 message plus 26 bytes (PutLogEvents' batch size rule).
LOG_EVENT_OVERHEAD_BYTES = 26
# DynamoDB bills storage as the items' sizes plus 100 bytes of indexing overhead per item.
DYNAMODB_ITEM_OVERHEAD_BYTES = 100


# --- DynamoDB item sizes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)


def _number_bytes(text: str) -> int:
    """A number's size: one byte per two significant digits, plus one; leading and trailing zeros do not count."""
    mantissa = text.lower().split("e", 1)[0]
    digits = mantissa.lstrip("+-").replace(".", "").strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def attribute_value_bytes(value: Mapping[str, Any]) -> int:
    """The size of one attribute value in DynamoDB's wire form ({"S": ...}, {"M": {...}}, ...)."""
    (kind, data), *_ = value.items()
    match kind:
        case "S":
            return len(str(data).encode("utf-8"))
        case "N":
            return _number_bytes(str(data))
        case "B":
            return len(data)
        case "BOOL" | "NULL":
            return 1
        case "SS":
            return sum(len(item.encode("utf-8")) for item in data)
        case "NS":
            return sum(_number_bytes(item) for item in data)
        case "BS":
            return sum(len(item) for item in data)
        case "L":
            return 3 + sum(1 + attribute_value_bytes(item) for item in data)
        case "M":
            return 3 + sum(1 + len(name.encode("utf-8")) + attribute_value_bytes(item) for name, item in data.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_bytes(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """The size DynamoDB bills for an item: each attribute's name and value (0 for no item)."""
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + attribute_value_bytes(value) for name, value in item.items())


def write_units(before_bytes: int, after_bytes: int, transactional: bool = False) -> int:
    """WRU of one PutItem/UpdateItem/DeleteItem: the larger of the item before and after, per started KB, at least 1.

    A conditional write that is refused is billed the same way on the item as it stands (after == before).
    """
    units = max(1, math.ceil(max(before_bytes, after_bytes) / KB))
    return units * 2 if transactional else units


def read_units(returned_bytes: int, consistent: bool) -> float:
    """RRU of one read: per started 4 KB of what it returned (at least one block); eventually consistent is half."""
    blocks = max(1, math.ceil(returned_bytes / (4 * KB)))
    return float(blocks) if consistent else blocks / 2


def sqs_requests(payload_bytes: int) -> int:
    """Billed SQS requests for one API call: one per started 64 KB chunk of its payload."""
    return max(1, math.ceil(payload_bytes / SQS_CHUNK_BYTES))


def months(days: float) -> float:
    return days / DAYS_PER_MONTH
