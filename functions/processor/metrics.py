"""Counts per event type and service-wide, emitted once per invocation as CloudWatch embedded metrics."""

from __future__ import annotations

from collections import Counter

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from klikit.events import KNOWN_EVENT_TYPES
from klikit.observability import METRICS_NAMESPACE, PROCESSOR_SERVICE

UNKNOWN_DIMENSION = "unknown"


def event_type_dimension(event_type: str) -> str:
    """The event type as a metric dimension, bounded: anything klikit has not documented is one value."""
    return event_type if event_type in KNOWN_EVENT_TYPES else UNKNOWN_DIMENSION


class BatchMetrics:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def count(self, name: str, event_type: str, value: int = 1) -> None:
        self._counts[(name, event_type_dimension(event_type))] += value

    def flush(self) -> None:
        counts, self._counts = self._counts, Counter()
        totals: Counter[str] = Counter()
        for (name, dimension), value in sorted(counts.items()):
            totals[name] += value
            self._emit(name, value, {"event_type": dimension})
        # The alarms watch the service-wide series: CloudWatch keeps each dimension set as a separate metric.
        for name, value in sorted(totals.items()):
            self._emit(name, value, {})

    @staticmethod
    def _emit(name: str, value: int, dimensions: dict[str, str]) -> None:
        with single_metric(
            name=name,
            unit=MetricUnit.Count,
            value=value,
            namespace=METRICS_NAMESPACE,
            default_dimensions={"service": PROCESSOR_SERVICE},
        ) as metric:
            for dimension, dimension_value in dimensions.items():
                metric.add_dimension(name=dimension, value=dimension_value)
