"""The secrets the functions read: the operator's existing one (by name or ARN), or one the stack creates with a
random placeholder until the operator puts the real value (docs/deploy.md)."""

from __future__ import annotations

import re

from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import StackConfig
from infra.storage import removal_policy

# Secrets Manager appends "-" and six characters to a secret's name in its ARN; a partial ARN lacks them.
_COMPLETE_SECRET_ARN = re.compile(r"-[A-Za-z0-9]{6}$")


def secret(
    scope: Construct,
    construct_id: str,
    *,
    config: StackConfig,
    given: str | None,
    description: str,
    placeholder: secretsmanager.SecretStringGenerator,
) -> tuple[secretsmanager.ISecret, str]:
    """The secret `given` names (None: a new one holding `placeholder`), and the id a function reads it by."""
    if given is not None:
        return import_secret(scope, construct_id, given)
    created = secretsmanager.Secret(
        scope,
        construct_id,
        description=description,
        generate_secret_string=placeholder,
        removal_policy=removal_policy(config),
    )
    return created, created.secret_arn


def import_secret(scope: Construct, construct_id: str, given: str) -> tuple[secretsmanager.ISecret, str]:
    """An existing secret by name or ARN (complete or partial), and the id a function reads it by."""
    if given.startswith("arn:"):
        if _COMPLETE_SECRET_ARN.search(given):
            return secretsmanager.Secret.from_secret_complete_arn(scope, construct_id, given), given
        return secretsmanager.Secret.from_secret_partial_arn(scope, construct_id, given), given
    return secretsmanager.Secret.from_secret_name_v2(scope, construct_id, given), given
