"""Stored monitor rows to the states of configured monitors (start-up, reloads,
re-reads after a failed write)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Iterable

from . import fastjson, monitor
from . import store as sql
from .monitor import MonitorState
from .store import Statement


class Adopter:
    """Stored rows to states of configured monitors, for start-up, reloads and
    re-reads. A monitor's state is immutable, so monitors whose stored text is
    the same share one decoded state, and the monitors new to the database share
    one fresh state and its encoded row (100,000 new monitors: one of each)."""

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

    def decode(self, text: str) -> MonitorState:
        state = self._decoded.get(text)
        if state is None:
            state = self._decoded[text] = MonitorState.from_json(fastjson.loads_own(text))
        else:
            self.shared.add(id(state))
        return state

    def adopt_all(self, names: Iterable[str],
                  stored: dict[str, tuple[str, float | None]]) -> dict[str, MonitorState]:
        """name -> adopt(name, stored.get(name)) for every name, in order."""
        adopt = self.adopt
        return {name: adopt(name, stored.get(name)) for name in names}

    def adopt(self, name: str, stored: tuple[str, float | None] | None) -> MonitorState:
        """The state of a configured monitor: as stored; new (due from now) if never
        seen; and for one that was removed and is back, new again but keeping its
        incident numbering (its history stays, its old outage is closed)."""
        if stored is None:
            self.statements.append(sql.upsert_monitor(name, self._created_at, self._fresh_text))
            self.shared.add(id(self._fresh))
            return self._fresh
        text, removed_at = stored
        if removed_at is None:
            return self.decode(text)
        state = replace(self._fresh, incident_count=self.decode(text).incident_count)
        self.statements.append(sql.close_open_incidents(name, self._created_at))
        self.statements.append(sql.upsert_monitor(name, self._created_at, state.to_json()))
        return state
