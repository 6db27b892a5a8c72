"""`klikit replay --since/--until` against a deployed stack on moto: the archive's day prefixes listed and filtered
on received-at, each delivery signed with the stack's secret and POSTed, resumable, with a summary."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar
from urllib.parse import quote

import boto3
import pytest

from infra import spec
from klikit.archive import ArchiveRecord, batch_key, encode, group_by_minute
from klikit.signature import matches_any
from tests.conftest import SECRET
from tests.local.test_deployed_target import _deploy_outputs, run
from tools import replay, sender
from tools.local.resources import LOCAL_REGION, LocalResources

NOW = datetime.now(UTC).replace(microsecond=0)


class _Receiver(BaseHTTPRequestHandler):
    """Stands in for the deployed API: answers like the receiver (received, then duplicate-ignored; 503 on cue)."""

    seen: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    failing: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        event_id = self.headers["x-klikit-event-id"]
        first = all(headers["x-klikit-event-id"] != event_id for headers, _ in self.seen)
        self.seen.append((dict(self.headers.items()), body))
        if event_id in self.failing:
            status, reply = 503, {"error": "temporarily unavailable"}
        else:
            status, reply = 200, {"status": "received" if first else "duplicate-ignored"}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def front_door(
    aws: LocalResources, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    _Receiver.seen, _Receiver.failing = [], set()
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/prod/webhooks/klikit"
    monkeypatch.delenv("KLIKIT_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("KLIKIT_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    _deploy_outputs(aws, **{spec.OUTPUT_WEBHOOK_URL: url})
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def _body(branch: int) -> bytes:
    return json.dumps({"brand_id": 663, "branch_id": branch, "orders": [{"id": 7821}]}).encode()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def archive(
    resources: LocalResources, event_id: str, received_at: datetime, event_type: str, branch: int = 1062
) -> bytes:
    """A delivery as the processor archives it now: in a batch object of its received minute (klikit.archive)."""
    body = _body(branch)
    archive_batch(resources, [(event_id, received_at, event_type, body)])
    return body


def archive_batch(resources: LocalResources, deliveries: list[tuple[str, datetime, str, bytes]]) -> list[str]:
    """Several deliveries archived by one processor batch: one object per received minute."""
    records = [
        ArchiveRecord(event_id, event_type, _iso(received), hashlib.sha256(body).hexdigest(), "klikit", body)
        for event_id, received, event_type, body in deliveries
    ]
    keys = []
    for group in group_by_minute(records):
        keys.append(batch_key(group))
        boto3.client("s3", region_name=LOCAL_REGION).put_object(
            Bucket=resources.bucket, Key=keys[-1], Body=encode(group)
        )
    return keys


def archive_single(resources: LocalResources, event_id: str, received_at: datetime, event_type: str) -> bytes:
    """A delivery as the processor archived it before batch objects: archive/<day>/<quoted id>, metadata alongside."""
    body = _body(1062)
    boto3.client("s3", region_name=LOCAL_REGION).put_object(
        Bucket=resources.bucket,
        Key=f"archive/{received_at.date().isoformat()}/{quote(event_id, safe='')}",
        Body=body,
        Metadata={
            "event-id": quote(event_id, safe=""),
            "event-type": quote(event_type, safe=""),
            "received-at": _iso(received_at),
            "body-sha256": hashlib.sha256(body).hexdigest(),
        },
    )
    return body


def window(hours_before: float, hours_after: float = 0) -> list[str]:
    return [
        "--since",
        (NOW - timedelta(hours=hours_before)).isoformat(),
        "--until",
        (NOW - timedelta(hours=hours_after)).isoformat(),
    ]


def sent_ids() -> list[str]:
    return [headers["x-klikit-event-id"] for headers, _ in _Receiver.seen]


@pytest.fixture
def outage(aws: LocalResources) -> LocalResources:
    """Four deliveries across midnight (UTC days) and one outside the window; one from before batch objects."""
    archive(aws, "evt-before", NOW - timedelta(hours=30), "klikit.order.created.v2")
    archive_single(aws, "evt-1", NOW - timedelta(hours=26), "klikit.order.created.v2")
    archive(aws, "evt-2", NOW - timedelta(hours=3), "klikit.order.status.updated", branch=7)
    archive(aws, "evt 3/ü", NOW - timedelta(hours=2), "klikit.order.created.v2")
    archive(aws, f"evt-1{replay.REPLAY_MARK}0a1b2c3d", NOW - timedelta(hours=2), "klikit.order.created.v2")
    return aws


def test_a_window_is_replayed_in_order_signed_and_marked(front_door: str, outage: LocalResources) -> None:
    code, out, err = run("replay", *window(27, 1))

    assert code == 0, err
    assert sent_ids() == ["evt-1", "evt-2", "evt 3/ü"]
    for headers, body in _Receiver.seen:
        assert matches_any(headers["x-klikit-signature"], body, [SECRET])
        assert headers["x-klikit-replay"] == sender.USER_AGENT
    assert "replaying 3 archived deliveries received between" in out
    assert "(left out 1 that were themselves replays)" in out
    assert "[2/3]" in out and "evt evt-2  status.updated  -> 200" in out
    assert out.splitlines()[-1] == "replayed 3: 3 sent, 0 duplicate, 0 failed"


def test_the_same_window_again_is_all_duplicates(front_door: str, outage: LocalResources) -> None:
    run("replay", *window(27, 1))

    code, out, _ = run("replay", *window(27, 1))

    assert code == 0
    assert out.splitlines()[-1] == "replayed 3: 0 sent, 3 duplicate, 0 failed"


def test_type_and_branch_narrow_the_window(front_door: str, outage: LocalResources) -> None:
    by_type = run("replay", *window(27, 1), "--type", "created")
    assert sent_ids() == ["evt-1", "evt 3/ü"]
    assert by_type[1].splitlines()[-1] == "replayed 2: 2 sent, 0 duplicate, 0 failed"

    _Receiver.seen = []
    by_branch = run("replay", *window(27, 1), "--branch", "7")
    assert sent_ids() == ["evt-2"]
    assert by_branch[1].splitlines()[-1] == "replayed 3: 1 sent, 0 duplicate, 0 failed, 2 of other branches skipped"


def test_a_window_reads_the_deliveries_of_a_batch_object_inside_it_and_each_event_id_once(
    front_door: str, aws: LocalResources
) -> None:
    minute = (NOW - timedelta(hours=1)).replace(second=0)
    created, status = "klikit.order.created.v2", "klikit.order.status.updated"
    archive_batch(
        aws,
        [
            ("evt-a", minute + timedelta(seconds=5), created, _body(1)),
            ("evt-b", minute + timedelta(seconds=20), status, _body(2)),
            ("evt-late", minute + timedelta(seconds=50), status, _body(3)),  # after --until
        ],
    )
    archive_batch(aws, [("evt-b", minute + timedelta(seconds=20), status, _body(2))])  # retried alone: again

    code, out, err = run(
        "replay",
        "--since",
        (minute - timedelta(minutes=5)).isoformat(),
        "--until",
        (minute + timedelta(seconds=30)).isoformat(),
    )

    assert code == 0, err
    assert sent_ids() == ["evt-a", "evt-b"]
    assert [body for _, body in _Receiver.seen] == [_body(1), _body(2)]
    assert out.splitlines()[-1] == "replayed 2: 2 sent, 0 duplicate, 0 failed"


def test_ids_too_long_for_a_key_are_read_from_the_metadata(front_door: str, aws: LocalResources) -> None:
    """Over 512 bytes quoted, the key holds a hash and the id travels in metadata, base64 when quoting is too big."""
    long_id = "é" * 256
    body = json.dumps({"branch_id": 1, "orders": []}).encode()
    received = NOW - timedelta(hours=1)
    boto3.client("s3", region_name=LOCAL_REGION).put_object(
        Bucket=aws.bucket,
        Key=f"archive/{received.date().isoformat()}/sha256-{hashlib.sha256(long_id.encode()).hexdigest()}",
        Body=body,
        Metadata={
            "event-id-base64": base64.urlsafe_b64encode(long_id.encode()).decode(),
            "event-type": "klikit.order.status.updated",
            "received-at": received.isoformat().replace("+00:00", "Z"),
            "body-sha256": hashlib.sha256(body).hexdigest(),
        },
    )

    code, _, err = run("replay", *window(2))

    assert code == 0, err
    [(headers, sent)] = _Receiver.seen
    assert sent == body
    assert headers["x-klikit-event-type"] == "klikit.order.status.updated"


def test_deliveries_archived_before_the_day_folders_are_found_too(front_door: str, aws: LocalResources) -> None:
    received = NOW - timedelta(hours=1)
    boto3.client("s3", region_name=LOCAL_REGION).put_object(
        Bucket=aws.bucket,
        Key="archive/evt-flat",
        Body=b"{}",
        Metadata={"event-type": "klikit.order.cart.updated", "received-at": received.isoformat()},
    )

    code, _, err = run("replay", *window(2))

    assert code == 0, err
    assert sent_ids() == ["evt-flat"]


def test_dry_run_lists_and_sends_nothing(front_door: str, outage: LocalResources) -> None:
    code, out, _ = run("replay", *window(27, 1), "--dry-run")

    assert code == 0
    assert _Receiver.seen == []
    assert "would replay 3 archived deliveries" in out
    assert out.splitlines()[-1] == "dry run: 3 would be sent, 0 of other branches; nothing was sent"


def test_as_new_gives_each_delivery_the_same_new_id_on_every_run(front_door: str, outage: LocalResources) -> None:
    run("replay", *window(27, 1), "--as-new")
    first = sent_ids()
    _, out, _ = run("replay", *window(27, 1), "--as-new")

    assert first == [replay.replay_id(event_id) for event_id in ("evt-1", "evt-2", "evt 3/ü")]
    assert all(replay.is_replay(event_id) for event_id in first)
    assert out.splitlines()[-1] == "replayed 3: 0 sent, 3 duplicate, 0 failed"


def test_ctrl_c_then_the_same_command_resumes_where_it_stopped(
    front_door: str, outage: LocalResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_send = sender.send
    calls = []

    def interrupted_on_the_second(*args: Any, **kwargs: Any) -> sender.Reply:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_send(*args, **kwargs)

    monkeypatch.setattr(sender, "send", interrupted_on_the_second)
    code, out, _ = run("replay", *window(27, 1))
    assert code == 130
    assert out.splitlines()[-1] == "interrupted at 2 of 3: run the same command again to resume"
    monkeypatch.setattr(sender, "send", real_send)

    code, out, _ = run("replay", *window(27, 1))

    assert code == 0
    assert sent_ids() == ["evt-1", "evt-2", "evt 3/ü"]  # evt-1 once: the resumed run skipped it
    assert "resuming an interrupted run: 1 already done" in out
    assert out.splitlines()[-1] == "replayed 3: 3 sent, 0 duplicate, 0 failed"


def test_failures_are_counted_and_only_they_are_sent_again(front_door: str, outage: LocalResources) -> None:
    _Receiver.failing = {"evt-2"}
    code, out, _ = run("replay", *window(27, 1))
    assert code == 1
    assert "replayed 3: 2 sent, 0 duplicate, 1 failed" in out

    _Receiver.failing, _Receiver.seen = set(), []
    code, out, _ = run("replay", *window(27, 1))

    assert code == 0
    assert sent_ids() == ["evt-2"]
    assert out.splitlines()[-1] == "replayed 3: 3 sent, 0 duplicate, 0 failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "1h"], "no archived deliveries received between"),
        (["--since", "tuesday"], "--since: not a time: 'tuesday'"),
        (["--since", "1h", "--until", "2h"], "empty window"),
        (["--since", "1h", "--rate", "0"], "--rate must be above 0"),
        (["evt-1", "--since", "1h"], "not both"),
        (["evt-1", "--dry-run"], "go with a window"),
    ],
)
def test_bad_windows_get_one_line_and_exit_1(
    front_door: str, outage: LocalResources, args: list[str], message: str
) -> None:
    code, _, err = run("replay", *args)

    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_the_pacer_spaces_sends_by_the_rate_on_a_schedule() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        now[0] += seconds

    pacer = replay.Pacer(4, clock=lambda: now[0], sleep=sleep)
    pacer.wait()  # the first goes at once
    now[0] += 0.05  # a send that took 50 ms
    pacer.wait()
    now[0] += 0.5  # a send slower than the interval: no extra wait
    pacer.wait()

    assert slept == [0.2]


def test_day_prefixes_cover_every_utc_day_of_the_window() -> None:
    since = datetime(2026, 6, 24, 22, 0, tzinfo=UTC)
    until = datetime(2026, 6, 26, 1, 0, tzinfo=UTC)

    assert replay.day_prefixes(since, until) == ["archive/2026-06-24/", "archive/2026-06-25/", "archive/2026-06-26/"]
