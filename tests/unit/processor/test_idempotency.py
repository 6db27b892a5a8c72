"""What "once" is keyed on: the canonical form of the order klikit signed, and the effect keys built from it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED, ORDER_STATUS_UPDATED
from processor.idempotency import canonical, digest, effect_key
from processor.models import loads

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@given(json_values, st.integers(0, 4), st.booleans())
def test_re_serializing_an_order_never_changes_its_canonical_form(value: Any, indent: int, ascii_only: bool) -> None:
    original = json.dumps(value).encode()
    reserialized = json.dumps(json.loads(original), indent=indent or None, ensure_ascii=ascii_only).encode()

    assert canonical(loads(original)) == canonical(loads(reserialized))


@pytest.mark.parametrize("same", ["84.5", "84.50", "8.45e1", "845E-1", "84.500000"])
def test_one_number_written_several_ways_is_one_canonical_number(same: str) -> None:
    assert canonical(loads(f'{{"total": {same}}}'.encode())) == '{"total":84.5}'


def test_integers_written_as_decimals_are_integers_and_huge_exponents_stay_short() -> None:
    assert canonical(loads(b"[100, 100.0, 1e2, -0.0, 0]")) == "[100,100,100,0,0]"
    assert canonical(loads(b"[1e999999999]")) == "[1E+999999999]"  # not a billion digits


def test_keys_are_sorted_text_is_kept_as_unicode_and_whitespace_is_gone() -> None:
    assert canonical(loads('{"b": 1, "a": "caf\\u00e9 \u00fc"}'.encode())) == '{"a":"café ü","b":1}'


def test_a_nesting_as_deep_as_the_parser_allows_does_not_overflow() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]

    assert len(canonical(deep)) == 200_002  # 100,001 lists


def test_a_different_value_is_a_different_digest() -> None:
    assert digest({"status": 4}) != digest({"status": 5})
    assert digest({"status": 4}) != digest({"status": "4"})


def test_effect_keys_name_the_handler_the_order_and_its_content_never_the_event_type_of_an_update() -> None:
    status = effect_key("pos", ORDER_STATUS_UPDATED, "7821", "d1")

    assert status == effect_key("pos", ORDER_CART_UPDATED, "7821", "d1")  # a re-typed copy is the same fact
    assert len({status, effect_key("crm", ORDER_STATUS_UPDATED, "7821", "d1")}) == 2
    assert len({status, effect_key("pos", ORDER_STATUS_UPDATED, "7822", "d1")}) == 2
    assert len({status, effect_key("pos", ORDER_STATUS_UPDATED, "7821", "d2")}) == 2
    # an order is created once, whatever a later created.v2 of it says
    assert effect_key("pos", ORDER_CREATED, "7821", "d1") == effect_key("pos", ORDER_CREATED, "7821", "d2")
    assert len(status) == 40 and int(status, 16) >= 0
