"""The timer wheel's bookkeeping, with plain numbers for time."""

from __future__ import annotations

from cronwarden.wheel import RESOLUTION, TimerWheel


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
    wheel.schedule("x", 1000.013)
    nxt = wheel.next_time()
    assert nxt is not None and 1000.013 <= nxt <= 1000.013 + RESOLUTION
    assert wheel.pop_due(1000.013) == []
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
