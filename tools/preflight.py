"""`./klikit preflight`: before the first `make deploy`, check the AWS account and region the deploy will use.

Each check reads the account with the caller's credentials (nothing is changed) and ends as ok or a problem with the
command that fixes it. The checks follow the stack's own configuration (cdk.json's context, the same
`infra.config` the stack is built from), so a stage, a reserved concurrency or an imported secret is checked as it
will be deployed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError, NoCredentialsError

from infra import spec
from infra.config import ConfigError, StackConfig, check_deployable

BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"  # CDK's default qualifier
# The highest the synthesized cloud assembly requires: 6 to deploy, 8 for the lookup role `make diff` uses
# (a test pins it to cdk.out's manifest).
REQUIRED_BOOTSTRAP_VERSION = 8
# Lambda refuses a reservation that leaves fewer unreserved executions than this.
MIN_UNRESERVED_EXECUTIONS = 10
# The receiver's duration in AWS (docs/performance.md: ~30 ms for its three AWS calls), with room for slow calls.
RECEIVER_SECONDS_PER_DELIVERY = 0.05
LAMBDA_CONCURRENCY_QUOTA_CODE = "L-B99A9384"  # Service Quotas: Lambda "Concurrent executions"
CREDENTIAL_ERRORS = {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException"}


class NoCredentials(Exception):
    """No usable AWS credentials: nothing else can be checked."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def concurrency_needed(config: StackConfig) -> int:
    """Concurrent executions the stack uses at its throttle limit: the receiver's share plus the poller's cap."""
    receiver = math.ceil(config.throttle_rate_limit * RECEIVER_SECONDS_PER_DELIVERY)
    return receiver + config.processor_max_concurrency


class Preflight:
    def __init__(
        self, client: Callable[[str], Any], region: str, config: StackConfig, klikit_api_url: str | None = None
    ) -> None:
        self._client = client
        self.region = region
        self.config = config
        self._klikit_api_url = klikit_api_url or config.klikit_api_url  # tests point it at the fake
        self.account = ""

    def run(self) -> Iterator[Check]:
        yield self.credentials()
        for check in (
            self.settings,
            self.region_enabled,
            self.bootstrap,
            self.lambda_concurrency,
            self.api_gateway_logging,
            self.webhook_secret,
            self.existing_stack,
            *((self.partner_credentials,) if self.config.reconcile_every_minutes else ()),
        ):
            try:
                yield check()
            except ClientError as exc:  # e.g. AccessDenied on one read: say which, keep checking the rest
                name = check.__name__.replace("_", " ")
                yield Check(name, False, f"could not check: {_code(exc)}", "run preflight with the deploying identity")

    def credentials(self) -> Check:
        try:
            identity = self._client("sts").get_caller_identity()
        except NoCredentialsError:
            raise NoCredentials("no AWS credentials found") from None
        except ClientError as exc:
            if _code(exc) in CREDENTIAL_ERRORS:
                raise NoCredentials(f"the AWS credentials were refused ({_code(exc)})") from None
            raise
        self.account = str(identity["Account"])
        return Check("credentials", True, f"{identity['Arn']} (account {self.account})")

    def settings(self) -> Check:
        try:
            check_deployable(self.config)
        except ConfigError as exc:
            return Check("settings", False, str(exc).split(":", 1)[0], str(exc).split(": ", 1)[-1])
        return Check("settings", True, f"stage {self.config.stage}, stack {self.config.stack_name}")

    def region_enabled(self) -> Check:
        try:
            regions = self._client("ec2").describe_regions(RegionNames=[self.region], AllRegions=True)["Regions"]
        except ClientError as exc:
            if _code(exc) in ("InvalidParameterValue", "InvalidRegion"):
                return Check("region", False, f"{self.region} is not an AWS region", "pass --region, e.g. me-central-1")
            raise
        status = regions[0].get("OptInStatus", "opt-in-not-required") if regions else "unknown"
        if status == "not-opted-in":
            return Check(
                "region",
                False,
                f"{self.region} is an opt-in region not enabled for account {self.account}",
                f"aws account enable-region --region-name {self.region}   (takes a few minutes)",
            )
        return Check("region", True, f"{self.region} ({status})")

    def bootstrap(self) -> Check:
        fix = f"make bootstrap AWS_REGION={self.region}   (CDK bootstrap of aws://{self.account}/{self.region})"
        try:
            value = self._client("ssm").get_parameter(Name=BOOTSTRAP_VERSION_PARAMETER)["Parameter"]["Value"]
        except ClientError as exc:
            if _code(exc) == "ParameterNotFound":
                return Check("cdk bootstrap", False, f"{self.region} is not bootstrapped for CDK", fix)
            raise
        version = int(value) if str(value).isdigit() else 0
        if version < REQUIRED_BOOTSTRAP_VERSION:
            detail = f"bootstrap version {value}, the stack needs {REQUIRED_BOOTSTRAP_VERSION} or later"
            return Check("cdk bootstrap", False, detail, fix)
        return Check("cdk bootstrap", True, f"version {version} (needs {REQUIRED_BOOTSTRAP_VERSION}+)")

    def lambda_concurrency(self) -> Check:
        settings = self._client("lambda").get_account_settings()["AccountLimit"]
        limit, unreserved = int(settings["ConcurrentExecutions"]), int(settings["UnreservedConcurrentExecutions"])
        quota_fix = (
            "aws service-quotas request-service-quota-increase --service-code lambda "
            f"--quota-code {LAMBDA_CONCURRENCY_QUOTA_CODE} --desired-value 1000 --region {self.region}"
        )
        reserved = self.config.processor_reserved_concurrency
        if reserved is not None and unreserved - reserved < MIN_UNRESERVED_EXECUTIONS:
            return Check(
                "lambda concurrency",
                False,
                f"processor_reserved_concurrency {reserved} would leave {unreserved - reserved} unreserved executions "
                f"(Lambda keeps at least {MIN_UNRESERVED_EXECUTIONS}): the deploy would roll back",
                f"leave processor_reserved_concurrency empty (-c processor_reserved_concurrency=null), or {quota_fix}",
            )
        needed = concurrency_needed(self.config)
        if limit < needed:
            return Check(
                "lambda concurrency",
                False,
                f"account limit {limit} concurrent executions; at throttle_rate_limit "
                f"{self.config.throttle_rate_limit:g} rps the stack needs ~{needed}: deliveries would be throttled",
                f"{quota_fix}   (or lower throttle_rate_limit until it is granted)",
            )
        return Check("lambda concurrency", True, f"account limit {limit}, {unreserved} unreserved; needs ~{needed}")

    def api_gateway_logging(self) -> Check:
        fix = f"./klikit setup-api-logging --region {self.region}"
        role_arn = self._client("apigateway").get_account().get("cloudwatchRoleArn")
        if not role_arn:
            return Check(
                "api gateway logging",
                False,
                f"API Gateway in {self.region} has no CloudWatch role: the stage's access logging cannot deploy",
                fix,
            )
        try:
            self._client("iam").get_role(RoleName=role_arn.rsplit("/", 1)[-1])
        except ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise
            return Check("api gateway logging", False, f"the account's CloudWatch role {role_arn} was deleted", fix)
        return Check("api gateway logging", True, role_arn)

    def webhook_secret(self) -> Check:
        secret = self.config.webhook_secret
        if secret is None:
            return Check("webhook secret", True, "the stack creates it; put klikit's value in after the deploy")
        if secret.startswith("arn:") and secret.split(":")[3] != self.region:
            return Check(
                "webhook secret",
                False,
                f"{secret} is in {secret.split(':')[3]}, the stack deploys to {self.region}",
                "replicate the secret to this region, or set webhook_secret to one in this region",
            )
        try:
            self._client("secretsmanager").get_secret_value(SecretId=secret)  # the value is never printed
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return Check(
                    "webhook secret",
                    False,
                    f"webhook_secret {secret!r} does not exist in {self.region}",
                    f"aws secretsmanager create-secret --region {self.region} --name {secret} "
                    '--secret-string "$KLIKIT_SECRET"   (or empty webhook_secret to let the stack create one)',
                )
            return Check(
                "webhook secret",
                False,
                f"webhook_secret {secret!r} is not readable ({_code(exc)})",
                "allow secretsmanager:GetSecretValue (and kms:Decrypt on its key) for the deploying identity",
            )
        return Check("webhook secret", True, f"{secret} exists and is readable")

    def existing_stack(self) -> Check:
        name = self.config.stack_name
        stacks = self._stacks([name, spec.STACK_NAME_PREFIX])
        status = stacks.get(name)
        if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED"):
            return Check(
                "stack",
                False,
                f"{name} is in {status}: CloudFormation cannot update it",
                f"aws cloudformation delete-stack --stack-name {name} --region {self.region}",
            )
        if status is None and spec.STACK_NAME_PREFIX in stacks and name != spec.STACK_NAME_PREFIX:
            return Check(
                "stack",
                False,
                f"{spec.STACK_NAME_PREFIX} (the old default name) exists; a deploy would create {name} next to it",
                f"keep updating the old one with -c stack_name={spec.STACK_NAME_PREFIX} (or set it in cdk.json)",
            )
        if status is None:
            return Check("stack", True, f"{name} will be created")
        return Check("stack", True, f"{name} exists ({status}): make deploy updates it")

    def partner_credentials(self) -> Check:
        """With reconciliation on: the credentials secret holds a pair klikit accepts (one list call, size 1)."""
        from klikit.errors import CredentialsUnavailable, PartnerApiError, PartnerAuthError
        from reconciler.adapters import read_credentials
        from reconciler.app import put_secret_command, refused
        from reconciler.partner_api import PartnerApi, RetryPolicy

        name = "partner credentials"
        secret = self.config.partner_credentials_secret or self._output(spec.OUTPUT_PARTNER_SECRET_ARN)
        if secret is None:
            return Check(
                name,
                False,
                "reconcile_every_minutes is on, but the stack would start with a placeholder secret",
                "deploy with -c reconcile_every_minutes=0, put klikit's credentials in the PartnerCredentialsSecretArn "
                "secret, then turn reconciliation on (docs/reconciliation.md)",
            )
        try:
            credentials = read_credentials(self._client("secretsmanager"), secret)
        except CredentialsUnavailable as exc:
            return Check(name, False, str(exc), put_secret_command(secret))
        api = PartnerApi(self._klikit_api_url, lambda: credentials, retry=RetryPolicy(attempts=2), timeout_seconds=10)
        now = datetime.now(UTC)
        try:
            total = api.count_orders(now - timedelta(hours=1), now)
        except PartnerAuthError as exc:
            return Check(name, False, refused(exc), put_secret_command(secret))
        except PartnerApiError as exc:
            return Check(
                name, False, f"klikit's API at {self._klikit_api_url} did not answer: {exc}", "check klikit_api_url"
            )
        return Check(name, True, f"klikit accepts them ({total} orders created in the last hour)")

    def _output(self, key: str) -> str | None:
        try:
            (stack,) = self._client("cloudformation").describe_stacks(StackName=self.config.stack_name)["Stacks"]
        except ClientError as exc:
            if "does not exist" not in str(exc):
                raise
            return None
        return next((o["OutputValue"] for o in stack.get("Outputs", []) if o["OutputKey"] == key), None)

    def _stacks(self, names: list[str]) -> Mapping[str, str]:
        found = {}
        cloudformation = self._client("cloudformation")
        for name in names:
            try:
                (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
            except ClientError as exc:
                if "does not exist" not in str(exc):
                    raise
                continue
            found[name] = str(stack["StackStatus"])
        return found
