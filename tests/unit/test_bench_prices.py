"""The cost benchmark's billing rules and its delivery mix (pure: no AWS, no timing)."""

from __future__ import annotations

from collections import Counter

from bench.cost import OVERSIZED_BYTES, representative_mix
from bench.prices import item_bytes, read_units, sqs_requests, write_units


def test_item_size_counts_names_and_values_the_way_dynamodb_bills_them() -> None:
    assert item_bytes(None) == 0
    assert item_bytes({"id": {"S": "abc"}}) == 2 + 3
    assert item_bytes({"n": {"N": "123.45"}}) == 1 + 4  # 5 significant digits: 3 bytes, plus 1
    assert item_bytes({"n": {"N": "1000"}}) == 1 + 2  # trailing zeros do not count
    assert item_bytes({"n": {"N": "-0.0012"}}) == 1 + 2
    assert item_bytes({"ok": {"BOOL": True}, "no": {"NULL": True}}) == 2 + 1 + 2 + 1
    assert item_bytes({"b": {"B": b"\x00\x01\x02"}}) == 1 + 3
    # a map or list: 3 bytes, plus 1 per element (and a map's key names)
    assert item_bytes({"m": {"M": {"a": {"N": "1"}}}}) == 1 + 3 + 1 + 1 + 2
    assert item_bytes({"l": {"L": [{"S": "ab"}, {"BOOL": False}]}}) == 1 + 3 + (1 + 2) + (1 + 1)
    assert item_bytes({"é": {"S": "ü"}}) == 2 + 2  # UTF-8 bytes, not characters


def test_writes_are_billed_per_started_kilobyte_of_the_larger_item_and_at_least_one() -> None:
    assert write_units(0, 10) == 1
    assert write_units(1024, 0) == 1
    assert write_units(1025, 0) == 2
    assert write_units(900, 3000) == 3  # an update that grows the item: the item after
    assert write_units(3000, 3000) == 3  # a refused conditional write on a 3 KB item
    assert write_units(100, 100, transactional=True) == 2


def test_reads_are_billed_per_started_four_kilobytes_half_when_eventually_consistent() -> None:
    assert read_units(0, consistent=True) == 1  # a miss still costs the minimum
    assert read_units(4096, consistent=True) == 1
    assert read_units(4097, consistent=True) == 2
    assert read_units(4097, consistent=False) == 1


def test_sqs_bills_every_started_64_kb_chunk_as_a_request() -> None:
    assert [sqs_requests(size) for size in (0, 65_536, 65_537, 262_144)] == [1, 1, 2, 4]


def test_the_representative_mix_has_the_issue_s_proportions_and_real_repeats() -> None:
    mix = representative_mix(200)
    kinds = Counter(delivery.kind for delivery in mix)

    assert len(mix) == 200
    assert kinds["duplicate"] == 20 and kinds["forged"] == 4
    assert kinds["created"] + kinds["oversized"] == 50 and kinds["oversized"] >= 1
    assert kinds["status"] == 100 and kinds["cart"] == 26
    first_seen: dict[str, tuple[bytes, str]] = {}
    for delivery in mix:
        if delivery.kind == "duplicate":  # klikit repeating a delivery byte for byte, under the same event id
            assert first_seen[delivery.event_id] == (delivery.body, delivery.signature)
        first_seen.setdefault(delivery.event_id, (delivery.body, delivery.signature))
    typical = [len(d.body) for d in mix if d.kind in ("created", "status", "cart")]
    assert min(typical) > 4_000 and max(typical) < 6_000
    assert all(len(d.body) > OVERSIZED_BYTES for d in mix if d.kind == "oversized")
