"""Reading klikit's headers from API Gateway events: casing, multi-value forms, and what counts as missing."""

from __future__ import annotations

import pytest

from klikit.errors import InvalidHeaders, MissingHeaders
from klikit.headers import header_values, klikit_headers

GOOD = {"x-klikit-signature": "a" * 64, "x-klikit-event-id": "evt-1", "x-klikit-event-type": "klikit.order.created.v2"}


def test_single_and_multi_value_headers_merge_case_insensitively() -> None:
    values = header_values(
        {"headers": {"X-Klikit-Event-Id": "evt-1"}, "multiValueHeaders": {"x-KLIKIT-event-id": ["evt-1"]}}
    )
    assert values == {"x-klikit-event-id": ["evt-1"]}


def test_no_headers_at_all_names_all_three_missing() -> None:
    with pytest.raises(MissingHeaders) as raised:
        klikit_headers(header_values({"headers": None, "multiValueHeaders": None}))
    assert raised.value.missing == ["x-klikit-signature", "x-klikit-event-id", "x-klikit-event-type"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("x-klikit-event-id", "e" * 257), ("x-klikit-event-id", "evt\n1"), ("x-klikit-event-type", "t\x00")],
)
def test_unusable_event_id_or_type_is_invalid(name: str, value: str) -> None:
    with pytest.raises(InvalidHeaders) as raised:
        klikit_headers(header_values({"headers": {**GOOD, name: value}}))
    assert raised.value.invalid == [name]


def test_the_same_value_sent_twice_is_fine() -> None:
    values = header_values({"multiValueHeaders": {k: [v, v] for k, v in GOOD.items()}})
    assert klikit_headers(values) == ("a" * 64, "evt-1", "klikit.order.created.v2")
