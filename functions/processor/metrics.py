"""Counts per event type, emitted once per invocation as CloudWatch embedded metrics."""

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
        for (name, dimension), value in sorted(counts.items()):
            with single_metric(
                name=name,
                unit=MetricUnit.Count,
                value=value,
                namespace=METRICS_NAMESPACE,
                default_dimensions={"service": PROCESSOR_SERVICE},
            ) as metric:
                metric.add_dimension(name="event_type", value=dimension)
