"""The timer task: sleep until the wheel's next deadline, then Tick what is due.

:func:`run` is the loop the daemon starts: it asks the wheel how long to sleep
(at most MAX_SLEEP, so a wall-clock step is noticed), wakes early when a new
deadline comes before the one it sleeps for (``Daemon._rearm``), and hands
what is due to :func:`fire`, which plans every due monitor's Tick through
:meth:`Daemon.plan <cronwarden.daemon.Daemon.plan>` and commits them in one
write (so a `:00` of jobs that did not run reaches storm control as one burst).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .monitor import Tick

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("cronwarden")

MAX_SLEEP = 5.0  # the timer wakes at least this often to notice wall-clock jumps
CLOCK_JUMP = 1.0  # seconds of wall/monotonic drift treated as a clock step


async def run(daemon: "Daemon") -> None:
    """Tick what is due, sleep until the next deadline, forever (cancelled at stop)."""
    offset = daemon.clock.time() - daemon.clock.monotonic()
    while True:
        now_ts = daemon.clock.time()
        new_offset = now_ts - daemon.clock.monotonic()
        if abs(new_offset - offset) > CLOCK_JUMP:
            daemon.stats.clock_jumps += 1
            log.warning("wall clock jumped by %+.1fs; re-checking every deadline", new_offset - offset)
        offset = new_offset
        due = daemon.wheel.pop_due(now_ts)
        if due:
            try:
                await fire(daemon, due)
            except Exception:
                log.exception("timer: processing %d deadlines failed; retrying in 1s", len(due))
                for name in due:
                    if name in daemon.states:
                        daemon.wheel.schedule(name, now_ts + 1.0)
            continue
        nxt = daemon.wheel.next_time()
        delay = MAX_SLEEP if nxt is None else min(MAX_SLEEP, max(0.0, nxt - daemon.clock.time()))
        daemon._sleep_until = daemon.clock.time() + delay
        daemon._rearm.clear()
        try:
            await asyncio.wait_for(daemon._rearm.wait(), delay)
        except asyncio.TimeoutError:
            pass
        daemon._sleep_until = 0.0


async def fire(daemon: "Daemon", names: list) -> None:
    """Tick every monitor of `names` that is due now and commit them in one write. A
    monitor whose ping is being committed is looked at again 50 ms later; one whose
    deadline moved (a ping came, the clock stepped back) is put back on the wheel."""
    now = daemon.clock.now()
    outcomes = []
    claims: dict[str, list[asyncio.Future[None]]] = {}
    try:
        for name in names:
            if name not in daemon.states:
                continue  # removed by a reload
            if name in daemon._inflight:
                daemon.wheel.schedule(name, now.timestamp() + 0.05)  # a ping is being committed: look again
                continue
            deadline = daemon._deadline(name)
            if name in daemon._force_tick:
                daemon._force_tick.discard(name)
                deadline = now
            if deadline is None:
                continue
            if deadline > now:
                daemon._schedule(name)  # early (clock stepped back, or state moved on): re-arm
                continue
            lateness = (now - deadline).total_seconds()
            daemon.stats.last_lateness = lateness
            daemon.stats.max_lateness = max(daemon.stats.max_lateness, lateness)
            claims[name] = daemon._hold(name)
            _, outcome = daemon.plan(name, Tick(), now)
            outcomes.append(outcome)
        await daemon.commit(outcomes)
    finally:
        daemon._release(claims)
