"""Why a handler failed, in words that are safe to log.

A handler that knows why it failed raises `HandlerError("422 unknown SKU CBA999")`: its message is meant for the
logs, `klikit events` and the local console. Any other exception's message is kept too, with the order's customer
data (name, phone, email, address: whatever klikit sent under `customer`) and e-mail addresses replaced, because a
handler may quote the customer by accident. Either way the message is cut to a readable length.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

REDACTED = "[customer data]"
MAX_MESSAGE_CHARS = 300
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_MIN_SCRUBBED = 3  # shorter fragments ("12", "Al") would blank out ordinary words and numbers


class HandlerError(Exception):
    """Raise it from a handler with a message that is safe to log: it is shown with the handler's name.

    `raise HandlerError("422 unknown SKU CBA999")` fails the record like any exception (it is retried, then
    dead-lettered); unlike other exceptions, you chose its words for the operator.
    """


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield str(value)


def customer_fragments(raw_order: Mapping[str, Any] | None) -> list[str]:
    """Every string klikit sent under the order's `customer`, its words and its digits-only form; longest first."""
    fragments: set[str] = set()
    for text in _strings((raw_order or {}).get("customer")):
        fragments.add(text)
        fragments.update(word.strip(",.;:") for word in text.split())
        digits = re.sub(r"\D", "", text)
        if len(digits) >= 7:  # a phone number written without its + or spaces
            fragments.add(digits)
    return sorted((f for f in fragments if len(f) >= _MIN_SCRUBBED), key=len, reverse=True)


def scrub(text: str, raw_order: Mapping[str, Any] | None) -> str:
    for fragment in customer_fragments(raw_order):
        text = re.sub(re.escape(fragment), REDACTED, text, flags=re.IGNORECASE)
    return _EMAIL.sub(REDACTED, text)


def safe_message(exc: BaseException, raw_order: Mapping[str, Any] | None) -> str:
    """The exception's message with the order's customer data taken out, at most MAX_MESSAGE_CHARS."""
    message = scrub(str(exc), raw_order)
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 3] + "..."
