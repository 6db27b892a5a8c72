"""`python -m bench [--quick] [--only NAME ...]`: run the benchmarks, print the table, write bench-results.json."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import REPO
from bench.report import Figure, document, format_table, verdict

# (module, title), in the order they run; the end-to-end run takes 60 s of load plus the drain; the cost table
# ends the output with its total.
BENCHMARKS = (
    ("cold_start", "1. cold start: fresh interpreter, in-process moto"),
    ("warm_receiver", "2. warm receiver: per delivery, in-process moto"),
    ("processor_throughput", "3. processor throughput, in-process moto"),
    ("memory", "4. memory: peak RSS, moto server"),
    ("end_to_end", "5. end to end on the local stack"),
    ("cost", "6. cost: $ per million deliveries of a representative mix, metered on moto"),
)


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few repeats, 10 s end to end (~1.5 min)")
    parser.add_argument("--only", nargs="+", choices=[name for name, _ in BENCHMARKS], help="run only these benchmarks")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results.json", help="JSON output (git-ignored)")
    args = parser.parse_args(argv)

    sections: list[tuple[str, list[Figure]]] = []
    timings: dict[str, float] = {}
    started = time.monotonic()
    for name, title in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            figures = importlib.import_module(f"bench.{name}").run(args.quick)
        except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others' figures
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            print(f"  {name} failed: {exc}", file=sys.stderr)
            figures = [Figure(f"{name}.failed", name, "", missing=reason[:200])]
        timings[name] = round(time.monotonic() - began, 1)
        print(f"  {name}: {timings[name]:.0f} s", file=sys.stderr, flush=True)
        sections.append((title, figures))

    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "quick": args.quick,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "seconds": {**timings, "total": round(time.monotonic() - started, 1)},
    }
    print()
    print(format_table(sections))
    counts = verdict(figure for _, figures in sections for figure in figures)
    print(
        f"\n{counts['pass']} targets met, {counts['FAIL']} missed, {counts['MISSING']} not measured "
        f"({meta['seconds']['total']:.0f} s). Ratios compare runs made side by side; absolute times are this machine's."
    )
    args.out.write_text(json.dumps(document(sections, meta), indent=2) + "\n", encoding="utf-8")
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
