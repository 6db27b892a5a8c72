"""The CLI against a deployed stack (`--stack NAME`): it finds everything through the stack's outputs.

In-process moto plays the account: a CloudFormation stack whose outputs name the resources `aws` created.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import boto3
import pytest

from infra import spec
from klikit.signature import matches_any
from tests.conftest import SECRET
from tools.cli import main
from tools.local.resources import LOCAL_REGION, LocalResources

STACK = "KlikitWebhooksTest"


def _deploy_outputs(resources: LocalResources, **extra: str) -> None:
    outputs = {
        spec.OUTPUT_WEBHOOK_URL: "https://example.execute-api.us-east-1.amazonaws.com/prod/webhooks/klikit",
        spec.OUTPUT_QUEUE_URL: resources.queue_url,
        spec.OUTPUT_DLQ_URL: resources.dlq_url,
        spec.OUTPUT_ORDERS_TABLE: resources.orders_table,
        spec.OUTPUT_BUCKET: resources.bucket,
        spec.OUTPUT_SECRET_ARN: resources.secret_id,
        **extra,
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=LOCAL_REGION).create_stack(
        StackName=STACK, TemplateBody=json.dumps(template)
    )


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--stack", STACK, "--region", LOCAL_REGION])
    return code, out.getvalue(), err.getvalue()


def test_orders_get_reads_the_table_named_in_the_stack_outputs(aws: LocalResources) -> None:
    _deploy_outputs(aws)
    boto3.client("dynamodb", region_name=LOCAL_REGION).put_item(
        TableName=aws.orders_table, Item={"order_id": {"S": "7821"}, "status": {"N": "5"}}
    )

    code, out, _ = run("orders", "get", "7821")

    assert code == 0
    assert json.loads(out) == {"order_id": "7821", "status": 5}


def test_dlq_list_reads_the_queue_named_in_the_stack_outputs(aws: LocalResources) -> None:
    _deploy_outputs(aws)

    code, out, _ = run("dlq", "list")

    assert code == 0
    assert f"the DLQ of stack {STACK} is empty" in out


def test_logs_come_from_the_log_groups_in_the_stack_outputs(aws: LocalResources) -> None:
    logs = boto3.client("logs", region_name=LOCAL_REGION)
    for group in ("/aws/lambda/klikit-receiver", "/aws/lambda/klikit-processor"):
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="s")
        logs.put_log_events(
            logGroupName=group,
            logStreamName="s",
            logEvents=[{"timestamp": int(time.time() * 1000), "message": f'{{"message":"hello from {group}"}}'}],
        )
    _deploy_outputs(
        aws,
        **{
            spec.OUTPUT_RECEIVER_LOG_GROUP: "/aws/lambda/klikit-receiver",
            spec.OUTPUT_PROCESSOR_LOG_GROUP: "/aws/lambda/klikit-processor",
        },
    )

    code, out, _ = run("logs", "--function", "processor", "--since", "5m")

    assert code == 0
    assert "hello from /aws/lambda/klikit-processor" in out
    assert "klikit-receiver" not in out


def test_a_missing_stack_says_how_to_deploy_it(aws: LocalResources) -> None:
    code, _, err = run("orders", "get", "1")

    assert code == 3
    assert f"stack {STACK} does not exist" in err
    assert "make deploy" in err


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, dict(self.headers.items()), body))
        reply = b'{"status":"received"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def deployed_endpoint() -> Iterator[str]:
    """Stands in for the deployed API Gateway URL: records what the CLI sent."""
    _Recorder.seen = []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/prod/webhooks/klikit"
    finally:
        server.shutdown()
        server.server_close()


def test_send_posts_to_the_stacks_url_signed_with_the_stacks_secret(
    aws: LocalResources, deployed_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KLIKIT_WEBHOOK_SECRET", raising=False)
    _deploy_outputs(aws, **{spec.OUTPUT_WEBHOOK_URL: deployed_endpoint})

    code, out, _ = run("send", "status", "--event-id", "evt-deployed")

    assert code == 0
    [(path, headers, body)] = _Recorder.seen
    assert path == "/prod/webhooks/klikit"
    assert headers["x-klikit-event-id"] == "evt-deployed"
    assert matches_any(headers["x-klikit-signature"], body, [SECRET])
    assert "./klikit orders get 7821 --stack KlikitWebhooksTest" in out
