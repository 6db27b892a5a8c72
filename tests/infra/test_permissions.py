"""Least privilege per function: exactly the actions each needs, on exactly its resources, no wildcard actions."""

from __future__ import annotations

import pytest

from infra import spec
from tests.infra.conftest import PROD_SECRET_ARN, Synthesized
from tests.infra.helpers import as_list, grants, logical_id, object_prefix, ref_to, role_statements

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("infra")]


def ids(synth: Synthesized) -> dict[str, str]:
    return {
        "orders": logical_id(synth, "AWS::DynamoDB::Table", "/OrdersTable/"),
        "effects": logical_id(synth, "AWS::DynamoDB::Table", "/EffectsTable/"),
        "idempotency": logical_id(synth, "AWS::DynamoDB::Table", "/IdempotencyTable/"),
        "queue": logical_id(synth, "AWS::SQS::Queue", "/Processing/Queue/"),
        "dlq": logical_id(synth, "AWS::SQS::Queue", "/DeadLetterQueue/"),
        "bucket": logical_id(synth, "AWS::S3::Bucket", "/Payloads/"),
        "receiver_logs": logical_id(synth, "AWS::Logs::LogGroup", "/Receiver/LogGroup/"),
        "processor_logs": logical_id(synth, "AWS::Logs::LogGroup", "/Processor/LogGroup/"),
    }


def targets(resources: list[object]) -> set[tuple[str | None, str | None]]:
    return {(ref_to(r), object_prefix(r)) for r in resources}


def test_receiver_holds_exactly_its_grants(dev: Synthesized) -> None:
    r = ids(dev)
    allowed = grants(role_statements(dev, spec.RECEIVER_HANDLER))
    secret_id = logical_id(dev, "AWS::SecretsManager::Secret", "/WebhookSecret/")
    assert {action: targets(resources) for action, resources in allowed.items()} == {
        "logs:CreateLogStream": {(r["receiver_logs"], None)},
        "logs:PutLogEvents": {(r["receiver_logs"], None)},
        "secretsmanager:GetSecretValue": {(secret_id, None)},
        "secretsmanager:DescribeSecret": {(secret_id, None)},
        "dynamodb:GetItem": {(r["idempotency"], None)},
        "dynamodb:PutItem": {(r["idempotency"], None)},
        "dynamodb:UpdateItem": {(r["idempotency"], None)},
        "dynamodb:DeleteItem": {(r["idempotency"], None)},
        "sqs:SendMessage": {(r["queue"], None)},
        "s3:PutObject": {(r["bucket"], spec.CLAIM_CHECKS_PREFIX + "*")},
    }


def test_receiver_cannot_read_orders_or_delete_from_the_queue(each_stage: Synthesized) -> None:
    r = ids(each_stage)
    allowed = grants(role_statements(each_stage, spec.RECEIVER_HANDLER))
    touched = {ref_to(res) for resources in allowed.values() for res in resources}
    assert r["orders"] not in touched
    assert r["effects"] not in touched
    assert "sqs:DeleteMessage" not in allowed
    assert "sqs:ReceiveMessage" not in allowed
    assert "s3:GetObject" not in allowed


def test_processor_holds_exactly_its_grants(dev: Synthesized) -> None:
    r = ids(dev)
    allowed = grants(role_statements(dev, spec.PROCESSOR_HANDLER))
    claim_checks = (r["bucket"], spec.CLAIM_CHECKS_PREFIX + "*")
    archive = (r["bucket"], spec.ARCHIVE_OBJECTS_PREFIX + "*")
    assert {action: targets(resources) for action, resources in allowed.items()} == {
        "logs:CreateLogStream": {(r["processor_logs"], None)},
        "logs:PutLogEvents": {(r["processor_logs"], None)},
        # consume through the event source mapping
        "sqs:ReceiveMessage": {(r["queue"], None)},
        "sqs:DeleteMessage": {(r["queue"], None)},
        "sqs:ChangeMessageVisibility": {(r["queue"], None)},
        "sqs:GetQueueAttributes": {(r["queue"], None)},
        "sqs:GetQueueUrl": {(r["queue"], None)},
        # quarantine poison deliveries
        "sqs:SendMessage": {(r["dlq"], None)},
        "dynamodb:GetItem": {(r["orders"], None), (r["effects"], None)},
        "dynamodb:PutItem": {(r["orders"], None), (r["effects"], None)},
        "dynamodb:UpdateItem": {(r["orders"], None), (r["effects"], None)},
        "dynamodb:DeleteItem": {(r["effects"], None)},
        "s3:GetObject": {claim_checks, archive},
        # only with the prefix condition, so a missing claim check is a 404 (test below)
        "s3:ListBucket": {(r["bucket"], None)},
        "s3:PutObject": {archive, claim_checks},  # claim checks: a poison body too large for the DLQ
    }


def test_processor_with_fan_out_may_put_events_on_its_bus_only(prod: Synthesized) -> None:
    (bus_id,) = prod.resources("AWS::Events::EventBus")
    allowed = grants(role_statements(prod, spec.PROCESSOR_HANDLER))
    assert targets(allowed["events:PutEvents"]) == {(bus_id, None)}


def test_imported_secret_is_readable_by_the_receiver_only(prod: Synthesized) -> None:
    assert grants(role_statements(prod, spec.RECEIVER_HANDLER))["secretsmanager:GetSecretValue"] == [PROD_SECRET_ARN]
    assert "secretsmanager:GetSecretValue" not in grants(role_statements(prod, spec.PROCESSOR_HANDLER))


# X-Ray's write actions support no resource-level permissions (AWS documents Resource "*"); tracing adds only these.
XRAY_WRITES = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_no_policy_in_the_stack_grants_wildcard_actions(each_stage: Synthesized) -> None:
    for key, policy in each_stage.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert not any("*" in action for action in as_list(statement["Action"])), key
            if set(as_list(statement["Action"])) <= XRAY_WRITES:
                assert each_stage.config.tracing, key
                continue
            assert "*" not in as_list(statement["Resource"]), key


def test_processor_may_list_only_the_claim_check_prefix_so_a_missing_one_is_a_404(dev: Synthesized) -> None:
    # without ListBucket S3 answers GetObject on a missing key 403, which the processor retries into the DLQ blind
    (listing,) = [s for s in role_statements(dev, spec.PROCESSOR_HANDLER) if s["Action"] == "s3:ListBucket"]
    assert listing["Resource"] == {"Fn::GetAtt": [ids(dev)["bucket"], "Arn"]}
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [spec.CLAIM_CHECKS_PREFIX + "*"]}}
    receiver_actions = grants(role_statements(dev, spec.RECEIVER_HANDLER))
    assert "s3:ListBucket" not in receiver_actions
