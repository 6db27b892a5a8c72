"""Hostile input: whatever reaches the receiver through API Gateway, the reply is JSON, a client's fault is never a
5xx, nothing is written or queued without a valid signature, and no log line carries a secret, signature or
customer datum (checked by the `log_sink` fixture on every line).

`make test` runs a bounded sample; `make fuzz` sets KLIKIT_FUZZ_EXAMPLES=100000. Each case is generated with its
intent (which header is missing, which signature is forged, which base64 flag lies), and the expected reply is
derived from that intent in the receiver's documented order: body encoding, headers, size, signature.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klikit.delivery import queued_delivery, read_body
from klikit.events import KNOWN_EVENT_TYPES
from klikit.headers import EVENT_ID, EVENT_TYPE, SIGNATURE
from klikit.signature import sign
from tests.conftest import OLD_SECRET, SECRET, load_fixture
from tests.conftest import api_event as klikit_event
from tests.reliability.conftest import FUZZ_EXAMPLES, Faults, Pipeline, leaks, record_stats

MAX_BODY_BYTES = 16 * 1024  # lowered for the fuzz run so "too large" costs kilobytes, not megabytes
FIXTURES = [load_fixture(name) for name in ("order_created_v2_batch.json", "order_status_updated.json")]

# --- bodies -----------------------------------------------------------------------------------------------

json_bodies = st.one_of(
    st.sampled_from(FIXTURES),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    ).map(lambda value: json.dumps(value).encode()),
)
bodies = st.one_of(
    json_bodies,
    st.just(b""),
    st.binary(max_size=300),  # not UTF-8: travels base64
    st.text(max_size=200).map(lambda text: text.encode("utf-8")),  # any Unicode, control characters included
    st.integers(1, 20_000).map(lambda depth: b"[" * depth + b"]" * depth),  # deeply nested
    st.integers(MAX_BODY_BYTES + 1, MAX_BODY_BYTES * 3).map(lambda size: b"x" * size),  # too large
    st.integers(MAX_BODY_BYTES - 64, MAX_BODY_BYTES).map(lambda size: b"y" * size),  # just fits
)

# --- header values ----------------------------------------------------------------------------------------

non_ascii = st.text(st.characters(min_codepoint=0x80, max_codepoint=0x2FFFF), min_size=1, max_size=40)
anything = st.text(max_size=60)


@dataclass
class Case:
    event: dict[str, Any]
    body: bytes  # what the receiver will see after decoding
    expected: int
    valid_signature: bool


def _expected(body_decodes: bool, headers: dict[str, list[str]], body: bytes, signature_ok: bool) -> int:
    """The receiver's contract, in its order: body encoding, missing, invalid headers, size, signature."""
    if not body_decodes:
        return 400
    chosen: dict[str, str] = {}
    for name in (SIGNATURE, EVENT_ID, EVENT_TYPE):
        values = {v for v in headers.get(name, []) if v.strip()}
        if not values:
            return 400
        chosen[name] = next(iter(values)) if len(values) == 1 else ""
    if any(not chosen[name] for name in chosen):
        return 400
    for name, limit in ((EVENT_ID, 256), (EVENT_TYPE, 128)):
        value = chosen[name]
        if len(value) > limit or not value.isprintable() or value.strip() != value:
            return 400
    if len(body) > MAX_BODY_BYTES:
        return 413
    return 200 if signature_ok and chosen[SIGNATURE] == sign(SECRET, body) else 401


@st.composite
def hostile_requests(draw: st.DrawFn) -> Case:
    body = draw(bodies)
    signature = sign(SECRET, body)
    signature_kind = draw(
        st.sampled_from(
            ["valid"] * 3
            + ["retired-secret", "uppercase", "wrong-length", "non-hex", "prefixed", "padded", "other-body", "any"]
        )
    )
    forged = {
        "valid": signature,
        "retired-secret": sign(OLD_SECRET, body),
        "uppercase": signature.upper(),
        "wrong-length": signature[: draw(st.integers(0, 63))] or signature + "0",
        "non-hex": signature[:-1] + draw(st.sampled_from("gxz-+ é\x00")),
        "prefixed": "sha256=" + signature,
        "padded": f" {signature} ",
        "other-body": sign(SECRET, body + b" "),
        "any": draw(anything | non_ascii),
    }[signature_kind]

    event_id = draw(
        st.sampled_from(["uuid"] * 6 + ["non-ascii", "too-long", "control", "padded"]).flatmap(
            lambda kind: {
                "uuid": st.builds(lambda: f"evt-{uuid.uuid4()}"),
                "non-ascii": non_ascii,  # printable or not
                "too-long": st.integers(257, 4000).map(lambda n: "e" * n),
                "control": st.text(max_size=12).map(lambda t: f"evt-{t}\n"),
                "padded": st.just(" evt-padded"),
            }[kind]
        )
    )
    event_type = draw(
        st.sampled_from(["known"] * 6 + ["unknown", "anything", "too-long"]).flatmap(
            lambda kind: {
                "known": st.sampled_from(sorted(KNOWN_EVENT_TYPES)),
                "unknown": st.just("klikit.order.refunded"),  # well-formed: accepted, the processor decides
                "anything": anything,
                "too-long": st.integers(129, 2000).map(lambda n: "t" * n),
            }[kind]
        )
    )
    values: dict[str, list[str]] = {SIGNATURE: [forged], EVENT_ID: [event_id], EVENT_TYPE: [event_type]}
    for name in list(values):
        shape = draw(st.sampled_from(["as-is"] * 20 + ["missing", "empty", "blank", "repeated", "conflicting"]))
        if shape == "missing":
            values[name] = []
        elif shape == "empty":
            values[name] = [""]
        elif shape == "blank":
            values[name] = ["   "]
        elif shape == "repeated":
            values[name] = values[name] * 2
        elif shape == "conflicting":
            values[name] = [*values[name], values[name][0] + "-2"]

    casing = draw(st.sampled_from(["lower", "title", "upper"]))
    names = {name: {"lower": name, "title": name.title(), "upper": name.upper()}[casing] for name in values}
    single = {names[name]: many[-1] for name, many in values.items() if many}
    multi = {names[name]: many for name, many in values.items() if many}
    # an extra header may be a klikit header again, in another case
    klikit_names_any_case = st.sampled_from(
        [case(n) for n in (SIGNATURE, EVENT_ID, EVENT_TYPE) for case in (str.upper, str.title)]
    )
    extra = draw(st.dictionaries(st.text(min_size=1, max_size=20) | klikit_names_any_case, anything, max_size=3))
    where = draw(st.sampled_from(["both", "single", "multi"]))
    if where == "single":
        multi = {}
    elif where == "multi":
        single = {}
    flag = draw(st.sampled_from(["honest"] * 6 + ["lying-true", "lying-false", "null-body"]))
    decoded, body_decodes = body, True
    try:
        text: str | None = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if flag == "null-body":
        wire, is_base64, decoded = None, False, b""
    elif flag == "lying-true":  # says base64, is not
        wire, is_base64, body_decodes = (text or "") + "!", True, False
    elif flag == "lying-false" and text is None:  # says text, is base64: the receiver verifies the base64 text
        wire, is_base64 = base64.b64encode(body).decode(), False
        decoded = wire.encode()
    elif text is not None and flag != "lying-false":
        wire, is_base64 = text, False
    else:
        wire, is_base64 = base64.b64encode(body).decode(), True

    event = klikit_event(b"", headers={**extra, **single})
    event["multiValueHeaders"] = {**{k: [v] for k, v in extra.items()}, **multi}
    event["body"] = wire
    event["isBase64Encoded"] = is_base64
    # what was sent, by lower-cased name: an extra header may be a klikit header in another case
    headers_seen: dict[str, list[str]] = {}
    for name, many in event["multiValueHeaders"].items():
        headers_seen.setdefault(name.lower(), []).extend(many)
    for name, one in event["headers"].items():
        headers_seen.setdefault(name.lower(), []).append(one)
    expected = _expected(body_decodes, headers_seen, decoded, signature_ok=True)
    return Case(event, decoded, expected, valid_signature=expected == 200)


# --- the run ----------------------------------------------------------------------------------------------


class FuzzRun:
    def __init__(self, pipeline: Pipeline, faults: Faults, capsys: pytest.CaptureFixture[str]) -> None:
        self.pipeline = pipeline
        self.faults = faults
        self.capsys = capsys
        self.statuses: Counter[int] = Counter()
        self.cases = 0
        self.queued_since_purge = 0

    def check(self, case: Case) -> None:
        sends_before = self.faults.calls["sqs.SendMessage"]
        writes_before = self.faults.calls["dynamodb.PutItem"]
        self.faults.sent.clear()

        status, body = self.pipeline.send(case.event)  # the handler returned: no unhandled exception

        self.cases += 1
        self.statuses[status] += 1
        assert isinstance(body, dict) and body, "every reply is a JSON object"
        assert status < 500, f"a client's request got {status}: {body}"
        assert status == case.expected, (status, body)
        sent = self.faults.calls["sqs.SendMessage"] - sends_before
        written = self.faults.calls["dynamodb.PutItem"] - writes_before
        if status != 200:
            assert (sent, written) == (0, 0), "a rejected request wrote or queued something"
        else:
            assert body["status"] in {"received", "duplicate-ignored"}
            assert sent == (1 if body["status"] == "received" else 0)
            assert case.valid_signature  # 200 only when the request carried klikit's signature of these bytes
            for message in self.faults.sent:
                assert read_body(queued_delivery(message), self._s3_object) == case.body
            self.queued_since_purge += sent
            if self.queued_since_purge >= 200:  # SendMessage slows as a moto queue grows
                self.pipeline.discard_queued()
                self.queued_since_purge = 0
        out = self.capsys.readouterr().out  # the metrics lines, dropped as we go
        assert leaks(out) == []

    def _s3_object(self, bucket: str, key: str) -> bytes:
        return bytes(self.pipeline.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture
def fuzz(
    pipeline: Pipeline, faults: Faults, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> FuzzRun:
    monkeypatch.setenv("MAX_BODY_BYTES", str(MAX_BODY_BYTES))
    monkeypatch.setenv("SQS_MAX_MESSAGE_BYTES", str(8 * 1024))  # the bodies that just fit go to S3
    return FuzzRun(pipeline, faults, capsys)


def test_hostile_requests_get_json_replies_no_5xx_and_nothing_unsigned_is_queued(fuzz: FuzzRun) -> None:
    started = time.perf_counter()

    @settings(settings.get_profile("reliability"), max_examples=FUZZ_EXAMPLES)
    @given(case=hostile_requests())
    def run(case: Case) -> None:
        fuzz.check(case)

    run()
    record_stats(
        f"hostile-{FUZZ_EXAMPLES}",  # by size: make test keeps make soak and make fuzz figures
        {
            "cases": fuzz.cases,
            "max_examples": FUZZ_EXAMPLES,
            "replies": {str(status): count for status, count in sorted(fuzz.statuses.items())},
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    assert fuzz.cases >= min(FUZZ_EXAMPLES, 100)
    assert {400, 401, 413, 200} <= set(fuzz.statuses), fuzz.statuses  # every kind of reply was exercised


# --- the specific shapes the issue names, once each -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mutate", "status"),
    [
        ("signature-wrong-length", lambda e, s: e["headers"].update({"x-klikit-signature": s[:-2]}), 401),
        ("signature-uppercase", lambda e, s: e["headers"].update({"x-klikit-signature": s.upper()}), 401),
        ("signature-non-hex", lambda e, s: e["headers"].update({"x-klikit-signature": "z" * 64}), 401),
        ("signature-non-ascii", lambda e, s: e["headers"].update({"x-klikit-signature": "é" * 64}), 401),
        ("signature-huge", lambda e, s: e["headers"].update({"x-klikit-signature": s * 5000}), 401),
        ("event-id-huge", lambda e, s: e["headers"].update({"x-klikit-event-id": "e" * 100_000}), 400),
        ("event-id-nul", lambda e, s: e["headers"].update({"x-klikit-event-id": "evt\x00"}), 400),
        ("headers-null", lambda e, s: e.update({"headers": None, "multiValueHeaders": None}), 400),
        ("body-lying-base64", lambda e, s: e.update({"isBase64Encoded": True, "body": "{not base64}"}), 400),
        ("body-null", lambda e, s: e.update({"body": None}), 401),
    ],
)
def test_a_named_hostile_shape_is_answered_without_writing_anything(
    fuzz: FuzzRun, name: str, mutate: Any, status: int
) -> None:
    body = FIXTURES[0]
    event = klikit_event(body)
    mutate(event, sign(SECRET, body))
    event["multiValueHeaders"] = None if event["headers"] is None else {k: [v] for k, v in event["headers"].items()}

    reply = fuzz.pipeline.send(event)

    assert reply[0] == status, reply
    assert fuzz.faults.calls["sqs.SendMessage"] == 0 and fuzz.faults.calls["dynamodb.PutItem"] == 0


# --- signed but hostile bodies, through the processor -----------------------------------------------------

SIGNED_POISON = {
    "not-json": b"\xff\xfe not json",
    "json-array": b"[1, 2, 3]",
    "nan": b'{"brand_id":1,"branch_id":2,"orders":[{"id":1,"total":NaN}]}',
    "no-orders": b'{"brand_id":1,"branch_id":2,"orders":[]}',
    "order-id-bool": b'{"brand_id":1,"branch_id":2,"orders":[{"id":true}]}',
    "status-not-a-number": b'{"brand_id":1,"branch_id":2,"orders":[{"id":1,"status":"READY"}]}',
    "deep-but-parseable": b'{"brand_id":1,"branch_id":2,"orders":[{"id":1,"customer":'
    + b'{"a":' * 500
    + b"1"
    + b"}" * 500
    + b"}]}",
}


def _nested(depth: int) -> bytes:
    return b'{"brand_id":1,"branch_id":2,"orders":[{"id":1,"x":' + b"[" * depth + b"]" * depth + b"}]}"


UNSTORABLE = {
    # json.loads raises RecursionError, which parse_envelope does not turn into PoisonDelivery
    "nested-beyond-the-parser": _nested(100_000),
    # a 45-digit integer: boto3's TypeSerializer raises decimal.Rounded (DynamoDB keeps 38 digits)
    "number-beyond-dynamodb": b'{"brand_id":1,"branch_id":2,"orders":[{"id":1,"status":' + b"1" * 45 + b"}]}",
    # a cart whose projection item is over DynamoDB's 400 KB even compressed (processor.cart_storage packs it with
    # zlib, so the titles are incompressible): UpdateItem answers ValidationException
    "item-beyond-400kb": json.dumps(
        {
            "brand_id": 1,
            "branch_id": 2,
            "orders": [
                {
                    "id": 1,
                    "cart": [
                        {"title": base64.b64encode(random.Random(line).randbytes(750)).decode()} for line in range(800)
                    ],
                }
            ],
        }
    ).encode(),
    # an order id over DynamoDB's 2048-byte key limit: ValidationException
    "order-id-beyond-the-key-limit": json.dumps(
        {"brand_id": 1, "branch_id": 2, "orders": [{"id": "x" * 3000}]}
    ).encode(),
}


@pytest.mark.parametrize("name", sorted(SIGNED_POISON))
def test_a_signed_body_the_processor_cannot_use_is_quarantined_on_its_first_attempt(
    name: str, pipeline: Pipeline
) -> None:
    body = SIGNED_POISON[name]
    assert pipeline.send(klikit_event(body, event_id=f"evt-{name}", base64_encoded=True))[0] == 200

    first = pipeline.process_once()

    assert first is not None and first.failed == 0  # never retried: no retry can fix it
    if name == "deep-but-parseable":
        assert pipeline.dlq() == [] and pipeline.order("1") is not None
        return
    [quarantined] = pipeline.dlq()
    assert quarantined["MessageAttributes"]["quarantine_reason"]["StringValue"]


@pytest.mark.parametrize("name", sorted(UNSTORABLE))
def test_a_signed_body_no_retry_can_store_is_quarantined_on_its_first_attempt(name: str, pipeline: Pipeline) -> None:
    assert pipeline.send(klikit_event(UNSTORABLE[name], event_id=f"evt-{name}"))[0] == 200

    first = pipeline.process_once()

    assert first is not None and first.failed == 0
    [quarantined] = pipeline.dlq()
    assert quarantined["MessageAttributes"]["quarantine_reason"]["StringValue"]


def test_a_long_non_ascii_event_id_is_claim_checked_processed_and_archived_within_s3s_key_limit(
    pipeline: Pipeline, faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQS_MAX_MESSAGE_BYTES", "2048")  # the body goes to S3 as a claim check
    faults.enforce_s3_limits()
    event_id = "订单事件" * 64  # 256 characters, the most a header may hold: 2,304 bytes percent-quoted
    body = load_fixture("order_created_v2_batch.json")

    assert pipeline.send(klikit_event(body, event_id=event_id)) == (200, {"status": "received"})
    pipeline.drain()

    assert pipeline.dlq() == []
    item = pipeline.order("7821")
    assert item is not None and item["last_event_id"] == event_id
    keys = [o["Key"] for o in pipeline.s3.list_objects_v2(Bucket=pipeline.aws.bucket)["Contents"]]
    assert {key.split("/", 1)[0] for key in keys} == {"archive", "claim-checks"}
    assert all(len(key.encode()) <= 1024 for key in keys)
