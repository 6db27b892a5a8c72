"""Build the processor's app from its settings: the only module that creates AWS clients for it."""

from __future__ import annotations

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from klikit.aws import client
from klikit.settings import ProcessorSettings
from processor.adapters import DynamoOrdersTable, EventBus, PayloadBucket, Quarantine
from processor.app import ProcessorApp
from processor.registry import REGISTRY, Registry
from processor.tracing import no_span, xray_span


def build_app(settings: ProcessorSettings | None = None, registry: Registry = REGISTRY) -> ProcessorApp:
    settings = settings or ProcessorSettings.from_env()
    timeout = settings.aws_call_timeout_seconds
    s3, dynamodb = client("s3", timeout), client("dynamodb", timeout)
    return ProcessorApp(
        payloads=PayloadBucket(s3, settings.payload_bucket),
        quarantine=Quarantine(
            client("sqs", timeout), settings.dlq_url, s3, settings.payload_bucket, settings.sqs_max_message_bytes
        ),
        orders=DynamoOrdersTable(dynamodb, settings.orders_table),
        bus=EventBus(client("events", timeout), settings.event_bus_name) if settings.event_bus_name else None,
        persistence=DynamoDBPersistenceLayer(table_name=settings.effects_table, boto3_client=dynamodb),
        effects_ttl_seconds=settings.effects_ttl_seconds,
        registry=registry,
        span=xray_span() if settings.tracing else no_span,
    )
