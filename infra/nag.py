"""cdk-nag AwsSolutions acknowledgements: each one scoped to the construct it is about, each with its reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from constructs import IConstruct

from infra import spec

if TYPE_CHECKING:
    from infra.stack import KlikitWebhooksStack

PACK = "AwsSolutions"

HMAC_IS_THE_AUTH = (
    "klikit cannot present IAM credentials, Cognito tokens or any Authorization header: each delivery is "
    "authenticated by its HMAC-SHA256 signature over the raw body, which only the receiver can verify (authorizers "
    "never see the body). Unsigned or forged requests get 401 and nothing is stored; a source-IP allow-list is "
    "available through the allowed_cidrs resource policy."
)
PYTHON_313 = (
    "python3.13 is deliberate: the dependencies layer is built for CPython 3.13 wheels and the test suite runs on "
    "3.13; moving to a newer runtime is a tested change, not a silent one."
)
PREFIX_SCOPED = (
    "The grant is limited to one key prefix of this stack's bucket ({prefix}) and to the named object actions; object "
    "keys are per delivery, so a prefix wildcard is the narrowest grant possible."
)
TTL_MARKERS = (
    "Holds only short-lived idempotency markers that expire by TTL and are rebuilt by the traffic itself; a "
    "point-in-time restore would bring back expired markers, not business data. The orders table has PITR."
)

XRAY_HAS_NO_RESOURCES = (
    "With tracing on, Lambda's active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, which "
    'support no resource-level permissions: AWS documents Resource "*" for them (AWSXRayDaemonWriteAccess).'
)

# Every acknowledgement in one place, rule -> reason: the README and tests read this list.
REASONS: dict[str, str] = {
    "S1": (
        "Server access logging would need a second bucket for a bucket that only this stack's two functions touch "
        "(public access blocked, TLS only); each claim-check and archive write is logged by the function with the "
        "klikit event id, and CloudTrail S3 data events can be enabled account-wide where object-level audit is needed."
    ),
    "IAM5": PREFIX_SCOPED,
    "L1": PYTHON_313,
    "SMG4": (
        "klikit issues the webhook secret and the partner API credentials and changes them through its operator; "
        "there is no API a rotation Lambda could call. Rotation is the documented manual procedure (docs/deploy.md)."
    ),
    "APIG2": (
        "The one check that matters, the HMAC over the exact body bytes, has to run in the receiver, which also "
        "validates the klikit headers and answers with precise statuses and metrics; a gateway validator would "
        "reject deliveries before signature verification with generic errors that klikit retries."
    ),
    "APIG3": (
        "The API accepts only POST /webhooks/klikit, is throttled per stage, rejects unsigned requests in the "
        "receiver and can be limited to klikit's source IPs; a WAF web ACL adds monthly and per-request cost and its "
        "managed rules would inspect signed JSON bodies. Add one if abuse appears (docs/architecture.md)."
    ),
    "APIG4": HMAC_IS_THE_AUTH,
    "COG4": HMAC_IS_THE_AUTH,
    "APIG6": (
        "Every request is logged by the stage's JSON access log (APIG1). Execution logging is left off: it writes "
        "to log groups this stack cannot give a retention, and at INFO it records request headers, including the "
        "signature."
    ),
    "DDB3": TTL_MARKERS,
}


def _ack(scope: IConstruct, rule: str, finding: str | None = None, reason: str | None = None) -> None:
    rule_id = f"{PACK}-{rule}" + (f"[{finding}]" if finding else "")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{PACK}::{rule_id}", reason=reason or REASONS[rule]))


def acknowledge_findings(stack: KlikitWebhooksStack) -> None:
    intake, processing, bucket = stack.intake, stack.processing, stack.payloads.bucket
    bucket_arn = stack.resolve(bucket.bucket_arn)["Fn::GetAtt"][0]

    _ack(bucket, "S1")
    for scope, prefix in (
        (intake.receiver.role, spec.CLAIM_CHECKS_PREFIX),
        (processing.processor.role, spec.CLAIM_CHECKS_PREFIX),
        (processing.processor.role, spec.ARCHIVE_OBJECTS_PREFIX),
    ):
        _ack(scope, "IAM5", f"Resource::<{bucket_arn}.Arn>/{prefix}*", PREFIX_SCOPED.format(prefix=prefix))
    reconciliation = stack.reconciliation
    for function in (intake.receiver.function, processing.processor.function, reconciliation.reconciler.function):
        _ack(function, "L1")
    if stack.config.tracing:
        for role in (intake.receiver.role, processing.processor.role, reconciliation.reconciler.role):
            _ack(role, "IAM5", "Resource::*", XRAY_HAS_NO_RESOURCES)
    for secret in (intake.secret, reconciliation.secret):
        if isinstance(secret, cdk.aws_secretsmanager.Secret):  # created here, not imported by name or ARN
            _ack(secret, "SMG4")
    _ack(intake.api, "APIG2")
    _ack(intake.api, "APIG3")
    _ack(intake.api, "APIG4")
    _ack(intake.api, "COG4")
    _ack(intake.api, "APIG6")
    _ack(intake.idempotency_table, "DDB3")
    _ack(processing.effects_table, "DDB3")
