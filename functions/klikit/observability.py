"""Names shared by the code that emits logs and metrics and the stack that alarms on them."""

from __future__ import annotations

import os
from typing import Any

METRICS_NAMESPACE = "KlikitWebhooks"
RECEIVER_SERVICE = "klikit-receiver"
PROCESSOR_SERVICE = "klikit-processor"
# Keys Powertools puts on every line that no tool reads and something else already says: the log group names the
# function, the REPORT line its memory, a traceback its code location, and an unsampled invocation's X-Ray trace id
# points at no trace. ~320 bytes a line (docs/performance.md, cost). The request id and cold_start stay.
REDUNDANT_LOG_KEYS = ["function_name", "function_arn", "function_memory_size", "location"]
TRACE_HEADER = "_X_AMZN_TRACE_ID"  # set by Lambda on every invocation: `Root=...;Parent=...;Sampled=0|1`
RECONCILER_SERVICE = "klikit-reconciler"  # its metrics and logs; the stack alarms on them

# receiver metrics (dimension: service)
RECEIVED = "DeliveriesReceived"
REJECTED_MISSING_HEADERS = "RejectedMissingHeaders"
REJECTED_INVALID_HEADERS = "RejectedInvalidHeaders"
REJECTED_BODY_ENCODING = "RejectedBodyEncoding"
REJECTED_TOO_LARGE = "RejectedTooLarge"
REJECTED_SIGNATURE = "RejectedInvalidSignature"
DUPLICATES = "Duplicates"
DUPLICATE_BODY_DIFFERS = "DuplicatesWithDifferentBody"
IN_FLIGHT_CONFLICTS = "InFlightConflicts"
ENQUEUED = "Enqueued"
OFFLOADED_TO_S3 = "OffloadedToS3"
ENQUEUE_FAILURES = "EnqueueFailures"
SECRET_REFRESHES = "SecretRefreshes"
SECRET_MISCONFIGURED = "SecretMisconfigured"  # the secret's value is malformed rotation JSON (alarmed)
SECRET_GRACE_USED = "SecretGraceUsed"  # verified with the last good secret during an outage or a bad value

# API Gateway metrics, from a metric filter on the stage's access log (dimension: stage)
API_THROTTLED = "ApiThrottledRequests"

# processor metrics (dimensions: service, and event_type where it says so)
PROCESSED = "EventsProcessed"
PROCESSING_FAILED = "EventsFailed"
QUARANTINED = "EventsQuarantined"
STALE_IGNORED = "StaleEventsIgnored"
UNKNOWN_EVENT_TYPE = "UnknownEventTypes"
REPLAYED_UNDER_NEW_ID = "ReplayedUnderNewId"  # a body already processed under another event id came again
ARCHIVE_FAILED = "ArchiveFailures"  # the raw delivery could not be archived (the record is retried)

# The log lines that mark a step of a delivery's path (`klikit events`, `klikit doctor` and the stack's saved
# Logs Insights queries search for these exact messages).
LOG_ACCEPTED = "delivery accepted"  # receiver: outcome received | duplicate
LOG_NOT_ACCEPTED = "delivery not accepted"  # receiver: outcome rejected | in_flight | unavailable, with reason
LOG_RECEIVER_FAILED = "receiver failed unexpectedly"
LOG_PROCESSED = "delivery processed"
LOG_STALE = "stale event ignored by the order projection"
LOG_QUARANTINED = "poison delivery quarantined in the DLQ"
LOG_HANDLER_FAILED = "handler failed"
LOG_UNKNOWN_TYPE = "unknown event type archived"

# reconciler metrics (dimension: service)
ORDERS_CHECKED = "OrdersChecked"
ORDERS_HEALED = "OrdersHealed"  # each is a delivery klikit did not make or we did not take
PARTNER_API_PAGES = "PartnerApiPages"
PARTNER_API_RETRIES = "PartnerApiRetries"
RECONCILE_AUTH_FAILURES = "ReconcileAuthFailures"  # klikit refused the partner credentials
RECONCILE_FAILURES = "ReconcileFailures"  # a run stopped before the end of its window (klikit down, AWS failing)


def sampled_trace_id(header: str | None) -> str | None:
    """The X-Ray trace id of an invocation X-Ray keeps a trace of (`Sampled=1`), else None: nothing to look up."""
    parts = dict(part.split("=", 1) for part in (header or "").split(";") if "=" in part)
    return parts.get("Root") if parts.get("Sampled") == "1" else None


def lean_log_keys(logger: Any) -> None:
    """For each invocation, after Powertools reset its keys: leave out REDUNDANT_LOG_KEYS, keep a sampled trace id."""
    logger.remove_keys(REDUNDANT_LOG_KEYS)
    if not sampled_trace_id(os.environ.get(TRACE_HEADER)):  # Lambda's per-invocation header, not configuration
        logger.append_keys(xray_trace_id=None)  # Powertools' switch for leaving the trace id out
