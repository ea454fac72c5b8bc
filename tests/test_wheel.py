"""The timer wheel's bookkeeping, with plain numbers for time."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from cronwarden.wheel import LEVELS, RESOLUTION, SIZE, TimerWheel


def test_keys_fire_in_deadline_order_and_only_when_due() -> None:
    wheel = TimerWheel()
    wheel.schedule("b", 1000.5)
    wheel.schedule("a", 1000.0)
    wheel.schedule("c", 2000.0)
    assert wheel.next_time() == 1000.0
    assert wheel.pop_due(999.9) == []
    assert wheel.pop_due(1000.0) == ["a"]
    assert wheel.pop_due(1000.5) == ["b"]
    assert len(wheel) == 1 and wheel.next_time() == 2000.0


def test_a_deadline_is_never_fired_early_and_at_most_one_tick_late() -> None:
    wheel = TimerWheel()
    wheel.schedule("x", 1000.0134)  # between two ticks
    nxt = wheel.next_time()
    assert nxt is not None and 1000.0134 <= nxt <= 1000.0134 + RESOLUTION
    assert wheel.pop_due(1000.0134) == []
    assert wheel.pop_due(nxt) == ["x"]


def test_rescheduling_moves_a_key_and_cancel_removes_it() -> None:
    wheel = TimerWheel()
    wheel.schedule("x", 10.0)
    wheel.schedule("x", 20.0)
    assert wheel.pop_due(15.0) == []
    wheel.cancel("x")
    wheel.cancel("x")  # twice is harmless
    assert wheel.pop_due(100.0) == [] and len(wheel) == 0
    assert wheel.next_time() is None


def test_emptied_buckets_are_skipped() -> None:
    wheel = TimerWheel()
    for i in range(100):
        wheel.schedule(i, 10.0 + i)
    for i in range(99):
        wheel.cancel(i)
    assert wheel.next_time() == 109.0
    assert wheel.pop_due(1e9) == [99]


def test_many_keys_in_one_bucket_fire_together() -> None:
    wheel = TimerWheel()
    for i in range(1000):
        wheel.schedule(i, 50.0)
    assert sorted(wheel.pop_due(50.0)) == list(range(1000))


def test_schedule_before_keeps_an_earlier_timer_and_moves_a_later_one() -> None:
    wheel = TimerWheel()
    wheel.schedule("a", 10.0)
    wheel.schedule_before("a", 20.0)  # later: the earlier timer stays
    assert wheel.next_time() == 10.0
    wheel.schedule_before("a", 5.0)  # earlier: moved
    assert wheel.next_time() == 5.0
    assert wheel.pop_due(5.0) == ["a"]
    wheel.schedule_before("b", 7.0)  # not set: set
    assert wheel.pop_due(7.0) == ["b"]


# --- The hierarchical wheel against a plain model -------------------------------------------

EPOCH = 1_800_000_000.0  # a wall-clock time of the daemon's era (ticks of ~2^37)
SPANS = [0.0, 0.004, 0.01, 0.5, 10.23, 10.24, 10.25, 30.0, 10485.76, 11000.0, 3600.0, 86400.0, 86400.0 * 124,
         86400.0 * 400, 86400.0 * 365 * 30, 86400.0 * 365 * 400, 86400.0 * 365 * 400_000]  # to past the levels


class Model:
    """What the wheel must do, the slow and obvious way: a dict of ticks."""

    def __init__(self) -> None:
        self.ticks: dict[object, int] = {}

    def schedule(self, key: object, when: float) -> None:
        self.ticks[key] = math.ceil(when / RESOLUTION)

    def schedule_before(self, key: object, when: float) -> None:
        if key not in self.ticks or self.ticks[key] > math.ceil(when / RESOLUTION):
            self.schedule(key, when)

    def pop_due(self, now: float) -> list[object]:
        due = [key for key, tick in self.ticks.items() if tick * RESOLUTION <= now]
        for key in due:
            del self.ticks[key]
        return due

    def earliest(self) -> float | None:
        return min(self.ticks.values()) * RESOLUTION if self.ticks else None


def check_against(wheel: TimerWheel, model: Model) -> None:
    assert len(wheel) == len(model.ticks)
    assert sorted(wheel.all_keys()) == sorted(model.ticks)
    assert wheel._where == model.ticks
    if wheel._c is not None:  # every timer in exactly one bucket: rescheduling leaks nothing
        held = list(itertools.chain.from_iterable(filter(None, wheel._buckets)))
        assert sorted(held) == sorted(model.ticks)


def random_when(rng: random.Random, now: float) -> float:
    span = rng.choice(SPANS)
    sign = -1 if rng.random() < 0.15 else 1  # some in the past
    return now + sign * (span + rng.choice([0.0, 0.0, RESOLUTION, -RESOLUTION, rng.uniform(0, span or 1)]))


@pytest.mark.parametrize("seed", range(60))
def test_random_operations_match_the_model(seed: int) -> None:
    rng = random.Random(seed)
    wheel, model = TimerWheel(), Model()
    now = EPOCH + rng.uniform(-1e6, 1e6)
    keys = [f"k{i}" for i in range(rng.choice([5, 40, 300]))]
    for _ in range(400):
        op = rng.random()
        if op < 0.35:
            key, when = rng.choice(keys), random_when(rng, now)
            wheel.schedule(key, when)
            model.schedule(key, when)
        elif op < 0.45:
            pairs = [(rng.choice(keys), random_when(rng, now)) for _ in range(rng.randrange(0, 30))]
            wheel.schedule_many(pairs)
            for key, when in pairs:
                model.schedule(key, when)
        elif op < 0.55:
            key, when = rng.choice(keys), random_when(rng, now)
            wheel.schedule_before(key, when)
            model.schedule_before(key, when)
        elif op < 0.65:
            key = rng.choice(keys)
            wheel.cancel(key)
            model.ticks.pop(key, None)
        else:
            step = rng.choice(SPANS[:-1]) * rng.choice([1, 1, 1, 1, 0.5, 1.0001])
            if rng.random() < 0.05:
                step = -step  # the wall clock set back
            now += step
            if rng.random() < 0.3 and (nxt := wheel.next_time()) is not None:
                now = nxt  # wake exactly when told
            got = wheel.pop_due(now)
            assert len(got) == len(set(got))  # each key once
            assert sorted(got) == sorted(model.pop_due(now))
        nxt, earliest = wheel.next_time(), model.earliest()
        assert (nxt is None) == (earliest is None)
        if nxt is not None:
            assert nxt <= earliest  # early is allowed (see next_time), late never
        check_against(wheel, model)


@pytest.mark.parametrize("seed", range(20))
def test_next_time_is_exact_while_nothing_is_cancelled_or_moved(seed: int) -> None:
    rng = random.Random(seed)
    wheel, model = TimerWheel(), Model()
    now = EPOCH
    wheel.pop_due(now)
    for i in range(500):
        if rng.random() < 0.5:
            when = random_when(rng, now)
            wheel.schedule(i, when)
            model.schedule(i, when)
        else:
            now += rng.choice(SPANS[:-3])
            assert sorted(wheel.pop_due(now)) == sorted(model.pop_due(now))
        assert wheel.next_time() == model.earliest()


@pytest.mark.parametrize("seed", range(20))
def test_following_next_time_fires_everything_in_order_and_always_progresses(seed: int) -> None:
    rng = random.Random(seed)
    wheel, model = TimerWheel(), Model()
    now = EPOCH + rng.uniform(0, 1e5)
    wheel.pop_due(now)
    for i in range(300):
        when = random_when(rng, now)
        wheel.schedule(i % 120, when)  # moved later and earlier
        model.schedule(i % 120, when)
    for i in range(0, 120, 3):
        wheel.cancel(i)
        model.ticks.pop(i, None)
    fired: list[int] = []
    wake_ups = 0
    while (nxt := wheel.next_time()) is not None:
        assert nxt > now or wake_ups == 0  # a wake-up always moves the answer on
        now = nxt
        due = wheel.pop_due(now)
        assert sorted(due) == sorted(model.pop_due(now))
        fired.extend(due)
        wake_ups += 1
    assert not model.ticks and len(wheel) == 0
    assert wake_ups <= len(fired) + 300 + 40  # an early answer needs a timer moved or cancelled


def test_pop_due_at_next_time_fires_even_where_the_float_rounds_low() -> None:
    # tick * 0.01 / 0.01 comes back just under the tick for ~8% of ticks of this era.
    rng = random.Random(5)
    wheel = TimerWheel()
    for when in sorted(rng.uniform(EPOCH, EPOCH + 1e6) for _ in range(2000)):
        wheel.schedule("x", when)
        nxt = wheel.next_time()
        assert nxt is not None and wheel.pop_due(nxt) == ["x"]


@pytest.mark.parametrize("level", range(LEVELS))
def test_timers_on_each_side_of_a_cascade_boundary(level: int) -> None:
    wheel = TimerWheel()
    start = 1 << 50  # a tick whose low 50 bits are zero: a boundary of every level
    wheel.pop_due(start * RESOLUTION)
    edge = start + (SIZE ** level) * 3  # the start of a bucket on `level`
    for d in (-2, -1, 0, 1, 2):
        wheel.schedule(d, (edge + d - 0.5) * RESOLUTION)  # rounded up to tick edge + d
    assert sorted(wheel._where.values()) == [edge - 2, edge - 1, edge, edge + 1, edge + 2]
    for d in (-2, -1, 0, 1, 2):
        at = (edge + d) * RESOLUTION
        assert wheel.next_time() == at
        assert wheel.pop_due((edge + d - 1) * RESOLUTION) == []
        assert wheel.pop_due(at) == [d]
    assert len(wheel) == 0 and wheel.next_time() is None


def test_a_far_future_deadline_waits_and_fires() -> None:
    wheel = TimerWheel()
    wheel.pop_due(EPOCH)
    feb29 = EPOCH + 3 * 365 * 86400  # a cron `0 0 29 2 *` can be years ahead
    beyond = 2e13  # past the levels' reach (year ~636,000)
    wheel.schedule("feb29", feb29)
    wheel.schedule("beyond", beyond)
    assert wheel.next_time() == pytest.approx(feb29)
    assert wheel.pop_due(feb29 - 1) == []
    assert wheel.pop_due(feb29) == ["feb29"]
    nxt = wheel.next_time()
    assert nxt is not None and nxt <= beyond
    assert wheel.pop_due(beyond - 1) == []
    assert wheel.pop_due(beyond) == ["beyond"] and len(wheel) == 0


def test_past_deadlines_fire_at_the_next_pop_due() -> None:
    wheel = TimerWheel()
    wheel.pop_due(EPOCH)
    wheel.schedule("yesterday", EPOCH - 86400)
    wheel.schedule("now", EPOCH)
    assert wheel.next_time() == pytest.approx(EPOCH - 86400)
    assert sorted(wheel.pop_due(EPOCH)) == ["now", "yesterday"]


def test_the_wall_clock_set_back_fires_nothing_early() -> None:
    wheel = TimerWheel()
    wheel.schedule("a", EPOCH + 10)
    wheel.pop_due(EPOCH)
    wheel.schedule("b", EPOCH - 1800)  # behind the position: waits in the late bucket
    assert wheel.pop_due(EPOCH - 3600) == []  # an hour back: "b" is not due yet
    assert wheel.pop_due(EPOCH - 1800) == ["b"]
    assert wheel.pop_due(EPOCH + 9.99) == [] and wheel.pop_due(EPOCH + 10) == ["a"]


def test_a_key_rescheduled_many_times_is_held_once() -> None:
    wheel = TimerWheel()
    wheel.pop_due(EPOCH)
    rng = random.Random(1)
    for _ in range(10_000):
        wheel.schedule("k", EPOCH + rng.choice(SPANS[:-1]) + rng.random())
    assert sum(len(bucket) for bucket in wheel._buckets if bucket) == 1 and len(wheel) == 1


def test_rescheduling_earlier_and_later_within_and_across_levels() -> None:
    wheel = TimerWheel()
    wheel.pop_due(EPOCH)
    wheel.schedule("x", EPOCH + 86400)
    wheel.schedule("x", EPOCH + 1)  # earlier, onto level 0
    wheel.schedule("x", EPOCH + 700)  # later, onto level 2
    assert wheel.pop_due(EPOCH + 699.99) == []
    assert wheel.next_time() == pytest.approx(EPOCH + 700)
    wheel.schedule_before("x", EPOCH + 800)  # later: stays
    wheel.schedule_before("x", EPOCH + 699.995)  # rounds to the same tick: stays
    assert wheel.pop_due(EPOCH + 700) == ["x"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_deadline_that_is_not_a_time_is_refused_in_one_line(bad: float) -> None:
    wheel = TimerWheel()
    for call in (lambda: wheel.schedule("x", bad), lambda: wheel.schedule_many([("x", bad)]),
                 lambda: wheel.schedule_before("x", bad)):
        with pytest.raises(ValueError, match="finite epoch time"):
            call()
    wheel.schedule("y", 5.0)
    with pytest.raises(ValueError, match="finite epoch time"):
        wheel.schedule_before("y", bad)
    assert wheel.all_keys() == ["y"]
