"""`./klikit setup-api-logging`: set API Gateway's CloudWatch role, once per account and region.

API Gateway writes access logs through one role per account and region (an account setting, not a stack
resource), and a stage with access logging cannot deploy until it is set. The stack leaves it alone, because the
last stack to set it would win for every API in the region; this command sets it once, and never replaces a role
that is already set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

ROLE_NAME = "APIGatewayCloudWatchLogs"
MANAGED_POLICY = "service-role/AmazonAPIGatewayPushToCloudWatchLogs"  # the AWS-documented policy for this role
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
# A new role takes a few seconds to reach API Gateway (IAM is eventually consistent): retry this long.
PROPAGATION_SECONDS = 60.0


@dataclass(frozen=True)
class Outcome:
    role_arn: str
    changed: bool
    message: str


def _partition(session: Any) -> str:
    return str(session.client("sts").get_caller_identity()["Arn"].split(":")[1])


def ensure_role(session: Any) -> tuple[str, bool]:
    """The role's ARN, creating it with the managed policy when it does not exist yet; (arn, created)."""
    iam = session.client("iam")
    try:
        return str(iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"]), False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
            raise
    arn = iam.create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
        Description="API Gateway writes access and execution logs to CloudWatch Logs (account setting)",
    )["Role"]["Arn"]
    iam.attach_role_policy(RoleName=ROLE_NAME, PolicyArn=f"arn:{_partition(session)}:iam::aws:policy/{MANAGED_POLICY}")
    return str(arn), True


def current_role(session: Any) -> str | None:
    return session.client("apigateway").get_account().get("cloudwatchRoleArn") or None


def setup_api_logging(
    session: Any, *, sleep: Callable[[float], None] = time.sleep, propagation_seconds: float = PROPAGATION_SECONDS
) -> Outcome:
    region = session.region_name
    existing = current_role(session)
    if existing:
        return Outcome(existing, False, f"API Gateway in {region} already logs through {existing}: nothing to do")
    arn, created = ensure_role(session)
    apigateway = session.client("apigateway")
    waited = 0.0
    while True:
        try:
            apigateway.update_account(patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": arn}])
            break
        except ClientError as exc:
            # "The role ARN does not have required permissions set to API Gateway" until IAM has propagated
            if exc.response.get("Error", {}).get("Code") != "BadRequestException" or waited >= propagation_seconds:
                raise
            sleep(3.0)
            waited += 3.0
    made = "created role" if created else "reused role"
    return Outcome(arn, True, f"API Gateway in {region} now logs through {arn} ({made} {ROLE_NAME})")
