"""What the stack's stateful resources are, in plain Python (no CDK import).

The CDK constructs and the offline local stack (tools/local) both build from these definitions, so the
tables, queues and bucket you test against locally are the ones `cdk deploy` creates.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.lambda_shapes import WEBHOOK_PATH
from klikit.delivery import ARCHIVE_PREFIX, CLAIM_CHECK_PREFIX


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    partition_key: str
    ttl_attribute: str | None
    point_in_time_recovery: bool


# Powertools idempotency's default attribute names ("id", "expiration").
IDEMPOTENCY_TABLE = TableSpec("IdempotencyTable", "id", "expiration", point_in_time_recovery=False)
EFFECTS_TABLE = TableSpec("EffectsTable", "id", "expiration", point_in_time_recovery=False)
ORDERS_TABLE = TableSpec("OrdersTable", "order_id", None, point_in_time_recovery=True)
TABLES = (IDEMPOTENCY_TABLE, EFFECTS_TABLE, ORDERS_TABLE)

QUEUE_MAX_MESSAGE_BYTES = 1024 * 1024  # SQS maximum; bodies above it go to S3 as a claim check
DLQ_RETENTION_DAYS = 14
QUEUE_RETENTION_DAYS = 4

CLAIM_CHECKS_PREFIX = CLAIM_CHECK_PREFIX
ARCHIVE_OBJECTS_PREFIX = ARCHIVE_PREFIX
# A claim check is needed only until the message is processed or leaves the DLQ.
CLAIM_CHECK_EXPIRY_DAYS = DLQ_RETENTION_DAYS + QUEUE_RETENTION_DAYS

RECEIVER_HANDLER = "receiver.handler.lambda_handler"
PROCESSOR_HANDLER = "processor.handler.lambda_handler"
RECONCILER_HANDLER = "reconciler.handler.lambda_handler"
FUNCTIONS_DIR = "functions"

STACK_NAME_PREFIX = "KlikitWebhooks"


def default_stack_name(stage: str) -> str:
    """One stack per stage (KlikitWebhooks-dev, KlikitWebhooks-prod): `-c stage=prod` never turns dev into prod."""
    return f"{STACK_NAME_PREFIX}-{stage}"


# Stack outputs: the CLI reads a deployed stack through these keys, the stack emits them.
OUTPUT_WEBHOOK_URL = "WebhookUrl"
OUTPUT_QUEUE_URL = "QueueUrl"
OUTPUT_DLQ_URL = "DeadLetterQueueUrl"
OUTPUT_IDEMPOTENCY_TABLE = "IdempotencyTableName"
OUTPUT_EFFECTS_TABLE = "EffectsTableName"
OUTPUT_ORDERS_TABLE = "OrdersTableName"
OUTPUT_BUCKET = "PayloadBucketName"
OUTPUT_SECRET_ARN = "WebhookSecretArn"
OUTPUT_DASHBOARD_URL = "DashboardUrl"
OUTPUT_RECEIVER_LOG_GROUP = "ReceiverLogGroupName"
OUTPUT_PROCESSOR_LOG_GROUP = "ProcessorLogGroupName"
OUTPUT_RECONCILER_LOG_GROUP = "ReconcilerLogGroupName"
OUTPUT_PARTNER_SECRET_ARN = "PartnerCredentialsSecretArn"
OUTPUT_KLIKIT_API_URL = "KlikitApiUrl"

# The one route, and what API Gateway answers for any other path or method (the stack maps its default
# 403 "Missing Authentication Token" to this; the local gateway answers the same).
WEBHOOK_PATH_PARTS = tuple(WEBHOOK_PATH.strip("/").split("/"))
UNKNOWN_ROUTE_STATUS = 404
UNKNOWN_ROUTE_MESSAGE = "Not Found"
# Well under klikit's 10 s delivery timeout.
RECEIVER_TIMEOUT_SECONDS = 7

# The reconciler: a run walks one look-back window; it stops with 90 s left and resumes on the next run.
RECONCILER_TIMEOUT_SECONDS = 300
RECONCILER_MEMORY_MB = 256
