"""The end-to-end benchmark's bookkeeping (bench/end_to_end.py): which rates it tries, when a rate counts as met,
and how it splits the stack's CPU by process. No timing: the figures themselves come from `make bench`."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from bench import end_to_end
from bench.end_to_end import Phase


def _phase(rate: float, met: bool = True, sent: float | None = None) -> Phase:
    seconds = 10.0
    count = round((sent if sent is not None else rate) * seconds)
    requests: list[dict[str, Any]] = [
        {"kind": "new", "ok": True, "status": 200, "ms": 50.0 if met else 900.0, "late": False} for _ in range(count)
    ]
    result = {"requests": requests, "lost": [], "doubled": [], "unexpected_processed": [], "dlq_depth": 0}
    return Phase(rate, seconds, 60, {**result, "still_queued": 0}, "0 0 0", {"moto": 0.5})


def test_a_rate_the_generator_could_not_offer_is_not_met() -> None:
    assert _phase(50).met
    assert not _phase(50, met=False).met
    assert not _phase(50, sent=40).met  # p99 fine, but only 80% of the offered rate went out


def test_when_a_rate_misses_the_next_tried_lies_between_the_highest_met_and_the_lowest_missed() -> None:
    probe = end_to_end._next_probe([_phase(25), _phase(50, met=False)])
    assert probe is not None and 25 < probe < 50 and probe % end_to_end.PROBE_STEP == 0

    assert end_to_end._next_probe([_phase(25), _phase(50, met=False), _phase(40, met=False)]) in (30, 35)
    assert end_to_end._next_probe([_phase(25, met=False), _phase(50, met=False)]) == 10  # below the lowest tried
    assert end_to_end._next_probe([_phase(45), _phase(50, met=False)]) is None  # within one step
    assert end_to_end._next_probe([_phase(25), _phase(50)]) is None  # nothing missed


def test_cpu_is_read_for_the_stack_and_every_process_under_it_by_role() -> None:
    code = "import time, sys; sum(range(3_000_000)); sys.stdout.write('x'); sys.stdout.flush(); time.sleep(30)"
    moto = subprocess.Popen([sys.executable, "-c", code, "tools.local.moto_server"], stdout=subprocess.PIPE)
    try:
        assert moto.stdout is not None and moto.stdout.read(1) == b"x"  # its CPU is spent
        cpu = end_to_end._cpu_seconds(os.getpid())
    finally:
        moto.kill()
        moto.wait()

    assert cpu[end_to_end.STACK_ROLE] > 0  # this process: the stack's own role
    assert cpu["moto"] > 0  # a child, known by its command line


def test_throttled_replies_are_errors_not_fast_acks() -> None:
    phase = _phase(50)
    for request in phase.result["requests"][::2]:
        request.update(status=500, ok=False, ms=2.0)  # Lambda's throttle, answered at once by the gateway

    assert len(phase.signed_ms) == len(phase.result["requests"]) // 2
    assert min(phase.signed_ms) == 50.0  # the 2 ms refusals are not acknowledgements
    assert not phase.met
    assert _phase(50, met=False, sent=0).p(99) == float("inf")  # nothing acknowledged: no latency to report
