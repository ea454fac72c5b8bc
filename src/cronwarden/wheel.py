"""Deadline bookkeeping for the timer task: the wheel, and the clock seam.

The wheel keeps one bucket per tick (RESOLUTION, 10 ms) of wall-clock (UTC
epoch) time, so rounding a deadline up to its bucket adds at most 10 ms.
Scheduling into an existing bucket and cancelling are O(1) dict/set
operations; a heap holds only the distinct slots that have timers (never
more than the number of timers), so only the first timer of a new slot pays
O(log slots). Firing pops whole buckets. Nothing here sleeps or reads a clock: the daemon's timer
task asks :meth:`TimerWheel.next_time` how long to sleep, and
:meth:`TimerWheel.pop_due` what is due at the time it read.

Deadlines are wall-clock times because schedules are; sleeping is done on the
monotonic clock. :class:`Clock` is the seam tests replace.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from datetime import datetime, timezone
from typing import Hashable, Iterable

RESOLUTION = 0.01  # seconds per bucket


class TimerWheel:
    def __init__(self) -> None:
        self._buckets: dict[int, set[Hashable]] = {}
        self._where: dict[Hashable, int] = {}
        self._heap: list[int] = []

    def __len__(self) -> int:
        return len(self._where)

    def schedule(self, key: Hashable, when: float) -> None:
        """(Re)schedule `key` at epoch seconds `when` (rounded up to its bucket)."""
        slot = math.ceil(when / RESOLUTION)
        old = self._where.get(key)
        if old == slot:
            return
        if old is not None:
            self._buckets[old].discard(key)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = set()
            heapq.heappush(self._heap, slot)
        bucket.add(key)
        self._where[key] = slot

    def schedule_many(self, timers: Iterable[tuple[Hashable, float]]) -> None:
        """schedule(key, when) for each pair in turn, in bulk: keys new to the wheel are
        grouped by slot first, so each bucket is filled (and pushed) once."""
        ceil, where = math.ceil, self._where
        by_slot: dict[int, list[Hashable]] = {}
        for key, when in timers:
            if key in where:
                # A key already on the wheel (or met twice): the one-by-one way, after
                # what was grouped so far, so the last time given for it wins.
                self._add_grouped(by_slot)
                by_slot = {}
                self.schedule(key, when)
                continue
            slot = ceil(when / RESOLUTION)
            group = by_slot.get(slot)
            if group is None:
                by_slot[slot] = [key]
            else:
                group.append(key)
            where[key] = slot
        self._add_grouped(by_slot)

    def _add_grouped(self, by_slot: dict[int, list[Hashable]]) -> None:
        buckets, heap = self._buckets, self._heap
        for slot, keys in by_slot.items():
            bucket = buckets.get(slot)
            if bucket is None:
                buckets[slot] = set(keys)
                heapq.heappush(heap, slot)
            else:
                bucket.update(keys)

    def schedule_before(self, key: Hashable, when: float) -> None:
        """Schedule `key` at `when` unless it is already set to fire earlier."""
        old = self._where.get(key)
        if old is None or old > math.ceil(when / RESOLUTION):
            self.schedule(key, when)

    def cancel(self, key: Hashable) -> None:
        slot = self._where.pop(key, None)
        if slot is not None:
            self._buckets[slot].discard(key)

    def next_time(self) -> float | None:
        """Epoch time of the earliest non-empty bucket, or None."""
        heap = self._heap
        while heap:
            slot = heap[0]
            if self._buckets.get(slot):
                return slot * RESOLUTION
            heapq.heappop(heap)
            self._buckets.pop(slot, None)
        return None

    def pop_due(self, now: float) -> list[Hashable]:
        """Remove and return every key due at or before `now`."""
        due: list[Hashable] = []
        heap = self._heap
        limit = math.floor(now / RESOLUTION + 1e-9)
        while heap and heap[0] <= limit:
            slot = heapq.heappop(heap)
            bucket = self._buckets.pop(slot, None)
            if bucket:
                for key in bucket:
                    del self._where[key]
                due.extend(bucket)
        return due

    def all_keys(self) -> list[Hashable]:
        return list(self._where)


class Clock:
    """Wall-clock and monotonic time; tests substitute a fake."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
