"""`./klikit events` orders a delivery's path causally where the two functions' clocks disagree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tools.events import Step, group

T0 = datetime(2026, 6, 25, 9, 0, tzinfo=UTC)


def step(ms: int, function: str, word: str) -> Step:
    return Step(T0 + timedelta(milliseconds=ms), function, word, "", "evt-1", "evt-1", None, (), None, None)


def test_admission_comes_before_processing_even_when_the_receiver_stamped_its_line_later() -> None:
    steps = [step(0, "processor", "processed"), step(40, "receiver", "received"), step(900, "receiver", "replayed")]

    [delivery] = group(steps)

    assert [s.word for s in delivery.steps] == ["received", "processed", "replayed"]


def test_a_path_in_clock_order_is_left_as_it_is() -> None:
    steps = [step(0, "receiver", "received"), step(5, "processor", "failed"), step(9, "processor", "processed")]

    [delivery] = group(steps)

    assert [s.word for s in delivery.steps] == ["received", "failed", "processed"]
