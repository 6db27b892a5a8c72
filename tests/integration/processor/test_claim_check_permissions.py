"""Why the processor may list the claim-check prefix: S3 answers a missing key 404 only to a caller that may list.

Without s3:ListBucket, S3 answers GetObject on a missing key 403 AccessDenied, indistinguishable from a real
permission fault, so the processor can only retry it (into the DLQ, with no reason). With the grant (checked in
tests/infra/test_permissions.py) it answers 404, and the processor quarantines the record at once with its reason.
moto always answers 404: the 403 is injected at the botocore layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from klikit.delivery import QUARANTINE_REASON, claim_check_key
from klikit.events import ORDER_CREATED
from tests.faults import Faults
from tests.integration.processor.helpers import delivery, dlq_messages, failed_ids, sqs_event, sqs_record
from tools.local.resources import LocalResources

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


def missing_claim_check(aws: LocalResources) -> dict[str, Any]:
    gone = delivery("order_created_v2_batch.json", ORDER_CREATED)
    return sqs_event(sqs_record(gone, body_s3_uri=f"s3://{aws.bucket}/{claim_check_key(gone)}"))


def test_with_list_permission_a_missing_claim_check_is_quarantined_with_its_reason(
    processor: Invoke, aws: LocalResources
) -> None:
    response = processor(missing_claim_check(aws))

    assert failed_ids(response) == []
    [quarantined] = dlq_messages(aws)
    assert quarantined.attributes[QUARANTINE_REASON] == "claim_check_missing"


def test_without_it_s3s_403_can_only_be_retried_and_nothing_says_why(
    processor: Invoke, aws: LocalResources, faults: Faults
) -> None:
    faults.fail("s3.GetObject", code="AccessDenied", times=-1)

    event = missing_claim_check(aws)
    response = processor(event)

    assert failed_ids(response) == [event["Records"][0]["messageId"]]
    assert dlq_messages(aws) == [], "not quarantined: SQS retries it until maxReceiveCount, then parks it reasonless"
