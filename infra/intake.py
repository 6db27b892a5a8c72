"""The synchronous half klikit talks to: the REST API, the receiver, its idempotency table and the webhook secret."""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import lambda_shapes, spec
from infra.config import StackConfig
from infra.function import PythonFunctionConstruct, log_group
from infra.secrets import secret
from infra.storage import table
from klikit import observability

WEBHOOK_PATH = spec.WEBHOOK_PATH_PARTS
# klikit gives up after 10 s; 7 s leaves room for API Gateway and the network, and bounds a stuck AWS call.
RECEIVER_TIMEOUT_SECONDS = spec.RECEIVER_TIMEOUT_SECONDS

# One JSON object per request. API Gateway access logs cannot carry bodies; headers (the signature) are left out too.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": apigw.AccessLogField.context_request_id(),
        "requestTime": apigw.AccessLogField.context_request_time(),
        "sourceIp": apigw.AccessLogField.context_identity_source_ip(),
        "userAgent": apigw.AccessLogField.context_identity_user_agent(),
        "httpMethod": apigw.AccessLogField.context_http_method(),
        "path": apigw.AccessLogField.context_path(),
        "resourcePath": apigw.AccessLogField.context_resource_path(),
        "protocol": apigw.AccessLogField.context_protocol(),
        "status": apigw.AccessLogField.context_status(),
        "responseLength": apigw.AccessLogField.context_response_length(),
        "responseLatencyMs": apigw.AccessLogField.context_response_latency(),
        "integrationStatus": apigw.AccessLogField.context_integration_status(),
        "integrationLatencyMs": apigw.AccessLogField.context_integration_latency(),
        "errorMessage": apigw.AccessLogField.context_error_message(),
        "errorType": apigw.AccessLogField.context_error_response_type(),
        "stage": apigw.AccessLogField.context_stage(),
    }
)


def webhook_secret(scope: Construct, config: StackConfig) -> tuple[secretsmanager.ISecret, str]:
    """The secret the receiver verifies signatures with, and the id it is read by (WEBHOOK_SECRET_ID)."""
    return secret(
        scope,
        "WebhookSecret",
        config=config,
        given=config.webhook_secret,
        description='klikit webhook signing secret: the plain secret, or {"active": [new, old]} while rotating',
        # Until `aws secretsmanager put-secret-value` stores klikit's secret (docs/deploy.md) every delivery fails the
        # signature check, which is the safe default.
        placeholder=secretsmanager.SecretStringGenerator(password_length=48, exclude_punctuation=True),
    )


class IntakeConstruct(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        queue: sqs.IQueue,
        bucket: s3.IBucket,
        layer: lambda_.ILayerVersion,
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret, secret_id = webhook_secret(self, config)
        self.idempotency_table = table(self, spec.IDEMPOTENCY_TABLE, config)

        self.receiver = PythonFunctionConstruct(
            self,
            "Receiver",
            config=config,
            handler=spec.RECEIVER_HANDLER,
            service=observability.RECEIVER_SERVICE,
            description="Verifies klikit webhook signatures, admits each delivery once and queues it",
            memory_mb=config.receiver_memory_mb,
            timeout=cdk.Duration.seconds(RECEIVER_TIMEOUT_SECONDS),
            environment=lambda_shapes.receiver_environment(
                secret_id=secret_id,
                idempotency_table=self.idempotency_table.table_name,
                queue_url=queue.queue_url,
                bucket=bucket.bucket_name,
                ttl_days=config.idempotency_ttl_days,
                queue_max_bytes=spec.QUEUE_MAX_MESSAGE_BYTES,
            ),
            layer=layer,
            secret=self.secret,
        )
        function = self.receiver.function
        self.idempotency_table.grant(
            function, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"
        )
        queue.grant(function, "sqs:SendMessage")
        iam.Grant.add_to_principal(
            grantee=function,
            actions=["s3:PutObject"],
            resource_arns=[bucket.arn_for_objects(f"{spec.CLAIM_CHECKS_PREFIX}*")],
        )

        self.access_log_group = log_group(self, "AccessLogs", config)
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"klikit-webhooks-{config.stage}",
            description="klikit order webhooks: POST /webhooks/klikit only",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Every body reaches the receiver as exact bytes (base64): the HMAC is over the raw bytes, and a
            # text round-trip could change them.
            binary_media_types=["*/*"],
            policy=_source_ip_policy(config.allowed_cidrs),
            # The account's API Gateway CloudWatch role is one setting per account and region, shared by every API:
            # not this stack's to own. `./klikit setup-api-logging` sets it once; `./klikit preflight` checks it.
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage,
                throttling_rate_limit=config.throttle_rate_limit,
                throttling_burst_limit=config.throttle_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.custom(ACCESS_LOG_FORMAT),
                data_trace_enabled=False,
                tracing_enabled=config.tracing,
            ),
        )
        # A resource policy only takes effect with a new deployment: tie the deployment's identity to the allow-list.
        if self.api.latest_deployment is not None:
            self.api.latest_deployment.add_to_logical_id({"allowedCidrs": list(config.allowed_cidrs)})
        resource = self.api.root
        for part in WEBHOOK_PATH:
            resource = resource.add_resource(part)
        self.webhook_method = resource.add_method(
            "POST", apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
        )
        # API Gateway answers unknown routes itself with 403 "Missing Authentication Token"; say 404 instead.
        self.api.add_gateway_response(
            "UnknownRoute",
            type=apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
            status_code=str(spec.UNKNOWN_ROUTE_STATUS),
            templates={"application/json": json.dumps({"message": spec.UNKNOWN_ROUTE_MESSAGE})},
        )

    @property
    def webhook_url(self) -> str:
        return self.api.url_for_path("/" + "/".join(WEBHOOK_PATH))


def _source_ip_policy(cidrs: tuple[str, ...]) -> iam.PolicyDocument | None:
    """Allow-list as a resource policy: empty = open (klikit publishes no egress IPs; the HMAC is the gate)."""
    if not cidrs:
        return None
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                effect=iam.Effect.ALLOW,
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*"],
            ),
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*"],
                conditions={"NotIpAddress": {"aws:SourceIp": list(cidrs)}},
            ),
        ]
    )
