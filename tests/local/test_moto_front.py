"""The local moto server's HTTP front (tools/local/moto_front.py): the answers of moto's own server, over connections
kept open, to many clients at once."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from tools import REPO_ROOT
from tools.local.moto_process import MotoProcess
from tools.local.stack import LOCAL_CREDENTIALS

pytestmark = pytest.mark.xdist_group("moto-front")

REGION = "eu-west-1"
# What differs between two runs of the same calls, whichever server: generated ids, hashes of them, times.
VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # ids
    r"|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?"  # times
    r"|-[A-Za-z0-9]{6}(?=\")"  # a secret's ARN suffix
    r"|\b\d{10}(\.\d+)?\b"  # epoch seconds
    r"|\b[0-9a-f]{32}\b"  # MD5s of generated ids
)


@contextlib.contextmanager
def _server(command: list[str], port: int) -> Iterator[str]:
    server = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def front() -> Iterator[str]:
    moto = MotoProcess("127.0.0.1")
    moto.start()
    try:
        yield moto.endpoint
    finally:
        moto.stop()


def _client(service: str, endpoint: str, connections: int = 10) -> Any:
    session = boto3.Session(
        region_name=REGION,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"],
    )
    config = Config(retries={"max_attempts": 1}, max_pool_connections=connections)
    return session.client(service, endpoint_url=endpoint, config=config)  # type: ignore[call-overload]


def _outcome(call: Any, **kwargs: Any) -> Any:
    try:
        result = call(**kwargs)
    except Exception as exc:  # the error is the outcome compared
        response = getattr(exc, "response", {})
        return {
            "error": type(exc).__name__,
            "code": response.get("Error", {}).get("Code"),
            "status": response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            "message": response.get("Error", {}).get("Message"),
            "item": response.get("Item"),
        }
    status = result.pop("ResponseMetadata", {}).get("HTTPStatusCode")
    body = result.pop("Body", None)
    return {"status": status, **result, **({"body": body.read().decode()} if body is not None else {})}


def _scenario(endpoint: str) -> list[Any]:
    """The delivery path's calls (the short lane) and S3's (moto's app), successes and errors alike."""
    db, sqs, secrets, s3 = (_client(name, endpoint) for name in ("dynamodb", "sqs", "secretsmanager", "s3"))
    results = []
    key = [{"AttributeName": "k", "KeyType": "HASH"}]
    results.append(
        _outcome(
            db.create_table,
            TableName="t",
            KeySchema=key,
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    )
    claim = {
        "TableName": "t",
        "Item": {"k": {"S": "event-1"}, "status": {"S": "INPROGRESS"}},
        "ConditionExpression": "attribute_not_exists(k)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    results.append(_outcome(db.put_item, **claim))
    results.append(_outcome(db.put_item, **claim))  # ConditionalCheckFailedException, with the stored item
    results.append(
        _outcome(
            db.update_item,
            TableName="t",
            Key={"k": {"S": "event-1"}},
            UpdateExpression="SET #s = :s ADD n :one",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "COMPLETED"}, ":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        )
    )
    results.append(_outcome(db.update_item, TableName="t", Key={"k": {"S": "x"}}, UpdateExpression="SET a = :nope"))
    results.append(_outcome(db.get_item, TableName="t", Key={"k": {"S": "event-1"}}, ConsistentRead=True))
    results.append(_outcome(db.get_item, TableName="missing", Key={"k": {"S": "event-1"}}))
    results.append(_outcome(db.describe_table, TableName="t")["Table"]["KeySchema"])
    queue = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    results.append(urlsplit(queue).path)
    results.append(
        _outcome(
            sqs.send_message,
            QueueUrl=queue,
            MessageBody="é" * 3000,
            MessageAttributes={"event_type": {"DataType": "String", "StringValue": "klikit.order.created.v2"}},
        )
    )
    received = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"], AttributeNames=["All"])
    message = received["Messages"][0]
    results.append([message["Body"], message["MessageAttributes"], message["Attributes"]["ApproximateReceiveCount"]])
    results.append(_outcome(sqs.delete_message, QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"]))
    results.append(_outcome(sqs.delete_message, QueueUrl=queue, ReceiptHandle="not-a-handle"))
    results.append(_outcome(sqs.get_queue_attributes, QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"]))
    results.append(_outcome(sqs.get_queue_url, QueueName="missing"))
    results.append(_outcome(secrets.create_secret, Name="webhook", SecretString="s3cr3t")["Name"])
    results.append(_outcome(secrets.get_secret_value, SecretId="webhook")["SecretString"])
    results.append(_outcome(secrets.get_secret_value, SecretId="missing"))
    bucket = {"Bucket": "archive", "CreateBucketConfiguration": {"LocationConstraint": REGION}}
    results.append(_outcome(s3.create_bucket, **bucket))
    body = io.BytesIO(b"x" * 70_000)  # a file-like body: botocore asks "Expect: 100-continue"
    results.append(_outcome(s3.put_object, Bucket="archive", Key="a/b c.json", Body=body, Metadata={"my_key": "v"}))
    results.append(_outcome(s3.head_object, Bucket="archive", Key="a/b c.json")["ContentLength"])
    stored = _outcome(s3.get_object, Bucket="archive", Key="a/b c.json")
    results.append([len(stored["body"]), stored["Metadata"]])
    results.append(_outcome(s3.get_object, Bucket="archive", Key="missing"))
    results.append([o["Key"] for o in s3.list_objects_v2(Bucket="archive", Prefix="a/")["Contents"]])
    return json.loads(VOLATILE.sub("<volatile>", json.dumps(results, sort_keys=True, default=str)))


def test_the_front_answers_what_motos_own_server_answers(front: str) -> None:
    port = _free_port()
    with _server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port) as moto:
        shipped = _scenario(moto)
    ours = _scenario(front)

    assert ours == shipped
    codes = [result.get("code") for result in ours if isinstance(result, dict)]
    assert codes.count("ConditionalCheckFailedException") == 1
    assert {"ResourceNotFoundException", "ValidationException", "NoSuchKey"} <= set(codes)
    assert ours[2]["item"] == {"k": {"S": "event-1"}, "status": {"S": "INPROGRESS"}}


def _raw(endpoint: str) -> socket.socket:
    parts = urlsplit(endpoint)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10)


def _read_answers(connection: socket.socket, count: int) -> list[tuple[int, bytes]]:
    reader = connection.makefile("rb")
    answers = []
    for _ in range(count):
        status = int(reader.readline().split()[1])
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        answers.append((status, reader.read(length)))
    return answers


def test_requests_on_one_connection_each_get_their_answer(front: str) -> None:
    request = b"GET /moto-api/data.json HTTP/1.1\r\nHost: x\r\n\r\n"
    with _raw(front) as connection:
        connection.sendall(request * 3)  # pipelined: each answer must end exactly where the next begins
        answers = _read_answers(connection, 3)

    assert [status for status, _ in answers] == [200, 200, 200]
    assert all(json.loads(body) == json.loads(answers[0][1]) for _, body in answers)


def test_a_chunked_body_is_stored_whole(front: str) -> None:
    s3 = _client("s3", front)
    s3.create_bucket(Bucket="chunked", CreateBucketConfiguration={"LocationConstraint": REGION})
    chunks = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    head = b"PUT /chunked/greeting HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with _raw(front) as connection:
        connection.sendall(head + chunks + b"GET /moto-api/data.json HTTP/1.1\r\nHost: x\r\n\r\n")
        (put_status, _), (next_status, _) = _read_answers(connection, 2)

    assert (put_status, next_status) == (200, 200)
    assert s3.get_object(Bucket="chunked", Key="greeting")["Body"].read() == b"hello, world"


def test_a_malformed_request_gets_400_and_the_connection_is_closed(front: str) -> None:
    with _raw(front) as connection:
        connection.sendall(b"NONSENSE\r\n\r\n")
        ((status, body),) = _read_answers(connection, 1)
        assert connection.recv(1) == b""

    assert status == 400
    assert b"malformed request line" in body


def test_many_clients_at_once_each_get_an_answer(front: str) -> None:
    db = _client("dynamodb", front)
    db.create_table(
        TableName="burst",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    client = _client("dynamodb", front, connections=100)  # up to 100 connections at once

    def claim(number: int) -> str:
        try:
            client.put_item(
                TableName="burst", Item={"k": {"S": str(number % 50)}}, ConditionExpression="attribute_not_exists(k)"
            )
        except client.exceptions.ConditionalCheckFailedException:
            return "taken"
        return "claimed"

    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        outcomes = list(pool.map(claim, range(200)))

    assert outcomes.count("claimed") == 50  # each key claimed exactly once, however many raced for it
    assert outcomes.count("taken") == 150
