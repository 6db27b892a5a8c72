"""Tables, bucket, queues and secret: encryption, TLS only, TTL/PITR, lifecycle, retention, removal per stage."""

from __future__ import annotations

from typing import Any

import pytest

from infra import spec
from klikit import settings as env
from tests.infra.conftest import PROD_SECRET_ARN, Synthesized
from tests.infra.helpers import logical_id, receiver

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]

STATEFUL = (
    "AWS::DynamoDB::Table",
    "AWS::S3::Bucket",
    "AWS::SQS::Queue",
    "AWS::Logs::LogGroup",
    "AWS::SecretsManager::Secret",
)


def table(synth: Synthesized, table_spec: spec.TableSpec) -> dict[str, Any]:
    return synth.template["Resources"][logical_id(synth, "AWS::DynamoDB::Table", f"/{table_spec.logical_id}/")][
        "Properties"
    ]


@pytest.mark.parametrize("table_spec", spec.TABLES, ids=lambda t: t.logical_id)
def test_tables_follow_the_shared_spec(dev: Synthesized, table_spec: spec.TableSpec) -> None:
    props = table(dev, table_spec)
    assert props["KeySchema"] == [{"AttributeName": table_spec.partition_key, "KeyType": "HASH"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    if table_spec.ttl_attribute:
        assert props["TimeToLiveSpecification"] == {"AttributeName": table_spec.ttl_attribute, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in props
    pitr = props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled", False)
    assert pitr is table_spec.point_in_time_recovery


def test_orders_table_has_point_in_time_recovery_and_idempotency_table_expires_records(dev: Synthesized) -> None:
    assert table(dev, spec.ORDERS_TABLE)["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table(dev, spec.IDEMPOTENCY_TABLE)["TimeToLiveSpecification"]["Enabled"] is True


def test_bucket_is_private_encrypted_and_expires_claim_checks_and_archive(each_stage: Synthesized) -> None:
    ((bucket_id, bucket),) = each_stage.resources("AWS::S3::Bucket").items()
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    expiry = {rule.get("Prefix"): rule.get("ExpirationInDays") for rule in props["LifecycleConfiguration"]["Rules"]}
    assert expiry[spec.CLAIM_CHECKS_PREFIX] == spec.CLAIM_CHECK_EXPIRY_DAYS
    assert expiry[spec.ARCHIVE_OBJECTS_PREFIX] == each_stage.config.archive_expiry_days
    (policy,) = [
        p
        for p in each_stage.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    assert_denies_plain_http(policy["Properties"]["PolicyDocument"]["Statement"], "s3:*")


def assert_denies_plain_http(statements: list[dict[str, Any]], action: str) -> None:
    assert any(
        s["Effect"] == "Deny" and s["Action"] == action and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )


def test_queue_hands_over_to_a_dlq_and_outlasts_six_processor_timeouts(each_stage: Synthesized) -> None:
    queue_id = logical_id(each_stage, "AWS::SQS::Queue", "/Processing/Queue/")
    dlq_id = logical_id(each_stage, "AWS::SQS::Queue", "/Processing/DeadLetterQueue/")
    queue = each_stage.template["Resources"][queue_id]["Properties"]
    dlq = each_stage.template["Resources"][dlq_id]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * each_stage.config.processor_timeout_seconds
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": each_stage.config.dlq_max_receive_count,
    }
    assert dlq["MessageRetentionPeriod"] == 14 * 86_400
    assert queue["MessageRetentionPeriod"] == spec.QUEUE_RETENTION_DAYS * 86_400
    for props in (queue, dlq):
        assert props["SqsManagedSseEnabled"] is True
        assert props["MaximumMessageSize"] == spec.QUEUE_MAX_MESSAGE_BYTES
    for queue_ref in (queue_id, dlq_id):
        (policy,) = [
            p
            for p in each_stage.resources("AWS::SQS::QueuePolicy").values()
            if p["Properties"]["Queues"] == [{"Ref": queue_ref}]
        ]
        assert_denies_plain_http(policy["Properties"]["PolicyDocument"]["Statement"], "sqs:*")


def test_dev_stage_destroys_its_stateful_resources(dev: Synthesized) -> None:
    for resource_type in STATEFUL:
        for key, resource in dev.resources(resource_type).items():
            assert resource.get("DeletionPolicy") == "Delete", key
    # the bucket is emptied on delete so `make destroy` succeeds
    assert dev.resources("Custom::S3AutoDeleteObjects")


def test_prod_stage_retains_its_stateful_resources(prod: Synthesized) -> None:
    for resource_type in STATEFUL:
        for key, resource in prod.resources(resource_type).items():
            assert resource.get("DeletionPolicy") == "Retain", key
            assert resource.get("UpdateReplacePolicy") == "Retain", key
    assert not prod.resources("Custom::S3AutoDeleteObjects")


def test_stack_creates_the_secret_with_a_generated_placeholder(dev: Synthesized) -> None:
    secret_id = logical_id(dev, "AWS::SecretsManager::Secret", "/WebhookSecret/")
    secret = dev.resources("AWS::SecretsManager::Secret")[secret_id]
    assert "GenerateSecretString" in secret["Properties"]
    assert "SecretString" not in secret["Properties"], "never a real secret in the template"
    assert receiver(dev)["Environment"]["Variables"][env.WEBHOOK_SECRET_ID] == {"Ref": secret_id}


def test_an_existing_secret_is_imported_by_arn(prod: Synthesized) -> None:
    assert prod.resources("AWS::SecretsManager::Secret") == {}
    assert receiver(prod)["Environment"]["Variables"][env.WEBHOOK_SECRET_ID] == PROD_SECRET_ARN
    assert prod.template["Outputs"][spec.OUTPUT_SECRET_ARN]["Value"] == PROD_SECRET_ARN


@pytest.mark.parametrize(
    "key",
    [
        spec.OUTPUT_WEBHOOK_URL,
        spec.OUTPUT_QUEUE_URL,
        spec.OUTPUT_DLQ_URL,
        spec.OUTPUT_IDEMPOTENCY_TABLE,
        spec.OUTPUT_EFFECTS_TABLE,
        spec.OUTPUT_ORDERS_TABLE,
        spec.OUTPUT_BUCKET,
        spec.OUTPUT_SECRET_ARN,
        spec.OUTPUT_DASHBOARD_URL,
        spec.OUTPUT_RECEIVER_LOG_GROUP,
        spec.OUTPUT_PROCESSOR_LOG_GROUP,
    ],
)
def test_stack_outputs_carry_the_keys_the_cli_reads(dev: Synthesized, key: str) -> None:
    assert key in dev.template["Outputs"]


def test_log_group_outputs_name_the_functions_log_groups(dev: Synthesized) -> None:
    receiver_group = receiver(dev)["LoggingConfig"]["LogGroup"]
    assert dev.template["Outputs"][spec.OUTPUT_RECEIVER_LOG_GROUP]["Value"] == receiver_group
