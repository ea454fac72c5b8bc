"""Duration statistics."""

from __future__ import annotations

import pytest

from cronwarden.stats import percentile, slow_threshold, summarize


def test_percentiles_use_the_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 100) == 100
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_the_slow_threshold_is_twice_the_p95_of_the_last_fifty_runs() -> None:
    assert slow_threshold([10.0] * 9) is None
    assert slow_threshold([10.0] * 10) == 20.0
    history = [1000.0] * 50 + [10.0] * 50  # only the last 50 count
    assert slow_threshold(history) == 20.0


def test_the_summary_suggests_three_times_the_p95_rounded_to_minutes() -> None:
    summary = summarize([5.0] * 19 + [6.0])
    assert summary is not None
    assert (summary.count, summary.p50, summary.p95, summary.max) == (20, 5.0, 5.0, 6.0)
    assert summary.suggested_max_runtime == 15
    long = summarize([600.0] * 10 + [1000.0])
    assert long is not None and long.suggested_max_runtime == 3000  # 3 x 1000 s, whole minutes
    assert summarize([]) is None


def test_the_slow_threshold_reads_the_daemons_deque_of_durations() -> None:
    from collections import deque

    durations = deque([float(i) for i in range(1, 101)], maxlen=50)
    assert slow_threshold(durations) == slow_threshold(list(durations))


def test_a_history_keeps_the_last_fifty_runs_and_gives_the_threshold_of_a_plain_list() -> None:
    import random

    from cronwarden.stats import HISTORY, History

    rng = random.Random(7)
    plain: list[float] = [rng.choice([1.0, 2.5, 3.0]) for _ in range(30)]
    history = History(plain)
    for _ in range(500):
        duration = rng.choice([0.5, 1.0, 2.5, 3.0, rng.uniform(0, 100)])  # repeated values as well
        assert slow_threshold(history) == slow_threshold(plain)
        history.append(duration)
        plain.append(duration)
        assert list(history) == plain[-HISTORY:] and len(history) == min(len(plain), HISTORY)
    assert history[-1] == plain[-1] and history[0] == plain[-HISTORY]
    assert History(range(1, 101))[0] == 51  # built from more than it keeps: the last fifty
