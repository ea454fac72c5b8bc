"""Duration statistics: pure functions over recent run durations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

HISTORY = 50  # runs considered for the automatic `slow` threshold
MIN_HISTORY = 10  # runs needed before it applies
SLOW_FACTOR = 2.0  # slow: longer than this times the p95
SUGGEST_FACTOR = 3.0  # suggested max_runtime: this times the p95


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def slow_threshold(history: Sequence[float]) -> float | None:
    """The automatic slow threshold (2 x p95), or None with fewer than 10 runs."""
    if len(history) < MIN_HISTORY:
        return None
    return SLOW_FACTOR * percentile(list(history)[-HISTORY:], 95)  # a deque has no slices


@dataclass(frozen=True, slots=True)
class DurationSummary:
    count: int
    p50: float
    p95: float
    max: float
    suggested_max_runtime: int

    def to_json(self) -> dict[str, float | int]:
        return {"count": self.count, "p50": round(self.p50, 3), "p95": round(self.p95, 3),
                "max": round(self.max, 3), "suggested_max_runtime": self.suggested_max_runtime}


def summarize(durations: Sequence[float]) -> DurationSummary | None:
    if not durations:
        return None
    p95 = percentile(durations, 95)
    # Round the suggestion up to a whole minute past a minute: people write "12m", not "11m23s".
    suggestion = max(1, math.ceil(SUGGEST_FACTOR * p95))
    if suggestion > 60:
        suggestion = math.ceil(suggestion / 60) * 60
    return DurationSummary(len(durations), percentile(durations, 50), p95, max(durations), suggestion)
