"""Which functions run for which klikit event type: the registry users extend with `@on(...)`.

A handler is registered under a stable name (its module and qualified name unless given one). The name is part
of its effect key, so renaming a handler makes it a new handler that runs again for redelivered events. Names
starting with `klikit.` belong to the built-in handlers and are refused.

Status and cart handlers hear only of news for the order (processor.projection); `include_stale=True` opts a
handler in to every signed order fact of its types, stale or not (still once per fact).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from processor.failures import HandlerError
from processor.models import OrderEvent, UnknownEvent

OrderHandler = Callable[[OrderEvent], Any]
CatchAllHandler = Callable[[UnknownEvent], Any]
F = TypeVar("F", bound=Callable[..., Any])


RESERVED_PREFIX = "klikit."  # the built-in handlers' names: klikit.order-projection, klikit.eventbridge-fanout


@dataclass(frozen=True)
class Registered:
    name: str
    function: Callable[..., Any]
    include_stale: bool = False


def _name(function: Callable[..., Any], name: str | None) -> str:
    chosen = name or f"{function.__module__}.{function.__qualname__}"
    if chosen.startswith(RESERVED_PREFIX):
        raise ValueError(f"handler name {chosen!r}: names starting with {RESERVED_PREFIX!r} are the built-ins'")
    return chosen


class Registry:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Registered]] = {}
        self._catch_all: list[Registered] = []

    def on(self, *event_types: str, name: str | None = None, include_stale: bool = False) -> Callable[[F], F]:
        """Decorator: run the function for every order of every delivery of these event types.

        Status and cart updates reach it only when they are news for the order, unless `include_stale`."""
        if not event_types:
            raise ValueError("@on needs at least one event type")

        def register(function: F) -> F:
            entry = Registered(_name(function, name), function, include_stale)
            for event_type in event_types:
                handlers = self._handlers.setdefault(event_type, [])
                if any(existing.name == entry.name for existing in handlers):
                    raise ValueError(f"a handler named {entry.name} is already registered for {event_type}")
                handlers.append(entry)
            return function

        return register

    def on_unknown_event(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: run the function once per delivery whose event type no handler is registered for."""

        def register(function: F) -> F:
            entry = Registered(_name(function, name), function)
            if any(existing.name == entry.name for existing in self._catch_all):
                raise ValueError(f"a catch-all handler named {entry.name} is already registered")
            self._catch_all.append(entry)
            return function

        return register

    def handlers_for(self, event_type: str) -> list[Registered]:
        return list(self._handlers.get(event_type, ()))

    def catch_all(self) -> list[Registered]:
        return list(self._catch_all)

    @contextmanager
    def scope(self) -> Iterator[Registry]:
        """Registrations made inside the block are undone at its end (tests use it)."""
        saved = ({key: list(value) for key, value in self._handlers.items()}, list(self._catch_all))
        try:
            yield self
        finally:
            self._handlers, self._catch_all = saved


REGISTRY = Registry()
on = REGISTRY.on
on_unknown_event = REGISTRY.on_unknown_event
__all__ = ["REGISTRY", "HandlerError", "Registered", "Registry", "on", "on_unknown_event"]
