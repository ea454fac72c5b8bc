"""Stored monitor rows to the states of configured monitors (start-up, reloads,
re-reads after a failed write), the start-up's recovery (:func:`recover`) and the
re-read after a failed write (:func:`resync`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Iterable

from . import checkpoint, fastjson, monitor
from . import store as sql
from .monitor import MonitorState
from .store import Statement, StoreError

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("cronwarden")


class Adopter:
    """Stored rows to states of configured monitors, for start-up, reloads and
    re-reads. A monitor's state is immutable, so monitors whose stored text is
    the same share one decoded state, and the monitors new to the database share
    one fresh state and its encoded row (100,000 new monitors: one of each, and one
    statement that inserts all their rows, appended by :meth:`finish`)."""

    def __init__(self, now: datetime, statements: list[Statement]) -> None:
        self.now = now
        self.statements = statements
        self._decoded: dict[str, MonitorState] = {}
        # ids of the states given to more than one monitor (and of the fresh state): the
        # start-up works out a deadline once per such state and schedule, and for every
        # other state directly, without the look-up (100,000 states, all different, on
        # a box that has been running).
        self.shared: set[int] = set()
        self._created_at = now.timestamp()
        self._fresh = monitor.new_state(now)
        self._fresh_text = fastjson.dumps(self._fresh.to_json())
        self._new: list[str] = []  # monitors new to the database, their rows still to write

    def decode(self, text: str) -> MonitorState:
        state = self._decoded.get(text)
        if state is None:
            state = self._decoded[text] = MonitorState.from_json(fastjson.loads_own(text))
        else:
            self.shared.add(id(state))
        return state

    def adopt_all(self, names: Iterable[str],
                  stored: dict[str, tuple[str, float | None]]) -> dict[str, MonitorState]:
        """name -> adopt(name, stored.get(name)) for every name, in order; then finish()."""
        adopt = self.adopt
        states = {name: adopt(name, stored.get(name)) for name in names}
        self.finish()
        return states

    def finish(self) -> None:
        """Append the statement that writes the rows of the new monitors adopted so far."""
        if self._new:
            self.statements.append(sql.insert_new_monitors(self._new, self._created_at, self._fresh_text))
            self._new = []

    def adopt(self, name: str, stored: tuple[str, float | None] | None) -> MonitorState:
        """The state of a configured monitor: as stored; new (due from now) if never
        seen; and for one that was removed and is back, new again but keeping its
        incident numbering (its history stays, its old outage is closed)."""
        if stored is None:
            self._new.append(name)
            self.shared.add(id(self._fresh))
            return self._fresh
        text, removed_at = stored
        if removed_at is None:
            return self.decode(text)
        state = replace(self._fresh, incident_count=self.decode(text).incident_count)
        self.statements.append(sql.close_open_incidents(name, self._created_at))
        self.statements.append(sql.upsert_monitor(name, self._created_at, state.to_json()))
        return state


async def recover(daemon: "Daemon") -> None:
    """Start-up: every configured monitor's state from the database (new ones due from
    now, removed ones marked), the rows that changes written, and every deadline on the
    wheel."""
    now = daemon.clock.now()
    await checkpoint.load_mark(daemon)
    stored = await daemon.store.load_monitors()
    daemon.incident_ids = await daemon.store.incident_ids()
    statements: list[Statement] = []
    adopter = Adopter(now, statements)
    daemon.states.update(adopter.adopt_all(daemon.config.monitors, stored))
    for name in stored:
        if name not in daemon.config.monitors:
            statements.append(sql.mark_removed(name, now.timestamp()))
    if daemon.mark is not None:  # the pings past it that their rows do not hold (after a crash)
        folded = checkpoint.replay(daemon, await checkpoint.pings_past(daemon, daemon.mark), stored)
        if folded:
            log.info("%d pings since the last checkpoint put back into %d monitors' states", folded,
                     len(daemon.unsaved))
    shared_states = adopter.shared
    del stored, adopter
    # The write runs in the database thread while the deadlines are worked out here.
    written = asyncio.ensure_future(daemon.store.write(statements, gather=False))
    for _ in range(3):  # let the write reach its thread (queue, writer task, thread)
        await asyncio.sleep(0)
    # Monitors share states (see Adopter) and schedules: without an incident or an open
    # run, a deadline depends on the state and the schedule and grace only, so for a
    # state several monitors have it is worked out once per (state, every, cron,
    # timezone, grace). All of them go on the wheel in one go; the monitors with an
    # incident or an open run go through _schedule() one by one.
    monitors = daemon.config.monitors
    shared: dict[tuple[object, ...], tuple[datetime | None, float]] = {}
    timers: list[tuple[str, float]] = []
    overdue = 0
    for name, state in daemon.states.items():
        if state.incident is not None or state.open_runs:
            deadline = daemon._schedule(name)
            overdue += deadline is not None and deadline < now
            continue
        cfg = monitors[name]
        if id(state) in shared_states:
            key = (id(state), cfg.every, cfg.cron, cfg.timezone, cfg.grace)
            known = shared.get(key)
            if known is None:
                deadline = monitor.next_deadline(cfg, state)
                known = shared[key] = (deadline, 0.0 if deadline is None else deadline.timestamp())
            deadline, when = known
        else:
            deadline = monitor.next_deadline(cfg, state)
            when = 0.0 if deadline is None else deadline.timestamp()
        if deadline is None:
            daemon.wheel.cancel(name)
            continue
        timers.append((name, when))
        overdue += deadline < now
    daemon.wheel.schedule_many(timers)
    if timers and min(when for _name, when in timers) < daemon._sleep_until:
        daemon._rearm.set()
    del shared, timers
    await written
    if daemon.unsaved or daemon.mark != daemon.last_ping_id:
        await checkpoint.checkpoint(daemon)  # the states put back, and the mark at the last ping
    if overdue:
        log.info("%d monitors fell due while the daemon was down; checking them now", overdue)


async def resync(daemon: "Daemon", names: set[str]) -> None:
    """Reload `names`' state from the database (the truth after a failed commit), with the
    committed routine pings their rows do not hold yet (cronwarden.checkpoint)."""
    try:
        stored = await daemon.store.load_monitors(list(names))
        daemon.incident_ids.update(await daemon.store.incident_ids())
    except StoreError:
        log.error("cannot re-read state after a failed write; it is re-read at the next start")
        return
    adopter = Adopter(daemon.clock.now(), [])  # re-reads only: its statements are not written
    names = {name for name in names if name in daemon.states}
    for name in names:
        daemon.states[name] = adopter.adopt(name, stored.get(name))
    if daemon.mark is not None:
        try:
            checkpoint.replay(daemon, await checkpoint.pings_past(daemon, daemon.mark, names), stored)
        except StoreError:
            log.error("cannot re-read pings after a failed write; they are put back at the next start")
    for name in names:
        daemon._schedule(name)
    log.warning("state of %d monitor(s) re-read from the database after a failed write", len(names))
