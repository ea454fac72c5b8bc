"""TimerWheel.schedule_many leaves the wheel as schedule() one pair at a time does."""

from __future__ import annotations

import random

import pytest

from cronwarden.wheel import TimerWheel


def state(wheel: TimerWheel) -> tuple[dict, list]:
    out = []
    while (t := wheel.next_time()) is not None:
        out.append((t, sorted(wheel.pop_due(t))))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_schedule_many_is_schedule_in_turn(seed: int) -> None:
    rng = random.Random(seed)
    one, bulk = TimerWheel(), TimerWheel()
    for key in range(rng.randrange(0, 30)):  # some keys already on the wheel
        when = 1000 + rng.randrange(0, 50) / 7
        one.schedule(f"k{key}", when)
        bulk.schedule(f"k{key}", when)
    one.cancel("k1")
    bulk.cancel("k1")
    pairs = [(f"k{rng.randrange(0, 60)}", 1000 + rng.randrange(0, 80) / 3) for _ in range(rng.randrange(0, 120))]
    for key, when in pairs:
        one.schedule(key, when)
    bulk.schedule_many(pairs)
    assert len(one) == len(bulk)
    assert sorted(one.all_keys()) == sorted(bulk.all_keys())
    assert state(one) == state(bulk)


def test_schedule_many_on_an_empty_wheel_fills_each_bucket_once() -> None:
    wheel = TimerWheel()
    wheel.schedule_many([(f"m{i}", 5000.0 + (i % 3)) for i in range(30)] + [("late", 9000.0)])
    assert len(wheel) == 31
    assert wheel.next_time() == pytest.approx(5000.0)
    assert sorted(wheel.pop_due(5000.0)) == sorted(f"m{i}" for i in range(0, 30, 3))
    assert wheel.pop_due(5002.0) and wheel.pop_due(8999.0) == [] and wheel.pop_due(9000.0) == ["late"]
    assert len(wheel) == 0
