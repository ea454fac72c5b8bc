"""The timer task: Tick each monitor at its deadline.

:func:`run` is the loop the daemon starts. It asks the wheel how long to sleep
(at most MAX_SLEEP, so a wall-clock step is noticed), wakes early when a new
deadline comes before the one it sleeps for (``Daemon._rearm``), and hands
what is due to :func:`fire`, which Ticks every due monitor and commits them in
one write (so a `:00` of jobs that did not run reaches storm control as one
burst).

Ticks are planned ahead. A deadline is known in advance and the step is pure,
so the timer takes the monitors falling due within the next LEAD seconds off
the wheel and plans each one's Tick as of its deadline
(:func:`plan_ahead`: the new
state, the incident and outbox rows, the alert payloads) without changing
anything. At the deadline all that is left is to check that nothing the step
read has changed (the monitor's state, those of the monitors it depends on and
that depend on it, the config) and to commit: 1,000 monitors falling due at
the same instant cost the time of one commit at that instant, not that of
planning 1,000 steps. A plan that no longer holds (a ping came, a reload) is
dropped and the monitor is looked at afresh, as one whose deadline moved.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import operator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from . import monitor
from .monitor import Tick

if TYPE_CHECKING:
    from .alerts import Outcome
    from .config import Config, MonitorConfig
    from .daemon import Daemon
    from .monitor import Decision, MonitorState

log = logging.getLogger("cronwarden")

MAX_SLEEP = 5.0  # the timer wakes at least this often to notice wall-clock jumps
CLOCK_JUMP = 1.0  # seconds of wall/monotonic drift treated as a clock step
LEAD = 1.0  # seconds before its deadline that a monitor's Tick is planned
PLAN_CHUNK = 200  # Ticks planned ahead between two looks at the event loop
INFLIGHT_RETRY = 0.05  # seconds before a monitor held by a commit is looked at again


@dataclass(slots=True)
class Planned:
    """A Tick planned before its deadline (plan_ahead), waiting for it."""

    name: str
    at: float  # the deadline, epoch seconds
    now: datetime  # the deadline: the time the Tick was planned at
    config: Config
    watched: tuple[str, ...]  # the monitors whose states the step read (_watched)
    inputs: tuple[MonitorState | None, ...]  # those states, then
    incident_ids: dict[tuple[str, int], int]  # of the incident it opens, or the one open
    decision: Decision
    outcome: Outcome
    follow: float | None  # the deadline after this Tick, epoch seconds


class Ahead:
    """Ticks planned ahead, waiting for their deadlines; the latest plan of a monitor counts.

    Plans are kept in one list per deadline, with a heap of the distinct deadlines: the
    monitors falling due in the same instant (a `:00`) are handed out as one list. (A heap
    entry per plan cost ~4 µs per pop at the deadline, most of it the cache misses of
    sifting tuples planned a second earlier.)"""

    def __init__(self) -> None:
        self.by_name: dict[str, Planned] = {}
        self._heap: list[float] = []  # the distinct deadlines of `_at`
        self._at: dict[float, list[Planned]] = {}  # deadline -> plans, in the order made

    def __len__(self) -> int:
        return len(self.by_name)

    def add(self, planned: Planned) -> None:
        self.by_name[planned.name] = planned
        plans = self._at.get(planned.at)
        if plans is None:
            self._at[planned.at] = [planned]
            heapq.heappush(self._heap, planned.at)
        else:
            plans.append(planned)

    def next_time(self) -> float | None:
        heap, by_name = self._heap, self.by_name
        while heap and not any(by_name.get(p.name) is p for p in self._at[heap[0]]):
            del self._at[heapq.heappop(heap)]  # every plan of it replaced by a later one
        return heap[0] if heap else None

    def pop_due(self, now: float) -> list[Planned]:
        """The plans whose deadline is at or before `now`, in deadline order."""
        heap, by_name = self._heap, self.by_name
        due = []
        while heap and heap[0] <= now:
            for planned in self._at.pop(heapq.heappop(heap)):
                if by_name.get(planned.name) is planned:
                    del by_name[planned.name]
                    due.append(planned)
        return due

    def drain(self) -> list[str]:
        """Drop every plan; the names of their monitors."""
        names = list(self.by_name)
        self.by_name.clear()
        self._heap.clear()
        self._at.clear()
        return names


async def run(daemon: "Daemon") -> None:
    """Tick what is due, sleep until the next deadline, forever (cancelled at stop)."""
    offset = daemon.clock.time() - daemon.clock.monotonic()
    ahead = daemon.ahead
    while True:
        now_ts = daemon.clock.time()
        new_offset = now_ts - daemon.clock.monotonic()
        if abs(new_offset - offset) > CLOCK_JUMP:
            daemon.stats.clock_jumps += 1
            log.warning("wall clock jumped by %+.1fs; re-checking every deadline", new_offset - offset)
            for name in ahead.drain():  # planned for instants the clock has moved past or away from
                if name in daemon.states:
                    daemon._schedule(name)
        offset = new_offset
        ready = ahead.pop_due(now_ts)
        names = daemon.wheel.pop_due(now_ts + LEAD)
        if ready or names:
            try:
                await fire(daemon, ready, names)
            except Exception:
                log.exception("timer: processing %d deadlines failed; retrying in 1s", len(ready) + len(names))
                for name in [p.name for p in ready] + names:
                    if name in daemon.states:
                        daemon.wheel.schedule(name, now_ts + LEAD + 1.0)
            continue
        # Wake LEAD before the wheel's next deadline (to plan it), or at the next planned one.
        wake = daemon.wheel.next_time()
        if wake is not None:
            wake -= LEAD
        planned = ahead.next_time()
        if planned is not None and (wake is None or planned < wake):
            wake = planned
        now_ts = daemon.clock.time()
        delay = MAX_SLEEP if wake is None else min(MAX_SLEEP, max(0.0, wake - now_ts))
        # A deadline scheduled before this must wake the timer (Daemon._schedule).
        daemon._sleep_until = now_ts + delay + LEAD
        daemon._rearm.clear()
        # The timeout sets the event too: no wait_for(), whose task and cancellation at the
        # timeout cost the wake-up at a deadline ~1 ms more on this machine.
        timeout = asyncio.get_running_loop().call_later(delay, daemon._rearm.set)
        try:
            await daemon._rearm.wait()
        finally:
            timeout.cancel()
        daemon._sleep_until = 0.0


async def fire(daemon: "Daemon", ready: list[Planned], names: list) -> None:
    """Commit the plans in `ready`, whose deadlines have come, and Tick every monitor of
    `names` that is due now, in one write; then plan ahead those of `names` falling due
    within LEAD. A plan that no longer holds is dropped and its monitor looked at like those
    of `names`. A monitor whose ping is being committed is looked at again 50 ms later; one
    whose deadline moved (a ping came, the clock stepped back) is put back on the wheel."""
    now = daemon.clock.now()
    now_ts = now.timestamp()
    ahead = daemon.ahead
    outcomes = []
    claims: dict[str, list[asyncio.Future[None]]] = {}
    soon = []
    try:
        todo: list[tuple[str, Planned | None]] = [(p.name, p) for p in ready]
        todo += [(name, None) for name in names]
        if daemon.depth:  # dependencies first: their outage silences their dependents' alerts
            depth = daemon.depth
            todo.sort(key=lambda item: depth.get(item[0], 0))
        for name, planned in todo:
            if name not in daemon.states or name in claims:
                continue  # removed by a reload, or committed above
            if planned is not None and name not in daemon._inflight and name not in daemon._force_tick:
                outcome = adopt_planned(daemon, planned)
                if outcome is not None:
                    _lateness(daemon, now_ts - planned.at)
                    claims[name] = daemon._hold(name)
                    outcomes.append(outcome)
                    continue
                # no longer holds: looked at afresh
            if name in daemon._inflight:  # a ping is being committed: look again in 50 ms
                asyncio.get_running_loop().call_later(INFLIGHT_RETRY, _look_again, daemon, name)
                continue
            deadline = daemon._deadline(name)
            if name in daemon._force_tick:
                daemon._force_tick.discard(name)
                deadline = now
            if deadline is None:
                continue
            if deadline > now:
                if deadline.timestamp() - now_ts <= LEAD:
                    soon.append((name, deadline))
                else:
                    daemon._schedule(name)  # not due soon (clock stepped back, or state moved on): re-arm
                continue
            _lateness(daemon, (now - deadline).total_seconds())
            claims[name] = daemon._hold(name)
            _, outcome = daemon.plan(name, Tick(), now)
            outcomes.append(outcome)
        if outcomes:
            await daemon.commit(outcomes, gather=False)  # alerts wait for it: no waiting for company
    finally:
        daemon._release(claims)
    for i, (name, deadline) in enumerate(soon):
        if i and not i % PLAN_CHUNK:
            await asyncio.sleep(0)  # let pings in between
            first = ahead.next_time()
            if first is not None and first <= daemon.clock.time():
                # Plans made earlier are due (a burst too big to plan within LEAD): commit
                # them first. The rest go back on the wheel, which hands them out at once.
                for rest, when in soon[i:]:
                    if rest in daemon.states:
                        daemon.wheel.schedule(rest, when.timestamp())
                return
        if name in daemon.states:
            ahead.add(plan_ahead(daemon, name, deadline))


def plan_ahead(daemon: "Daemon", name: str, deadline: datetime) -> Planned:
    """Plan `name`'s Tick at its coming `deadline` now, changing nothing in the daemon's
    memory: fire() commits it at the deadline with adopt_planned() if what the step reads
    is still the same then."""
    cfg = daemon.config.monitors[name]
    state = daemon.states[name]
    seq = state.incident.seq if state.incident is not None else None
    ids = {(name, seq): daemon.incident_ids[(name, seq)]} if (name, seq) in daemon.incident_ids else {}
    decision, outcome = daemon._decide(name, cfg, state, Tick(), deadline, ids)
    new = decision.state
    follow = monitor.next_deadline(cfg, new, daemon._maintenance(name, deadline) if new.incident else None)
    watched = _watched(daemon, name, cfg)
    return Planned(name, deadline.timestamp(), deadline, daemon.config, watched,
                   tuple(map(daemon.states.get, watched)), ids, decision, outcome,
                   None if follow is None else follow.timestamp())


def adopt_planned(daemon: "Daemon", planned: Planned) -> "Outcome | None":
    """The outcome of a Tick planned ahead, now taken into the daemon's memory; None (and
    nothing changed) when the monitor, its config or a monitor it depends on or that
    depends on it changed since it was planned."""
    name = planned.name
    if planned.config is not daemon.config:  # the same config: the same monitors watched
        return None
    states = daemon.states
    if len(planned.watched) == 1:  # most monitors: only its own state
        if states.get(name) is not planned.inputs[0]:
            return None
    elif not all(map(operator.is_, map(states.get, planned.watched), planned.inputs)):
        return None
    daemon.incident_ids.update(planned.incident_ids)
    daemon._adopt(name, planned.decision, planned.outcome, planned.now)
    daemon._arm(name, planned.follow, lazy=True)
    return planned.outcome


def _watched(daemon: "Daemon", name: str, cfg: "MonitorConfig") -> tuple[str, ...]:
    """The monitors whose states a Tick of `name` reads: itself, and those it depends on
    (silenced) and that depend on it (suppressed). Their states are compared by identity:
    every change makes a new state object."""
    dependents = daemon.dependents.get(name)
    if not cfg.depends_on and not dependents:
        return (name,)  # most monitors
    return (name, *cfg.depends_on, *(dependents or ()))


def _lateness(daemon: "Daemon", lateness: float) -> None:
    daemon.stats.last_lateness = lateness
    daemon.stats.max_lateness = max(daemon.stats.max_lateness, lateness)


def _look_again(daemon: "Daemon", name: str) -> None:
    """Put `name` back on the wheel for now. (Not from fire() directly: the wheel stands
    LEAD ahead of the clock, so a deadline sooner than that is handed out at its next look,
    which would be at once.)"""
    if name in daemon.states:
        daemon.wheel.schedule(name, daemon.clock.time())
        daemon._rearm.set()
