"""What "once" is keyed on: the order as klikit signed it, never the unsigned event id or event type.

klikit signs only the body. `x-klikit-event-id` and `x-klikit-event-type` are headers anyone replaying a captured
request can change, so every effect key is derived from the signed order instead:

- the canonical form of an order: the object parsed from the signed body, re-serialized deterministically (sorted
  keys, no whitespace, non-ASCII kept, numbers normalized so `84.50`, `84.5` and `8.45e1` are one number), so a
  proxy or a reconciler re-serializing the same order does not make it a new fact;
- a handler's effect key: (handler name, order id, digest of the canonical order); for `created.v2` handlers
  (handler name, order id) alone, because an order is created once whatever a later copy of it says;
- a part's content digest (the status; the cart with its total and currency), which the order projection keeps to
  tell news from a copy of what it already applied (processor.projection).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from klikit.events import ORDER_CREATED

EFFECT_KEY_CHARS = 40  # 160 bits, in hex: fits the idempotency-key limits of common POS APIs (Square's is 45)
_PLAIN_EXPONENT = 30  # numbers within 10^±30 are written out in full; beyond, in scientific notation


def _number(value: int | Decimal) -> str:
    """One text per number: trailing zeros and the exponent's form do not matter. Exact (no context rounding)."""
    number = Decimal(value)
    if not number.is_finite():
        return str(number)
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    while len(digits) > 1 and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    if digits == (0,):
        return "0"
    normal = Decimal((sign, digits, exponent))
    if abs(normal.adjusted()) < _PLAIN_EXPONENT:
        return format(normal, "f")
    return str(normal)  # a huge exponent written out in full would cost memory an attacker chooses


class _Text(str):
    """Literal JSON text (a bracket, a key) on canonical()'s stack, as opposed to a string value to encode."""


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | Decimal):
        return _number(value)
    if isinstance(value, float):  # never parsed from klikit's JSON (Decimal is); kept exact if a caller has one
        return _number(Decimal(repr(value)))
    return json.dumps(str(value), ensure_ascii=False)


def canonical(value: Any) -> str:
    """`value` (parsed klikit JSON: dict, list, str, int, Decimal, bool, None) as deterministic JSON text.

    Iterative, not recursive: a body nested as deep as the JSON parser allows must not overflow the stack here.
    """
    out: list[str] = []
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if type(item) is _Text:
            out.append(item)
        elif isinstance(item, Mapping):
            tokens: list[Any] = [_Text("{")]
            for n, (key, member) in enumerate(sorted((str(key), member) for key, member in item.items())):
                tokens += [_Text(("," if n else "") + json.dumps(key, ensure_ascii=False) + ":"), member]
            pending.extend(reversed([*tokens, _Text("}")]))
        elif isinstance(item, list | tuple):
            tokens = [_Text("[")]
            for n, member in enumerate(item):
                tokens += [_Text(","), member] if n else [member]
            pending.extend(reversed([*tokens, _Text("]")]))
        else:
            out.append(_scalar(item))
    return "".join(out)


def digest(value: Any) -> str:
    """Hex SHA-256 of the canonical form of `value`."""
    return hashlib.sha256(canonical(value).encode("utf-8")).hexdigest()


def effect_key(handler: str, event_type: str, order_id: str, order_digest: str) -> str:
    """The key a handler's effect is done once under, and what it hands a POS as its idempotency key."""
    content = "created" if event_type == ORDER_CREATED else order_digest
    identity = canonical(["klikit-effect/1", handler, order_id, content])
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:EFFECT_KEY_CHARS]


def catch_all_effect_key(handler: str, body_sha256: str) -> str:
    """A catch-all handler's key: the delivery's signed bytes, whatever id or type it came under."""
    identity = canonical(["klikit-effect/1", handler, "", body_sha256])
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:EFFECT_KEY_CHARS]
