"""The handler registry users extend with @on(...)."""

from __future__ import annotations

import pytest

from klikit.events import ORDER_CART_UPDATED, ORDER_CREATED
from processor.models import OrderEvent
from processor.registry import REGISTRY, Registry


def test_a_handler_registers_for_each_event_type_it_names_under_its_qualified_name() -> None:
    registry = Registry()

    @registry.on(ORDER_CREATED, ORDER_CART_UPDATED)
    def send_to_pos(event: OrderEvent) -> None: ...

    assert [h.name for h in registry.handlers_for(ORDER_CREATED)] == [f"{__name__}.{send_to_pos.__qualname__}"]
    assert [h.function for h in registry.handlers_for(ORDER_CART_UPDATED)] == [send_to_pos]
    assert registry.handlers_for("klikit.order.status.updated") == []


def test_two_handlers_with_one_name_are_refused_because_the_name_is_the_idempotency_key() -> None:
    registry = Registry()
    registry.on(ORDER_CREATED, name="pos")(lambda event: None)

    with pytest.raises(ValueError, match="already registered"):
        registry.on(ORDER_CREATED, name="pos")(lambda event: None)


def test_on_needs_an_event_type() -> None:
    with pytest.raises(ValueError, match="at least one event type"):
        Registry().on()


def test_a_scope_undoes_its_registrations() -> None:
    before = REGISTRY.handlers_for(ORDER_CREATED)
    with REGISTRY.scope() as scoped:
        scoped.on(ORDER_CREATED, name="temporary")(lambda event: None)
        scoped.on_unknown_event(name="temporary-catch-all")(lambda event: None)
        assert len(REGISTRY.handlers_for(ORDER_CREATED)) == len(before) + 1

    assert REGISTRY.handlers_for(ORDER_CREATED) == before
    assert REGISTRY.catch_all() == []


def test_the_worked_example_is_registered_for_new_orders() -> None:
    import processor.integrations  # noqa: F401

    assert "example.kitchen-ticket" in [h.name for h in REGISTRY.handlers_for(ORDER_CREATED)]


@pytest.mark.parametrize("name", ["klikit.order-projection", "klikit.eventbridge-fanout", "klikit.anything"])
def test_a_handler_named_like_a_built_in_is_refused_at_registration(name: str) -> None:
    registry = Registry()

    with pytest.raises(ValueError, match="built-ins"):
        registry.on(ORDER_CREATED, name=name)(lambda event: None)
    with pytest.raises(ValueError, match="built-ins"):
        registry.on_unknown_event(name=name)(lambda event: None)
    assert registry.handlers_for(ORDER_CREATED) == [] and registry.catch_all() == []


def test_a_handler_opts_in_to_stale_events_explicitly() -> None:
    registry = Registry()
    registry.on(ORDER_CREATED, name="pos")(lambda event: None)
    registry.on(ORDER_CREATED, name="audit", include_stale=True)(lambda event: None)

    assert [(h.name, h.include_stale) for h in registry.handlers_for(ORDER_CREATED)] == [
        ("pos", False),
        ("audit", True),
    ]
