"""The alarm table (infra/observability.py's ALARMS) is the one list: the stack's alarms and the operator's guide
(docs/troubleshooting.md) both follow it, so an alarm added, renamed or re-thresholded in one place shows up here."""

from __future__ import annotations

import re

import pytest

from infra.config import REPO_ROOT
from infra.observability import ALARMS, AlarmRow
from tests.infra.conftest import Synthesized

GUIDE = REPO_ROOT / "docs" / "troubleshooting.md"
SECTION = "## Every alarm the stack defines"


def guide_rows() -> dict[str, str]:
    """Alarm name -> its row in the guide's alarm table."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if match := re.match(r"\| \*\*(\w+)\*\* \|", line):
            rows[match.group(1)] = line
    return rows


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_guide_lists_exactly_the_alarms_of_the_table() -> None:
    assert list(guide_rows()) == [row.name for row in ALARMS], "docs/troubleshooting.md's alarms, in ALARMS' order"


@pytest.mark.parametrize("row", ALARMS, ids=lambda row: row.name)
def test_each_alarm_row_in_the_guide_shows_its_condition_and_runbook(row: AlarmRow) -> None:
    line = guide_rows()[row.name]
    cells = [cell.strip() for cell in line.strip("|").split(" | ")]
    assert cells[1] == row.condition, f"{row.name}: the 'fires when' cell should read {row.condition!r}"
    link = row.runbook.removeprefix("docs/")
    assert f"[runbook]({link})" in line, f"{row.name}: the row should link its runbook ({link})"


@pytest.mark.parametrize("row", ALARMS, ids=lambda row: row.name)
def test_each_runbook_is_a_section_that_exists(row: AlarmRow) -> None:
    page, _, section = row.runbook.partition("#")
    headings = [line.lstrip("#") for line in (REPO_ROOT / page).read_text(encoding="utf-8").splitlines()]
    assert section in {anchor(heading) for heading in headings if heading}, f"{row.runbook} names no heading"


def test_conditions_read_as_the_operator_needs_them() -> None:
    by_name = {row.name: row for row in ALARMS}
    assert by_name["ReceiverErrors"].condition == "receiver `Errors` ≥ 1 (Sum over 5 min)"
    assert by_name["QueueBacklogAge"].condition == (
        "queue `ApproximateAgeOfOldestMessage` ≥ `queue_age_alarm_seconds` (Maximum over 5 min)"
    )
    assert by_name["DeliveriesSilent"].condition == (
        "receiver `Enqueued` < 1 (Sum over 1 h) for `silence_alarm_hours` periods"
    )


@pytest.mark.slow
@pytest.mark.xdist_group("infra")
def test_the_stack_creates_one_alarm_per_row_with_the_rows_settings(dev: Synthesized) -> None:
    created = {
        resource["Metadata"]["aws:cdk:path"].split("/")[-2]: resource["Properties"]
        for resource in dev.resources("AWS::CloudWatch::Alarm").values()
    }
    assert sorted(created) == sorted(row.name for row in ALARMS)
    for row in ALARMS:
        alarm = created[row.name]
        threshold = getattr(dev.config, row.threshold) if isinstance(row.threshold, str) else row.threshold
        periods = getattr(dev.config, str(row.evaluation_periods), row.evaluation_periods)
        assert (alarm["MetricName"], alarm["Statistic"]) == (row.metric, row.statistic), row.name
        assert (alarm["Threshold"], alarm["Period"], alarm["EvaluationPeriods"]) == (
            threshold,
            row.period_minutes * 60,
            periods,
        ), row.name
        assert alarm["ComparisonOperator"] == ("LessThanThreshold" if row.below else "GreaterThanOrEqualToThreshold")
