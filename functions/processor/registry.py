"""Which functions run for which klikit event type: the registry users extend with `@on(...)`.

A handler is registered under a stable name (its module and qualified name unless given one). The name is part
of its idempotency key, so renaming a handler makes it a new handler that runs again for redelivered events.
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


@dataclass(frozen=True)
class Registered:
    name: str
    function: Callable[..., Any]


def _name(function: Callable[..., Any], name: str | None) -> str:
    return name or f"{function.__module__}.{function.__qualname__}"


class Registry:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Registered]] = {}
        self._catch_all: list[Registered] = []

    def on(self, *event_types: str, name: str | None = None) -> Callable[[F], F]:
        """Decorator: run the function for every order of every delivery of these event types."""
        if not event_types:
            raise ValueError("@on needs at least one event type")

        def register(function: F) -> F:
            entry = Registered(_name(function, name), function)
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
