"""The local stack's moto server (tools/local/moto_server.py): moto's answers unchanged by its speed-ups, and the
processor's side of the pipeline served after the receiver's."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import boto3
import pytest

from tools import REPO_ROOT
from tools.local import moto_server
from tools.local.stack import LOCAL_CREDENTIALS

# Run in a fresh interpreter, once with moto as shipped and once sped up: the speed-ups patch moto's classes for
# the rest of a process's life, which a pytest worker must not get.
SCENARIO = r"""
import json, sys
if sys.argv[1] == "sped-up":
    from tools.local.moto_server import speed_up_moto
    speed_up_moto()
import boto3
from moto import mock_aws

def outcome(call, **kwargs):
    try:
        result = call(**kwargs)
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc), "item": getattr(exc, "response", {}).get("Item")}
    result.pop("ResponseMetadata", None)
    return result

results = []
with mock_aws():
    db = boto3.client("dynamodb", region_name="eu-west-1")
    db.create_table(TableName="t", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    sets = ", ".join(f"#a{i} = :v{i}" for i in range(30))
    names = {f"#a{i}": f"field{i}" for i in range(30)}
    values = {f":v{i}": {"N": str(i)} for i in range(30)}
    updates = [
        (sets + " ADD #s :s", {**names, "#s": "tags"}, {**values, ":s": {"SS": ["x"]}}, "attribute_not_exists(k)"),
        (sets + " ADD #s :s", {**names, "#s": "tags"}, {**values, ":s": {"SS": ["y"]}}, "attribute_not_exists(k)"),
        (sets + " ADD #s :s", {**names, "#s": "tags"}, {**values, ":s": {"SS": ["y"]}}, "#a0 < :v1 AND #a1 = :v1"),
        ("SET l = list_append(if_not_exists(l, :e), :l), n = n + :one REMOVE #a0 DELETE tags :s",
         {"#a0": "field0"}, {":e": {"L": []}, ":l": {"L": [{"S": "q"}]}, ":one": {"N": "1"}, ":s": {"SS": ["x"]}},
         "attribute_exists(k) OR size(tags) > :one"),
        ("SET m = :m", None, {":m": {"M": {"a": {"L": [{"N": "1"}, {"N": "2"}]}}}}, None),
        ("SET m.a[1] = :one, m.b = :one", None, {":one": {"N": "1"}}, None),
        ("SET a = :one SET b = :one", None, {":one": {"N": "1"}}, None),
        ("SET a = :one, a = :one", None, {":one": {"N": "1"}}, None),
        ("SET #x = :one, #y = :one", {"#x": "dup", "#y": "dup"}, {":one": {"N": "1"}}, None),
        ("SET m.a = :one, m.a[0] = :one", None, {":one": {"N": "1"}}, None),
        ("SET k = :one", None, {":one": {"S": "z"}}, None),
        ("SET a = :missing", None, {":one": {"N": "1"}}, None),
        ("SET a = #missing", None, {":one": {"N": "1"}}, None),
        ("SET a = b + :one", None, {":one": {"N": "1"}}, None),
        ("SET a = = :one", None, {":one": {"N": "1"}}, None),
        ("ADD n :one, n :one", None, {":one": {"N": "1"}}, None),
    ]
    for expression, attribute_names, attribute_values, condition in updates:
        kwargs = {"TableName": "t", "Key": {"k": {"S": "one"}}, "UpdateExpression": expression,
                  "ExpressionAttributeValues": attribute_values, "ReturnValues": "ALL_NEW",
                  "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        if attribute_names:
            kwargs["ExpressionAttributeNames"] = attribute_names
        if condition:
            kwargs["ConditionExpression"] = condition
        results.append(outcome(db.update_item, **kwargs))
    puts = [
        ("attribute_not_exists(k)", None, None),
        ("attribute_not_exists(k)", None, None),
        ("attribute_not_exists(k) OR #e < :now", {"#e": "e"}, {":now": {"N": "9"}}),
        ("#e <", {"#e": "e"}, None),
        ("(k", None, None),
    ]
    for condition, attribute_names, attribute_values in puts:
        kwargs = {"TableName": "t", "Item": {"k": {"S": "p"}, "e": {"N": "5"}}, "ConditionExpression": condition}
        if attribute_names:
            kwargs["ExpressionAttributeNames"] = attribute_names
        if attribute_values:
            kwargs["ExpressionAttributeValues"] = attribute_values
        results.append(outcome(db.put_item, **kwargs))
    results.append(db.scan(TableName="t")["Items"])

    sqs = boto3.client("sqs", region_name="eu-west-1")
    url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    for n in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3)["Messages"]
    results.append(sorted(message["Body"] for message in received))
    handle = received[0]["ReceiptHandle"]
    for receipt in (handle, handle, "not-a-handle"):
        results.append(outcome(sqs.delete_message, QueueUrl=url, ReceiptHandle=receipt))
    # a message received twice: its first receipt handle still deletes it; a batch with one handle deleted before
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=received[1]["ReceiptHandle"], VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    results.append(sorted((m["Body"], m["Attributes"]["ApproximateReceiveCount"]) for m in again))
    results.append(outcome(sqs.delete_message, QueueUrl=url, ReceiptHandle=received[1]["ReceiptHandle"]))
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(again)]
    entries.append({"Id": "x", "ReceiptHandle": "no"})
    results.append(outcome(sqs.delete_message_batch, QueueUrl=url, Entries=entries))
    results.append(outcome(sqs.receive_message, QueueUrl=url, MaxNumberOfMessages=10))
    # redrive: received past maxReceiveCount, a message moves to the DLQ; its old handle no longer deletes it here
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    redriven = sqs.create_queue(QueueName="r", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    for n in range(3):
        sqs.send_message(QueueUrl=redriven, MessageBody=f"r{n}")
    handles = []
    for _ in range(3):
        batch = sqs.receive_message(QueueUrl=redriven, MaxNumberOfMessages=10, VisibilityTimeout=0)
        handles.append([m["ReceiptHandle"] for m in batch.get("Messages", [])])
        results.append(sorted(m["Body"] for m in batch.get("Messages", [])))
    results.append(outcome(sqs.delete_message, QueueUrl=redriven, ReceiptHandle=handles[0][0]))
    results.append(sorted(m["Body"] for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]))
    sqs.purge_queue(QueueUrl=url)
    results.append(outcome(sqs.delete_message, QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"]))
    def attributes(queue_url, names):
        return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]

    results.append(attributes(url, ["All"])["ApproximateNumberOfMessages"])
    counts = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "MessageRetentionPeriod"]
    results.append(attributes(url, counts))
    fifo = sqs.create_queue(QueueName="f.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    for _ in range(2):
        sqs.send_message(QueueUrl=fifo["QueueUrl"], MessageBody="same", MessageGroupId="g")
    results.append(attributes(fifo["QueueUrl"], ["All"])["ApproximateNumberOfMessages"])
print(json.dumps(results, sort_keys=True, default=str))
"""


def _scenario(variant: str) -> list[Any]:
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, variant],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": "eu-west-1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results: list[Any] = json.loads(done.stdout)
    return results


def test_moto_answers_the_same_with_the_speed_ups() -> None:
    shipped, sped_up = _scenario("shipped"), _scenario("sped-up")

    assert sped_up == shipped
    errors = [result["error"] for result in shipped if isinstance(result, dict) and "error" in result]
    assert errors.count("ClientError") >= 10  # the invalid expressions and failed conditions were exercised
    assert shipped[-1] == "1"  # content-based deduplication still applies on a FIFO queue


def _user_agent(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **client_args: Any) -> str:
    for name, value in {**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": "eu-west-1", **env}.items():
        monkeypatch.setenv(name, value)
    client = boto3.Session().client("sqs", endpoint_url="http://127.0.0.1:1", **client_args)
    seen: dict[str, str] = {}

    def capture(request: Any, **kwargs: Any) -> Any:
        agent = request.headers["User-Agent"]
        seen["agent"] = agent.decode() if isinstance(agent, bytes) else agent
        raise _Captured

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Captured):
        client.list_queues()
    return seen["agent"]


class _Captured(Exception):
    pass


def test_the_processors_calls_are_served_in_the_background_and_the_receivers_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botocore.config import Config

    from infra.config import StackConfig
    from tools.local.stack import _functions_env

    class Resources:
        def receiver_env(self, ttl_days: int) -> dict[str, str]:
            return {}

        def processor_env(self, ttl_days: int) -> dict[str, str]:
            return {}

    env = _functions_env(Resources(), StackConfig())  # type: ignore[arg-type]
    assert "AWS_SDK_UA_APP_ID" not in env["receiver"]
    processor = _user_agent({"AWS_SDK_UA_APP_ID": env["processor"]["AWS_SDK_UA_APP_ID"]}, monkeypatch)
    monkeypatch.delenv("AWS_SDK_UA_APP_ID")
    event_source = _user_agent(
        {}, monkeypatch, config=Config(user_agent_extra=f"app/{moto_server.EVENT_SOURCE_APP_ID}")
    )
    receiver = _user_agent({}, monkeypatch)

    assert moto_server.is_background({"HTTP_USER_AGENT": processor})
    assert moto_server.is_background({"HTTP_USER_AGENT": event_source})
    assert not moto_server.is_background({"HTTP_USER_AGENT": receiver})


def test_a_background_request_waits_for_the_urgent_ones_in_flight() -> None:
    scheduler = moto_server.Scheduler(background_wait=60)
    started = threading.Event()

    def background() -> None:
        with scheduler.request(background=True):
            started.set()

    with scheduler.request(background=False):
        thread = threading.Thread(target=background)
        thread.start()
        assert not started.wait(0.3)  # an urgent request is in flight: the background one has not started
    assert started.wait(10)  # the urgent one finished: it starts at once (not after the 60 s bound)
    thread.join()


def test_a_background_request_starts_after_the_bound_however_busy_the_receiver_is() -> None:
    scheduler = moto_server.Scheduler(background_wait=0.01)
    started = threading.Event()

    def background() -> None:
        with scheduler.request(background=True):
            started.set()

    with scheduler.request(background=False):
        threading.Thread(target=background).start()
        assert started.wait(10)


def test_dynamodb_requests_on_different_tables_run_side_by_side_and_on_one_table_one_at_a_time() -> None:
    locks = moto_server.TableLocks()
    inside = threading.Event()
    release = threading.Event()

    def hold(table: str | None) -> None:
        with locks.hold(table):
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold, args=("orders",))
    holder.start()
    assert inside.wait(10)
    other = threading.Event()

    def enter(table: str | None) -> None:
        with locks.hold(table):
            other.set()

    threading.Thread(target=enter, args=("idempotency",)).start()
    assert other.wait(10)  # another table: not held up by the processor's request on "orders"
    other.clear()
    same = threading.Thread(target=enter, args=("orders",))
    same.start()
    assert not other.wait(0.3)  # the same table: waits
    release.set()
    assert other.wait(10)
    holder.join()
    same.join()


def test_a_dynamodb_request_naming_no_single_table_runs_alone() -> None:
    locks = moto_server.TableLocks()
    release = threading.Event()
    inside = threading.Event()

    def hold() -> None:
        with locks.hold("orders"):
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    batch_started = threading.Event()

    def batch() -> None:
        with locks.hold(None):
            batch_started.set()

    threading.Thread(target=batch).start()
    assert not batch_started.wait(0.3)  # a batch (no single TableName) waits for every table to be free
    release.set()
    assert batch_started.wait(10)
    holder.join()


def test_the_tables_a_request_names_are_read_from_its_body_which_stays_readable() -> None:
    import io

    def named(body: bytes) -> frozenset[str]:
        return moto_server.tables_named({"wsgi.input": io.BytesIO(body)})

    environ = {"wsgi.input": io.BytesIO(b'{"TableName": "orders", "Key": {}}')}
    assert moto_server.tables_named(environ) == {"orders"}
    assert environ["wsgi.input"].read() == b'{"TableName": "orders", "Key": {}}'
    assert named(b'{"RequestItems": {"a": {}, "b": {}}}') == {"a", "b"}
    assert named(b'{"TransactItems": [{"Put": {"TableName": "a"}}, {"Update": {"TableName": "b"}}]}') == {"a", "b"}
    assert named(b"{}") == named(b"not json") == named(b"[1]") == frozenset()


def test_a_request_goes_to_the_moto_that_holds_its_tables() -> None:
    stack_moto = moto_server.Forwarder("http://127.0.0.1:1", frozenset({"orders", "effects"}))
    processor_moto = moto_server.Forwarder("http://127.0.0.1:2", frozenset({"orders", "effects"}), listed_here=True)

    assert stack_moto.sends(frozenset({"orders"})) is True
    assert stack_moto.sends(frozenset({"orders", "effects"})) is True
    assert stack_moto.sends(frozenset({"idempotency"})) is False
    assert stack_moto.sends(frozenset()) is False  # ListTables and the like: the stack's moto answers
    assert stack_moto.sends(frozenset({"orders", "idempotency"})) is None
    assert processor_moto.sends(frozenset({"orders"})) is False
    assert processor_moto.sends(frozenset({"a-users-table"})) is True
    assert processor_moto.sends(frozenset()) is True
    assert processor_moto.sends(frozenset({"orders", "a-users-table"})) is None


def test_every_table_is_reachable_through_either_moto_and_held_by_one() -> None:
    from tools.local.moto_process import MotoProcess

    processor_tables = MotoProcess("127.0.0.1")
    stack = MotoProcess("127.0.0.1", options=("--tables-at", processor_tables.endpoint, "--table", "orders"))
    processor_tables.options = ("--other-tables-at", stack.endpoint, "--table", "orders")
    processor_tables.start()
    stack.start()
    try:
        via_stack, via_processor = (_dynamodb(moto.endpoint) for moto in (stack, processor_tables))
        for name in ("orders", "idempotency"):
            via_stack.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        via_processor.put_item(TableName="idempotency", Item={"k": {"S": "event-1"}})
        via_processor.put_item(TableName="orders", Item={"k": {"S": "7821"}})
        held_by_processor_moto = _held(processor_tables.endpoint)

        assert via_stack.get_item(TableName="idempotency", Key={"k": {"S": "event-1"}})["Item"]
        assert via_stack.get_item(TableName="orders", Key={"k": {"S": "7821"}})["Item"]
        assert via_stack.list_tables()["TableNames"] == ["idempotency"]  # the stack's own: one moto answers it
        assert held_by_processor_moto == {"orders"}
        with pytest.raises(via_stack.exceptions.ClientError, match="cannot name them together"):
            via_stack.batch_get_item(
                RequestItems={name: {"Keys": [{"k": {"S": "x"}}]} for name in ("orders", "idempotency")}
            )
    finally:
        stack.stop()
        processor_tables.stop()


def _dynamodb(endpoint: str) -> Any:
    session = boto3.Session(
        region_name="eu-west-1",
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    return session.client("dynamodb", endpoint_url=endpoint)


def _held(endpoint: str) -> set[str]:
    """The tables a moto server itself holds, from its own state dump (not forwarded)."""
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(endpoint)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=10)
    connection.request("GET", "/moto-api/data.json")
    data = json.loads(connection.getresponse().read())
    connection.close()
    return {table["name"] for table in data.get("dynamodb", {}).get("Table", [])}
