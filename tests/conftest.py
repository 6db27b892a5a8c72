"""Fixtures every suite shares: offline AWS credentials, moto resources built from infra/spec.py, a fake
Lambda context, klikit-shaped payloads and a signer."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.lambda_shapes import LambdaContext, api_gateway_event
from klikit.signature import sign
from tests.faults import Faults
from tools.local.resources import LOCAL_REGION, LocalResources, create_resources

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "whsec_test_3f1b8c2e9d7a4b6c"  # the active webhook secret in every moto-backed test
OLD_SECRET = "whsec_old_0a9b8c7d6e5f"

# No test may reach AWS: dummy credentials and a fixed region, before anything creates a client.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
        "POWERTOOLS_DEV": "false",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext(remaining_ms=6_000)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalResources]:
    """In-process moto with the stack's resources; the functions' environment points at them."""
    with mock_aws():
        resources = create_resources(boto3.Session(region_name=LOCAL_REGION), [SECRET])
        for name, value in resources.env().items():
            monkeypatch.setenv(name, value)
        yield resources


def load_fixture(name: str) -> bytes:
    """A payload file's exact bytes (what klikit would sign)."""
    return (FIXTURES / name).read_bytes()


def load_json(name: str) -> Any:
    return json.loads(load_fixture(name))


def api_event(
    body: bytes,
    *,
    event_id: str | None = None,
    event_type: str = "klikit.order.created.v2",
    secret: str = SECRET,
    signature: str | None = None,
    headers: dict[str, str] | None = None,
    base64_encoded: bool = False,
) -> dict[str, Any]:
    """An API Gateway REST proxy event for POST /webhooks/klikit, signed like klikit signs (`headers` replaces
    klikit's headers); the body as text unless `base64_encoded` (the deployed API's binary form)."""
    sent = {
        "Content-Type": "application/json",
        "x-klikit-signature": signature if signature is not None else sign(secret, body),
        "x-klikit-event-id": event_id or f"test-{uuid.uuid4()}",
        "x-klikit-event-type": event_type,
    }
    return api_gateway_event(body, sent if headers is None else headers, stage="test", base64_encoded=base64_encoded)


class StructuredLogs:
    """What the Powertools loggers wrote (their JSON lines), redirected from stdout for the test."""

    def __init__(self) -> None:
        import io

        self.buffer = io.StringIO()

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]


@pytest.fixture
def structured_logs() -> Iterator[StructuredLogs]:
    """Every Powertools logger that exists (the test module imported its handler) writes into one buffer."""
    import logging

    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    logs = StructuredLogs()
    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    for candidate in list(logging.Logger.manager.loggerDict.values()):
        for handler in getattr(candidate, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and isinstance(handler.formatter, LambdaPowertoolsFormatter):
                swapped.append((handler, handler.setStream(logs.buffer)))
    yield logs
    for handler, stream in swapped:
        handler.setStream(stream)


@pytest.fixture
def faults(aws: LocalResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    """AWS faults for the functions' clients (tests/faults.py); arm it before the handler builds its clients."""
    from botocore.retries.standard import ExponentialBackoff

    # botocore still decides to retry and how often; only its backoff sleep (up to seconds) is skipped
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)
    injected = Faults()
    boto3.setup_default_session()  # a fresh default session: the functions' clients are created from it
    assert boto3.DEFAULT_SESSION is not None
    injected.install(boto3.DEFAULT_SESSION)
    yield injected
    injected.uninstall(boto3.DEFAULT_SESSION)
