"""Deadline bookkeeping for the timer task: the wheel, and the clock seam.

Time is counted in ticks of RESOLUTION (10 ms) of wall-clock (UTC epoch)
time; a deadline is rounded up to its tick, so a timer fires at most 10 ms
late and never early. Nothing here sleeps or reads a clock: the daemon's timer
task asks :meth:`TimerWheel.next_time` how long to sleep, and
:meth:`TimerWheel.pop_due` what is due at the time it read.

The wheel is a hashed hierarchical timing wheel (Varghese & Lauck, scheme 7;
the Linux kernel's and Kafka's timer wheels are of this kind), so that no
operation costs more with more timers:

* Six levels of 256 buckets. Level 0 has a bucket per tick, level 1 a bucket
  per 256 ticks (2.56 s), level 2 per 256² ticks (11 min), then 46.6 h, 1.3
  years and 340 years. Bucket j of level L holds the timers whose tick has
  digit j in base 256 at position L and agrees with the wheel's position
  above L: a timer sits on the level of the highest base-256 digit in which
  its tick differs from the position. That place is a function of (tick,
  position) alone, so :meth:`~TimerWheel.cancel` works it out from the tick
  kept in ``_where`` instead of storing a reference per timer.
* Advancing the position to ``now`` visits only the buckets that hold
  timers, found through one bit mask per level: a level-0 bucket fires whole;
  a higher bucket whose range begins is emptied and its timers re-placed on
  lower levels ("cascading"; each timer cascades at most five times, one
  timer 11 min – 46 h ahead twice). Schedule, reschedule and cancel are O(1),
  firing is O(1) amortised per timer, and a wake-up with nothing to do looks
  at six integers.
* Deadlines the position has already passed wait in a ``late`` bucket and fire
  at the next :meth:`~TimerWheel.pop_due`; deadlines beyond the six levels
  (years past 91,000, or across a sign change) wait in a ``far`` bucket,
  looked at again only when the position reaches their block.
* Each bucket of levels 1 and up keeps the earliest tick put in it, so
  :meth:`~TimerWheel.next_time` is exact without looking inside buckets
  (see there for the one case where it answers early).
* The position is set by the first ``pop_due`` (or ``next_time``); until
  then scheduling only records the tick, so the daemon's start-up fills the
  wheel in one pass. If the wall clock is set back, ``pop_due`` is given a
  time before the position, and the wheel is rebuilt there once (O(timers)).

Deadlines are wall-clock times because schedules are; sleeping is done on the
monotonic clock. :class:`Clock` is the seam tests replace.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timezone
from typing import Hashable, Iterable

RESOLUTION = 0.01  # seconds per tick

BITS = 8  # log2 of the buckets per level
MASK = (1 << BITS) - 1
LEVELS = 6
SPAN = BITS * LEVELS  # ticks whose difference from the position has a bit at or above this are "far"
LATE, FAR = -1, -2  # indexes of the two extra buckets, after the LEVELS * 256 of the levels


def _index(t: int, c: int) -> int:
    """The bucket of a timer due at tick `t` while the wheel stands at tick `c`: level * 256 + digit."""
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
        self._buckets: list[set[Hashable]] = [set() for _ in range((LEVELS << BITS) + 2)]
        self._occupied = [0] * LEVELS  # per level, a bit per bucket that may hold timers
        # Per bucket of levels 1 and up, no timer in it is earlier (exact unless cancels left it low).
        self._low: list[float] = [math.inf] * (LEVELS << BITS)
        self._far_low: int | None = None  # no far timer is earlier (a lower bound, left by cancels)

    def __len__(self) -> int:
        return len(self._where)

    def _put(self, key: Hashable, t: int, c: int) -> None:
        i = _index(t, c)
        self._buckets[i].add(key)
        if i > MASK:  # levels 1 and up: also keep the bucket's earliest tick, for next_time()
            self._occupied[i >> BITS] |= 1 << (i & MASK)
            if t < self._low[i]:
                self._low[i] = t
        elif i >= 0:
            self._occupied[0] |= 1 << i
        elif i == FAR and (self._far_low is None or t < self._far_low):
            self._far_low = t

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
            return
        if old is not None:
            self._buckets[_index(old, c)].discard(key)
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
            self._buckets[_index(t, self._c)].discard(key)
            # The bucket's bit stays set: the wake-up that reaches it finds it empty and clears it.

    def next_time(self) -> float | None:
        """Epoch time of the earliest timer's tick, or None when there are none.

        Exact, except after a cancel or a reschedule took the earliest timer out
        of a bucket more than 2.56 s (256 ticks) past the position: each such
        bucket keeps only a lower bound of its ticks, and the answer can be up
        to the bucket's width early. The daemon then wakes, finds nothing due
        and asks again; that wake-up still makes progress, since ``pop_due`` at
        or after the answer has reached the bucket's start and cascades it, so
        the next answer comes from finer buckets, and is later or exact. It
        cannot loop without sleeping: ``pop_due(next_time())`` always moves the
        position past the tick answered.
        """
        c, where = self._c, self._where
        if c is None:
            if not where:
                return None
            c = min(where.values()) - 1
            self._place_all(c)
        buckets = self._buckets
        if buckets[LATE]:
            return min(where[key] for key in buckets[LATE]) * RESOLUTION
        occupied = self._occupied
        for level in range(LEVELS):
            m = occupied[level]
            while m:
                j = (m & -m).bit_length() - 1
                i = (level << BITS) | j
                if buckets[i]:
                    if not level:
                        return ((c >> BITS << BITS) | j) * RESOLUTION
                    shift = level * BITS
                    start = (c >> (shift + BITS) << (shift + BITS)) | (j << shift)
                    return max(start, self._low[i]) * RESOLUTION
                m ^= 1 << j
                occupied[level] = m  # emptied by cancels: forget it now, once
                if level:
                    self._low[i] = math.inf
        if buckets[FAR]:
            return self._far_start(c) * RESOLUTION
        return None

    def pop_due(self, now: float) -> list[Hashable]:
        """Remove and return every key due at or before `now`."""
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
        where, buckets, occupied = self._where, self._buckets, self._occupied
        due: list[Hashable] = []
        late = buckets[LATE]
        if late:
            buckets[LATE] = set()
            for key in late:
                del where[key]
            due.extend(late)
        while True:
            for level in range(LEVELS):
                m = occupied[level]
                if m:
                    break
            else:
                if not buckets[FAR] or (start := self._far_start(c)) > limit:
                    break
                c = start
                self._cascade(FAR, c, due)
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
                    j = low.bit_length() - 1
                    bucket = buckets[j]
                    if bucket:
                        buckets[j] = set()
                        for key in bucket:
                            del where[key]
                        due.extend(bucket)
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
            self._cascade((level << BITS) | j, c, due)
        self._c = limit
        return due

    def _cascade(self, i: int, c: int, due: list[Hashable]) -> None:
        """The position has reached the start of bucket `i`'s range (`c`): re-place its timers."""
        bucket = self._buckets[i]
        self._buckets[i] = set()
        if i == FAR:
            self._far_low = None
        else:
            self._low[i] = math.inf
        where, put = self._where, self._put
        for key in bucket:
            t = where[key]
            if t == c:
                del where[key]
                due.append(key)
            else:
                put(key, t, c)

    def _far_start(self, c: int) -> int:
        """The first tick at which a far timer may come within the levels' reach."""
        assert self._far_low is not None
        return max(c + 1, self._far_low >> SPAN << SPAN)

    def _place_all(self, c: int) -> None:
        """Set the position to `c` and place every timer anew: the first placement, or after
        the wall clock was set back (O(timers), once)."""
        self._c = c
        self._buckets = [set() for _ in range((LEVELS << BITS) + 2)]
        self._occupied = [0] * LEVELS
        self._low = [math.inf] * (LEVELS << BITS)
        self._far_low = None
        where, put = self._where, self._put
        for key, t in where.items():
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
