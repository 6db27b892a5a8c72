"""Figures, their targets, the printed table and the JSON document. Pure (unit-tested)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.stats import Summary

FORMATS = {
    "ms": "{:.1f} ms",
    "x": "{:.2f}x",
    "MB": "{:.1f} MB",
    "/s": "{:.1f}/s",
    "count": "{:.0f}",
    "%": "{:.1f}%",
    "$/M": "${:.2f}/M",
    "$/month": "${:.2f}/month",
}


def fmt(value: float, unit: str) -> str:
    return FORMATS.get(unit, "{:.3g} " + unit).format(value)


@dataclass(frozen=True)
class Target:
    limit: float
    at_most: bool = True

    def met(self, value: float) -> bool:
        return value <= self.limit if self.at_most else value >= self.limit

    def describe(self, unit: str) -> str:
        return ("<= " if self.at_most else ">= ") + fmt(self.limit, unit)


@dataclass(frozen=True)
class Figure:
    """One line of the table: a measured summary, or the reason it could not be measured."""

    key: str  # stable id in the JSON, e.g. "cold_start.receiver.ratio"
    label: str
    unit: str
    summary: Summary | None = None
    target: Target | None = None
    note: str = ""
    missing: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    spread: str | None = None  # says what the spread is when it is not a quartile range over runs

    @property
    def status(self) -> str:
        if self.summary is None:
            return "MISSING"
        if self.target is None:
            return ""
        return "pass" if self.target.met(self.summary.median) else "FAIL"

    def cells(self) -> list[str]:
        target = self.target.describe(self.unit) if self.target else ""
        if self.summary is None:
            return [self.label, "-", self.missing or "not measured", target, self.status]
        s = self.summary
        if self.spread is not None:
            spread = self.spread
        elif s.runs > 1:
            spread = f"{fmt(s.p25, self.unit)} .. {fmt(s.p75, self.unit)} (n={s.runs})"
        else:
            spread = "single run"
        return [self.label, fmt(s.median, self.unit), spread, target, self.status]

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"label": self.label, "unit": self.unit, "status": self.status or None}
        if self.summary is not None:
            document.update(self.summary.as_dict())
        if self.target is not None:
            document["target"] = {"limit": self.target.limit, "at_most": self.target.at_most}
        if self.missing:
            document["missing"] = self.missing
        if self.note:
            document["note"] = self.note
        if self.extra:
            document["extra"] = dict(self.extra)
        return document


HEADER = ["figure", "median", "spread: p25 .. p75 (runs)", "target", "result"]


def format_table(sections: Sequence[tuple[str, Sequence[Figure]]]) -> str:
    """A plain-text table, one block per benchmark, columns aligned; notes follow their block."""
    rows = [HEADER] + [figure.cells() for _, figures in sections for figure in figures]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    out = [line(HEADER), "  ".join("-" * width for width in widths)]
    for title, figures in sections:
        out.append(f"[{title}]")
        out.extend(line(figure.cells()) for figure in figures)
        out.extend(f"    note: {figure.label}: {figure.note}" for figure in figures if figure.note)
    return "\n".join(out)


def verdict(figures: Iterable[Figure]) -> dict[str, int]:
    counts = {"pass": 0, "FAIL": 0, "MISSING": 0}
    for figure in figures:
        if figure.status in counts:
            counts[figure.status] += 1
    return counts


def document(sections: Sequence[tuple[str, Sequence[Figure]]], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON written to bench-results.json: the same figures as the table, keyed by their ids."""
    figures = [figure for _, group in sections for figure in group]
    return {
        "meta": dict(meta),
        "verdict": verdict(figures),
        "figures": {figure.key: figure.as_dict() for figure in figures},
    }
