"""Duration statistics: pure functions over recent run durations."""

from __future__ import annotations

import math
from bisect import insort
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

HISTORY = 50  # runs considered for the automatic `slow` threshold
MIN_HISTORY = 10  # runs needed before it applies
SLOW_FACTOR = 2.0  # slow: longer than this times the p95
SUGGEST_FACTOR = 3.0  # suggested max_runtime: this times the p95


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    return _ranked(sorted(values), q)


def _ranked(ordered: Sequence[float], q: float) -> float:
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


class History(Sequence[float]):
    """The durations of a monitor's recent successful runs, oldest first, at most HISTORY
    of them, and the same durations kept sorted as they come (an insertion into a short
    list): the automatic slow threshold is read at the end of every run, and sorting the
    durations each time cost a run's end ping more than the rest of its step."""

    __slots__ = ("_recent", "_ordered")

    def __init__(self, durations: Iterable[float] = ()) -> None:
        self._recent: deque[float] = deque(durations, maxlen=HISTORY)
        self._ordered = sorted(self._recent)

    def append(self, duration: float) -> None:
        recent = self._recent
        if len(recent) == HISTORY:
            self._ordered.remove(recent[0])  # an equal value: which one leaves does not matter
        recent.append(duration)
        insort(self._ordered, duration)

    def __len__(self) -> int:
        return len(self._recent)

    def __iter__(self) -> Iterator[float]:
        return iter(self._recent)

    def __getitem__(self, index):  # type: ignore[no-untyped-def,override]
        return list(self._recent)[index]


def slow_threshold(history: Sequence[float]) -> float | None:
    """The automatic slow threshold (2 x p95), or None with fewer than 10 runs."""
    if type(history) is History:
        ordered = history._ordered
        return SLOW_FACTOR * _ranked(ordered, 95) if len(ordered) >= MIN_HISTORY else None
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
