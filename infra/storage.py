"""The stateful building blocks both sides share: DynamoDB tables from spec and the payload bucket."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import spec
from infra.config import StackConfig


def removal_policy(config: StackConfig) -> cdk.RemovalPolicy:
    return cdk.RemovalPolicy.RETAIN if config.retain_data else cdk.RemovalPolicy.DESTROY


def table(scope: Construct, table_spec: spec.TableSpec, config: StackConfig) -> dynamodb.Table:
    """An on-demand table with AWS-owned encryption (DynamoDB's default), TTL and PITR as the spec says."""
    return dynamodb.Table(
        scope,
        table_spec.logical_id,
        partition_key=dynamodb.Attribute(name=table_spec.partition_key, type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        time_to_live_attribute=table_spec.ttl_attribute,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=table_spec.point_in_time_recovery
        ),
        removal_policy=removal_policy(config),
    )


class PayloadBucketConstruct(Construct):
    """Claim checks (bodies too large for SQS) and the archive of processed deliveries."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireClaimChecks",
                    prefix=spec.CLAIM_CHECKS_PREFIX,
                    expiration=cdk.Duration.days(spec.CLAIM_CHECK_EXPIRY_DAYS),
                ),
                s3.LifecycleRule(
                    id="ExpireArchive",
                    prefix=spec.ARCHIVE_OBJECTS_PREFIX,
                    expiration=cdk.Duration.days(config.archive_expiry_days),
                ),
                s3.LifecycleRule(
                    id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=cdk.Duration.days(1)
                ),
            ],
            removal_policy=removal_policy(config),
            # dev: `cdk destroy` empties the bucket first (a small CDK-provided Lambda); prod keeps it.
            auto_delete_objects=not config.retain_data,
        )
