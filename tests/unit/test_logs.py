"""`klikit logs` against CloudWatch Logs (moto): merged, labelled, since/filter/function selection, follow."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tools import logs
from tools.local.resources import LOCAL_REGION

RECEIVER_GROUP = "KlikitWebhooks-IntakeReceiverLogGroup8CDEC41C-AbC123"
PROCESSOR_GROUP = "KlikitWebhooks-ProcessingProcessorLogGroupDFE1D81D-XyZ789"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def cloudwatch() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("logs", region_name=LOCAL_REGION)
        for group in (RECEIVER_GROUP, PROCESSOR_GROUP):
            client.create_log_group(logGroupName=group)
            client.create_log_stream(logGroupName=group, logStreamName="2026/01/01/[$LATEST]abc")
        yield client


def put(client: Any, group: str, minutes_ago: float, message: str) -> None:
    timestamp = int((NOW - timedelta(minutes=minutes_ago)).timestamp() * 1000)
    client.put_log_events(
        logGroupName=group,
        logStreamName="2026/01/01/[$LATEST]abc",
        logEvents=[{"timestamp": timestamp, "message": message + "\n"}],
    )


def run(client: Any, groups: Any = (RECEIVER_GROUP, PROCESSOR_GROUP), **kwargs: Any) -> list[str]:
    lines: list[str] = []
    code = logs.tail(list(groups), client=client, out=lines.append, now=lambda: NOW, **kwargs)
    assert code == 0
    return lines


def test_both_functions_lines_are_merged_in_time_order_and_labelled(cloudwatch: Any) -> None:
    put(cloudwatch, PROCESSOR_GROUP, 2, '{"message": "processed", "event_id": "evt-1"}')
    put(cloudwatch, RECEIVER_GROUP, 3, '{"message": "enqueued", "event_id": "evt-1"}')
    put(cloudwatch, RECEIVER_GROUP, 1, '{"message": "duplicate", "event_id": "evt-1"}')

    lines = run(cloudwatch)

    assert [line.split(" ", 2)[1:] for line in lines] == [
        ["receiver", '{"message": "enqueued", "event_id": "evt-1"}'],
        ["processor", '{"message": "processed", "event_id": "evt-1"}'],
        ["receiver", '{"message": "duplicate", "event_id": "evt-1"}'],
    ]
    expected_time = (NOW - timedelta(minutes=3)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert lines[0].startswith(expected_time + " ")


def test_since_skips_older_lines_and_defaults_to_ten_minutes(cloudwatch: Any) -> None:
    put(cloudwatch, RECEIVER_GROUP, 30, "half an hour ago")
    put(cloudwatch, RECEIVER_GROUP, 5, "five minutes ago")

    assert [line.split(" ", 2)[2] for line in run(cloudwatch)] == ["five minutes ago"]
    assert [line.split(" ", 2)[2] for line in run(cloudwatch, since=NOW - timedelta(hours=1))] == [
        "half an hour ago",
        "five minutes ago",
    ]


def test_filter_pattern_keeps_only_matching_lines(cloudwatch: Any) -> None:
    put(cloudwatch, RECEIVER_GROUP, 2, "enqueued evt-1")
    put(cloudwatch, PROCESSOR_GROUP, 1, "processed evt-2")

    lines = run(cloudwatch, filter_pattern="evt-2")

    assert [line.split(" ", 1)[1] for line in lines] == ["processor processed evt-2"]


def test_one_function_can_be_selected(cloudwatch: Any) -> None:
    put(cloudwatch, RECEIVER_GROUP, 2, "from the receiver")
    put(cloudwatch, PROCESSOR_GROUP, 1, "from the processor")

    lines = run(cloudwatch, groups=[PROCESSOR_GROUP])

    assert [line.split(" ", 1)[1] for line in lines] == ["processor from the processor"]


def test_labels_can_be_given_with_the_groups(cloudwatch: Any) -> None:
    put(cloudwatch, RECEIVER_GROUP, 1, "hello")
    lines: list[str] = []
    logs.tail({"intake": RECEIVER_GROUP}, client=cloudwatch, out=lines.append, now=lambda: NOW)
    assert [line.split(" ", 1)[1] for line in lines] == ["intake hello"]


def test_follow_prints_new_lines_once_until_interrupted(cloudwatch: Any) -> None:
    put(cloudwatch, RECEIVER_GROUP, 2, "before")
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            put(cloudwatch, PROCESSOR_GROUP, 0.5, "while following")
        elif len(polls) == 3:
            raise KeyboardInterrupt  # Ctrl-C

    lines = run(cloudwatch, follow=True, sleep=sleep, poll_seconds=0.25)

    assert [line.split(" ", 1)[1] for line in lines] == ["receiver before", "processor while following"]
    assert polls == [0.25, 0.25, 0.25]


def test_nothing_to_show_says_so(cloudwatch: Any) -> None:
    lines = run(cloudwatch, filter_pattern="evt-404")
    assert len(lines) == 1
    assert lines[0].startswith("(no log events matching 'evt-404'")


def test_missing_log_group_is_an_aws_error_the_cli_reports(cloudwatch: Any) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        run(cloudwatch, groups=["KlikitWebhooks-Gone"])
