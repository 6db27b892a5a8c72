"""The benchmark harness's pure helpers: percentiles, summaries, ratios, the table and the JSON (no timing)."""

from __future__ import annotations

import json

import pytest

from bench.report import Figure, Target, document, format_table
from bench.stats import Summary, percentile, ratios


def test_percentile_interpolates_between_closest_ranks() -> None:
    samples = [4.0, 1.0, 3.0, 2.0]

    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 50) == 2.5
    assert percentile(samples, 100) == 4.0
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_percentile_refuses_no_samples_and_out_of_range_ranks() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_summary_is_the_median_with_quartiles_and_extremes() -> None:
    summary = Summary.of([5.0, 1.0, 3.0, 2.0, 4.0])

    assert (summary.median, summary.p25, summary.p75, summary.low, summary.high, summary.runs) == (3, 2, 4, 1, 5, 5)


def test_ratios_pair_runs_measured_side_by_side() -> None:
    assert ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]
    with pytest.raises(ValueError, match="as many"):
        ratios([1.0], [1.0, 2.0])


def test_targets_decide_pass_or_fail_on_the_median() -> None:
    met = Figure("a.ratio", "ratio", "x", Summary.of([1.1, 1.2, 1.3]), target=Target(1.2))
    missed = Figure("b.rate", "rate", "/s", Summary.of([18.0]), target=Target(20, at_most=False))
    informative = Figure("c.ms", "time", "ms", Summary.of([3.0]))
    missing = Figure("d.ms", "e2e", "ms", missing="the local stack did not start")

    assert [met.status, missed.status, informative.status, missing.status] == ["pass", "FAIL", "", "MISSING"]


def test_table_has_target_actual_and_result_columns_aligned() -> None:
    sections = [
        ("cold start", [Figure("cold.ratio", "receiver / boto3", "x", Summary.of([1.1, 1.2]), target=Target(1.2))]),
        ("e2e", [Figure("e2e.p99", "ack p99", "ms", missing="not landed", note="see the report")]),
    ]

    table = format_table(sections)
    lines = table.splitlines()

    assert lines[0].split() == ["figure", "median", "spread:", "p25", "..", "p75", "(runs)", "target", "result"]
    assert "[cold start]" in lines and "[e2e]" in lines
    ratio_line = next(line for line in lines if line.startswith("receiver / boto3"))
    assert "1.15x" in ratio_line and "<= 1.20x" in ratio_line and ratio_line.endswith("pass")
    assert next(line for line in lines if line.startswith("ack p99")).endswith("MISSING")
    assert "note: ack p99: see the report" in table
    assert lines[0].index("target") == lines[2 + 1].index("<= 1.20x")


def test_json_document_holds_the_same_figures_as_the_table() -> None:
    sections = [("s", [Figure("k.ms", "time", "ms", Summary.of([1.0, 2.0, 3.0]), target=Target(2.5))])]

    written = json.loads(json.dumps(document(sections, {"quick": True})))

    assert written["meta"] == {"quick": True}
    assert written["verdict"] == {"pass": 1, "FAIL": 0, "MISSING": 0}
    figure = written["figures"]["k.ms"]
    assert (figure["median"], figure["min"], figure["max"], figure["runs"]) == (2.0, 1.0, 3.0, 3)
    assert figure["target"] == {"limit": 2.5, "at_most": True} and figure["status"] == "pass"
