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
        self._fresh = monitor.new_state(now)
        self._fresh_text = fastjson.dumps(self._fresh.to_json())

    def decode(self, text: str) -> MonitorState:
        state = self._decoded.get(text)
        if state is None:
            state = self._decoded[text] = MonitorState.from_json(fastjson.loads_own(text))
        return state

    def adopt_all(self, names: Iterable[str],
                  stored: dict[str, tuple[str, float | None]]) -> dict[str, MonitorState]:
        """name -> adopt(name, stored.get(name)) for every name, in order, in one loop."""
        states: dict[str, MonitorState] = {}
        decoded, fresh, statements = self._decoded, self._fresh, self.statements
        new_row = None
        for name in names:
            row = stored.get(name)
            if row is None:
                # sql.upsert_monitor(name, created_at, self._fresh_text), its SQL text shared
                if new_row is None:
                    new_row = sql.upsert_monitor(name, self.now.timestamp(), self._fresh_text)
                    upsert, created_at = new_row[0], new_row[1][1]
                statements.append((upsert, (name, created_at, self._fresh_text)))
                states[name] = fresh
            elif row[1] is None:
                state = decoded.get(row[0])
                states[name] = state if state is not None else self.decode(row[0])
            else:
                states[name] = self.adopt(name, row)
        return states

    def adopt(self, name: str, stored: tuple[str, float | None] | None) -> MonitorState:
        """The state of a configured monitor: as stored; new (due from now) if never
        seen; and for one that was removed and is back, new again but keeping its
        incident numbering (its history stays, its old outage is closed)."""
        if stored is not None and stored[1] is None:
            return self.decode(stored[0])
        created_at = self.now.timestamp()
        if stored is None:
            self.statements.append(sql.upsert_monitor(name, created_at, self._fresh_text))
            return self._fresh
        old = self.decode(stored[0])
        state = replace(self._fresh, incident_count=old.incident_count)
        self.statements.append(sql.close_open_incidents(name, created_at))
        self.statements.append(sql.upsert_monitor(name, created_at, state.to_json()))
        return state
