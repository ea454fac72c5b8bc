"""Deadline bookkeeping for the timer task: the wheel, and the clock seam.

Time is counted in ticks of RESOLUTION (1 ms) of wall-clock (UTC epoch)
time; a deadline is rounded up to its tick, so a timer fires at most 1 ms
late and never early. Nothing here sleeps or reads a clock: the daemon's timer
task asks :meth:`TimerWheel.next_time` how long to sleep, and
:meth:`TimerWheel.pop_due` what is due at the time it read.

The wheel is a hashed hierarchical timing wheel (Varghese & Lauck, scheme 7;
the Linux kernel's and Kafka's timer wheels are of this kind), so that no
operation costs more with more timers:

* Five levels of 1,024 buckets. Level 0 has a bucket per tick, level 1 a
  bucket per 1,024 ticks (1.024 s), level 2 per 1,024² ticks (17.5 min), then
  12.4 days and 34.8 years. Bucket j of level L holds the timers whose tick has digit
  j in base 1,024 at position L and agrees with the wheel's position above L:
  a timer sits on the level of the highest digit in which its tick differs
  from the position. That place is a function of (tick, position) alone, so
  :meth:`~TimerWheel.cancel` works it out from the tick kept in ``_where``
  instead of storing a reference per timer.
* Advancing the position to ``now`` visits only the buckets that hold timers,
  found through one bit mask per level: level-0 buckets fire whole; a higher
  bucket whose range begins is emptied and its timers fired or re-placed on
  lower levels ("cascading": a timer 17.5 min to 12.4 days ahead moves twice, one
  1 s to 17.5 min ahead once). So schedule, reschedule and cancel are O(1),
  firing is O(1) amortised per timer, and finding the next bucket costs at
  most a few integer operations per level: nothing grows with the number of
  timers.
* The wheel keeps the earliest tick of its timers (and each bucket above
  level 0 its own): :meth:`~TimerWheel.next_time` is one attribute, and
  :meth:`~TimerWheel.pop_due` before that time returns at once. Both are
  exact, except after a cancel (see next_time).
* Deadlines the position has already passed wait in a ``late`` bucket and fire
  at the next ``pop_due``; deadlines beyond the levels' reach (35,700 years,
  or across a sign change) wait in a ``far`` bucket, looked at again only
  when the position reaches their block.
* The position is set by the first ``pop_due`` (or ``next_time``); until then
  scheduling only records the tick, so the daemon's start-up fills the wheel
  in one pass. If the wall clock is set back, a ``pop_due`` before the
  position that finds something due rebuilds the wheel there once
  (O(timers)).

Deadlines are wall-clock times because schedules are; sleeping is done on the
monotonic clock. :class:`Clock` is the seam tests replace.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timezone
from typing import Hashable, Iterable

RESOLUTION = 0.001  # seconds per tick

BITS = 10  # log2 of the buckets per level (8 and 12 measured much the same in bench/wheel.py)
SIZE = 1 << BITS
MASK = SIZE - 1
LEVELS = 5
SPAN = BITS * LEVELS  # a timer whose tick differs from the position in a bit at or above this is "far"
LATE, FAR = -1, -2  # indexes of the two extra buckets, after the LEVELS * SIZE of the levels


def _index(t: int, c: int) -> int:
    """The bucket of a timer due at tick `t` while the wheel stands at tick `c`: level * SIZE + digit."""
    if t <= c:
        return LATE
    x = t ^ c
    if x >> SPAN:  # also when the signs differ (x < 0)
        return FAR
    level = (x.bit_length() - 1) // BITS
    return (level << BITS) | ((t >> (level * BITS)) & MASK)


def _bad_deadline(when: object) -> ValueError:
    return ValueError(f"timer deadline must be a finite epoch time in seconds, not {when!r}")


class TimerWheel:
    def __init__(self) -> None:
        self._where: dict[Hashable, int] = {}  # key -> its tick
        self._c: int | None = None  # the position: every tick up to it has been handed out
        self._buckets: list[set[Hashable] | None] = []  # made when first needed
        self._occupied: list[int] = []  # per level, a bit per bucket that may hold timers
        self._low: list[float] = []  # per bucket of levels 1 and up, no timer in it is earlier
        self._far_low: int | None = None  # no far timer is earlier
        # No timer is earlier than this tick: pop_due before it returns at once, and next_time
        # answers it. Exact after pop_due and after scheduling; a cancel can leave it early.
        self._wake: float = math.inf
        self._wake_at = math.inf  # the same as an epoch time: _wake * RESOLUTION
        self._clear()

    def _clear(self) -> None:
        self._buckets = [None] * ((LEVELS << BITS) + 2)
        self._occupied = [0] * LEVELS
        self._low = [math.inf] * (LEVELS << BITS)
        self._far_low = None
        self._wake = self._wake_at = math.inf

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._where

    def when(self, key: Hashable) -> float | None:
        """When `key`'s timer fires (epoch seconds, rounded up to its tick); None if not set."""
        t = self._where.get(key)
        return None if t is None else t * RESOLUTION

    def _put(self, key: Hashable, t: int, c: int) -> None:
        if t < self._wake:
            self._wake, self._wake_at = t, t * RESOLUTION
        x = t ^ c
        if t <= c:
            i = LATE
        elif 0 < x < SIZE:  # level 0 (x < 0 when the signs differ: far)
            i = t & MASK
            self._occupied[0] |= 1 << i
        elif x >> SPAN:
            i = FAR
            if self._far_low is None or t < self._far_low:
                self._far_low = t
        else:
            level = (x.bit_length() - 1) // BITS
            j = (t >> (level * BITS)) & MASK
            i = (level << BITS) | j
            self._occupied[level] |= 1 << j
            if t < self._low[i]:
                self._low[i] = t
        bucket = self._buckets[i]
        if bucket is None:
            self._buckets[i] = {key}
        else:
            bucket.add(key)

    def schedule(self, key: Hashable, when: float) -> None:
        """(Re)schedule `key` at epoch seconds `when` (rounded up to its tick)."""
        try:
            t = math.ceil(when / RESOLUTION)
        except (ValueError, OverflowError, TypeError):
            raise _bad_deadline(when) from None
        where = self._where
        old = where.get(key)
        if old == t:
            return
        where[key] = t
        c = self._c
        if c is None:
            if t < self._wake:
                self._wake, self._wake_at = t, t * RESOLUTION
            return
        if old is not None:
            self._buckets[_index(old, c)].discard(key)  # type: ignore[union-attr]
        self._put(key, t, c)

    def schedule_many(self, timers: Iterable[tuple[Hashable, float]]) -> None:
        """schedule(key, when) for each pair in turn, in bulk (the daemon's start-up and reloads)."""
        if self._c is not None:
            for key, when in timers:
                self.schedule(key, when)
            return
        # Not placed yet: recording the ticks is all there is to do.
        where, ceil = self._where, math.ceil
        for key, when in timers:
            try:
                where[key] = ceil(when / RESOLUTION)
            except (ValueError, OverflowError, TypeError):
                raise _bad_deadline(when) from None
        if where:
            self._wake = min(where.values())
            self._wake_at = self._wake * RESOLUTION

    def schedule_before(self, key: Hashable, when: float) -> None:
        """Schedule `key` at `when` unless it is already set to fire earlier."""
        old = self._where.get(key)
        if old is None:
            self.schedule(key, when)
            return
        try:
            earlier = old > math.ceil(when / RESOLUTION)
        except (ValueError, OverflowError, TypeError):
            raise _bad_deadline(when) from None
        if earlier:
            self.schedule(key, when)

    def cancel(self, key: Hashable) -> None:
        t = self._where.pop(key, None)
        if t is not None and self._c is not None:
            self._buckets[_index(t, self._c)].discard(key)  # type: ignore[union-attr]
            # The bucket's bit stays set, and _wake may now be early: the wake-up that reaches
            # them finds the bucket empty, clears the bit and works _wake out again.

    def next_time(self) -> float | None:
        """Epoch time of the earliest timer's tick, or None when there are none.

        Exact, except after a cancel or a reschedule took the earliest timer
        away: then it can be early, until the next ``pop_due``. The daemon then
        wakes, finds nothing due and asks again; that wake-up still makes
        progress, since ``pop_due`` works the earliest tick out anew from the
        buckets (cascading those whose range has begun), so the next answer is
        later than the time it was given. It cannot loop without sleeping:
        ``pop_due(next_time())`` always leaves ``next_time()`` later.
        """
        where = self._where
        if not where:
            return None
        if self._c is None:
            self._place_all(min(where.values()) - 1)
        return self._wake_at

    def pop_due(self, now: float) -> list[Hashable]:
        """Remove and return every key due at or before `now`."""
        if now < self._wake_at and self._c is not None:
            return []  # nothing is due: the position stays behind `now`, which is fine
        limit = math.floor(now / RESOLUTION)
        # The last tick t with t * RESOLUTION <= now, so that pop_due(next_time()) always fires
        # what next_time() answered for (now / RESOLUTION can round to either side).
        if limit * RESOLUTION > now:
            limit -= 1
        elif (limit + 1) * RESOLUTION <= now:
            limit += 1
        c = self._c
        if c is None or limit < c:  # first call, or the wall clock was set back
            self._place_all(limit)
            c = limit
        buckets, occupied = self._buckets, self._occupied
        due: list[Hashable] = []
        self._fire_bucket(LATE, due)
        while True:
            for level in range(LEVELS):
                m = occupied[level]
                if m:
                    break
            else:
                if not buckets[FAR] or (start := self._far_start(c)) > limit:
                    break
                c = start
                self._cascade(FAR, c, limit, due)
                continue
            if level == 0:
                # Fire every bucket of this turn of level 0 up to `limit`, in one go.
                base = c >> BITS << BITS
                span = limit - base
                ready = m if span > MASK else m & ((2 << span) - 1)
                occupied[0] = m ^ ready
                while ready:
                    low = ready & -ready
                    ready ^= low
                    self._fire_bucket(low.bit_length() - 1, due)
                if occupied[0]:
                    break  # the rest of level 0 is after `limit`, and every higher level later still
                continue
            j = (m & -m).bit_length() - 1
            shift = level * BITS
            start = (c >> (shift + BITS) << (shift + BITS)) | (j << shift)
            if start > limit:
                break
            occupied[level] = m ^ (1 << j)
            c = start
            self._cascade((level << BITS) | j, c, limit, due)
        self._c = limit
        self._wake = wake = self._earliest(limit)
        self._wake_at = wake * RESOLUTION
        return due

    def _fire_bucket(self, i: int, due: list[Hashable]) -> None:
        """Bucket i fires whole: its keys leave the wheel and join `due`."""
        bucket = self._buckets[i]
        if bucket:
            self._buckets[i] = None
            where = self._where
            for key in bucket:
                del where[key]
            due.extend(bucket)

    def _earliest(self, c: int) -> float:
        """No timer is earlier than this tick (exact unless cancels left a bucket's lower bound
        behind); inf when there are none. Clears the bits of buckets that cancels emptied."""
        buckets = self._buckets
        if buckets[LATE]:
            return min(self._where[key] for key in buckets[LATE])  # type: ignore[union-attr]
        occupied = self._occupied
        for level in range(LEVELS):
            m = occupied[level]
            while m:
                j = (m & -m).bit_length() - 1
                i = (level << BITS) | j
                if buckets[i]:
                    if not level:
                        return (c >> BITS << BITS) | j
                    shift = level * BITS
                    return max((c >> (shift + BITS) << (shift + BITS)) | (j << shift), self._low[i])
                m ^= 1 << j
                occupied[level] = m
                if level:
                    self._low[i] = math.inf
        if buckets[FAR]:
            return max(self._far_start(c), self._far_low)  # type: ignore[type-var]
        return math.inf

    def _cascade(self, i: int, c: int, limit: int, due: list[Hashable]) -> None:
        """The position has reached the start of bucket `i`'s range (`c`): fire its timers due
        by `limit`, and re-place the others on lower levels. (The far bucket's through _put; the
        levels' below, the same steps written out, as every timer more than one turn of level 0
        ahead passes here.)"""
        buckets, where = self._buckets, self._where
        bucket = buckets[i]
        buckets[i] = None
        if not bucket:  # emptied by cancels
            if i != FAR:
                self._low[i] = math.inf
            return
        if i == FAR:
            self._far_low = None
            for key in bucket:
                t = where[key]
                if t <= limit:
                    del where[key]
                    due.append(key)
                else:
                    self._put(key, t, c)
            return
        self._low[i] = math.inf
        occupied, lows = self._occupied, self._low
        for key in bucket:
            t = where[key]
            if t <= limit:
                del where[key]
                due.append(key)
                continue
            x = t ^ c  # 0 < x < SIZE ** level: the timer goes to a lower level
            if x < SIZE:
                k = t & MASK
                occupied[0] |= 1 << k
            else:
                level = (x.bit_length() - 1) // BITS
                j = (t >> (level * BITS)) & MASK
                k = (level << BITS) | j
                occupied[level] |= 1 << j
                if t < lows[k]:
                    lows[k] = t
            into = buckets[k]
            if into is None:
                buckets[k] = {key}
            else:
                into.add(key)

    def _far_start(self, c: int) -> int:
        """The first tick at which a far timer may come within the levels' reach."""
        assert self._far_low is not None
        return max(c + 1, self._far_low >> SPAN << SPAN)

    def _place_all(self, c: int) -> None:
        """Set the position to `c` and place every timer anew: the first placement, or after
        the wall clock was set back (O(timers), once)."""
        self._c = c
        self._clear()
        put = self._put
        for key, t in self._where.items():
            put(key, t, c)

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
