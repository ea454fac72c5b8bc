"""The store's reads by subject (monitors, runs, pings, incidents, the outbox).

:class:`Queries` is a base of :class:`cronwarden.store.Store`, which gives these
methods its read connection (``fetchall``, ``fetchone``) and its writer (``write``,
``next_id``); store.py keeps the connections and the group-committing writer.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .statements import Statement, insert_incident_event

if TYPE_CHECKING:
    import asyncio


class Queries:
    if TYPE_CHECKING:  # given by Store
        async def fetchall(self, sql: str, params: Sequence[Any] = (), *,
                           tuples: bool = False) -> list[Any]: ...

        async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None: ...

        def write(self, statements: list[Statement], *, gather: bool = True) -> "asyncio.Future[int]": ...

        def next_id(self, table: str) -> int: ...

    async def secret(self, key: str, make: Callable[[], bytes]) -> bytes:
        """A value kept in the meta table, created with `make` the first time."""
        row = await self.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        if row is not None:
            return bytes(row["value"])
        value = make()
        await self.write([("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))])
        row = await self.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        assert row is not None
        return bytes(row["value"])

    async def load_monitors(self, names: Sequence[str] | None = None) -> dict[str, tuple[str, float | None]]:
        """name -> (state as stored, JSON text; removed_at) for every monitor ever seen,
        or for those of `names` that were. The rows come as plain tuples rather than
        the connection's sqlite3.Row: a start-up reads 100,000 of them, and building
        and unpacking a Row per row cost about as much as SQLite's reading them."""
        if names is None:
            rows = await self.fetchall("SELECT name, state, removed_at FROM monitors", tuples=True)
        else:
            rows = []
            for start in range(0, len(names), 500):
                chunk = names[start:start + 500]
                rows += await self.fetchall("SELECT name, state, removed_at FROM monitors WHERE name IN "
                                            f"({','.join('?' * len(chunk))})", chunk, tuples=True)
        return {name: (state, removed_at) for name, state, removed_at in rows}

    async def incident_ids(self) -> dict[tuple[str, int], int]:
        rows = await self.fetchall("SELECT id, monitor, seq FROM incidents")
        return {(r["monitor"], r["seq"]): r["id"] for r in rows}

    async def recent_runs(self, monitor: str, limit: int = 10) -> list[sqlite3.Row]:
        return await self.fetchall(
            "SELECT r.*, p.body FROM runs r LEFT JOIN pings p ON p.id = r.ping_id"
            " WHERE r.monitor = ? ORDER BY r.id DESC LIMIT ?", (monitor, limit))

    async def recent_durations(self, monitor: str, limit: int, through_ping: int | None = None) -> list[float]:
        """Durations of the last `limit` successful timed runs, oldest first; with
        `through_ping`, of those ended by that ping or an earlier one."""
        sql = "SELECT duration_s FROM runs WHERE monitor = ? AND duration_s IS NOT NULL AND exit_status = 0"
        if through_ping is None:
            rows = await self.fetchall(sql + " ORDER BY id DESC LIMIT ?", (monitor, limit))
        else:
            rows = await self.fetchall(sql + " AND ping_id <= ? ORDER BY id DESC LIMIT ?",
                                       (monitor, through_ping, limit))
        return [float(r["duration_s"]) for r in reversed(rows)]

    async def ping_count(self, monitor: str) -> int:
        row = await self.fetchone("SELECT COUNT(*) AS n FROM pings WHERE monitor = ?", (monitor,))
        return int(row["n"]) if row else 0

    async def recent_output(self, monitor: str, limit: int = 5) -> list[sqlite3.Row]:
        return await self.fetchall(
            "SELECT id, at, kind, body FROM pings WHERE monitor = ? AND body IS NOT NULL"
            " ORDER BY id DESC LIMIT ?", (monitor, limit))

    async def due_outbox(self, channel: str, now: float, limit: int = 50) -> list[sqlite3.Row]:
        """Pending rows of `channel` that are due and not behind an earlier pending row
        of the same incident (so a resolve never overtakes its trigger)."""
        return await self.fetchall(
            "SELECT o.* FROM outbox o WHERE o.state = 'pending' AND o.channel = ? AND o.next_attempt_at <= ?"
            " AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.state = 'pending' AND e.channel = o.channel"
            "   AND e.incident_id = o.incident_id AND e.id < o.id)"
            " ORDER BY o.id LIMIT ?", (channel, now, limit))

    async def next_outbox_time(self, channel: str) -> float | None:
        row = await self.fetchone(
            "SELECT MIN(o.next_attempt_at) AS t FROM outbox o WHERE o.state = 'pending' AND o.channel = ?"
            " AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.state = 'pending' AND e.channel = o.channel"
            "   AND e.incident_id = o.incident_id AND e.id < o.id)", (channel,))
        return None if row is None or row["t"] is None else float(row["t"])

    async def monitors_over(self, table: str, keep: int) -> list[str]:
        assert table in ("runs", "pings")
        rows = await self.fetchall(f"SELECT monitor FROM {table} GROUP BY monitor HAVING COUNT(*) > ?", (keep,))
        return [r["monitor"] for r in rows]

    async def incidents(self, monitor: str | None = None, open_only: bool = False,
                        limit: int = 100) -> list[sqlite3.Row]:
        where, params = [], []  # type: ignore[var-annotated]
        if monitor:
            where.append("monitor = ?")
            params.append(monitor)
        if open_only:
            where.append("closed_at IS NULL")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        # Newest first by when they opened: a Tick planned ahead (timer.py) takes its
        # incident's id up to a second before the incident opens, so ids alone may not say.
        return await self.fetchall(f"SELECT * FROM incidents{clause} ORDER BY opened_at DESC, id DESC LIMIT ?",
                                   (*params, limit))

    async def incident(self, incident_id: int) -> sqlite3.Row | None:
        return await self.fetchone("SELECT * FROM incidents WHERE id = ?", (incident_id,))

    async def runs_between(self, monitor: str, start: float, end: float, limit: int = 50) -> list[sqlite3.Row]:
        """Runs of `monitor` that ended between `start` and `end`, with their output."""
        return await self.fetchall(
            "SELECT r.*, p.body FROM runs r LEFT JOIN pings p ON p.id = r.ping_id"
            " WHERE r.monitor = ? AND r.ended_at BETWEEN ? AND ? ORDER BY r.id DESC LIMIT ?",
            (monitor, start, end, limit))

    async def incident_events(self, incident_id: int) -> list[sqlite3.Row]:
        return await self.fetchall("SELECT * FROM incident_events WHERE incident_id = ? ORDER BY at, id", (incident_id,))

    async def deliveries(self, incident_id: int) -> list[sqlite3.Row]:
        """Outbox rows of an incident with their attempts (one row per attempt, or the
        outbox row alone while it has none)."""
        return await self.fetchall(
            "SELECT o.id AS outbox_id, o.channel, o.event, o.state, o.created_at, o.attempts,"
            " a.at, a.ok, a.status, a.error, a.answer, a.duration_ms"
            " FROM outbox o LEFT JOIN delivery_attempts a ON a.outbox_id = o.id"
            " WHERE o.incident_id = ? ORDER BY o.id, a.id", (incident_id,))

    async def outbox_row(self, outbox_id: int) -> sqlite3.Row | None:
        return await self.fetchone("SELECT * FROM outbox WHERE id = ?", (outbox_id,))

    async def attempts(self, outbox_id: int) -> list[sqlite3.Row]:
        return await self.fetchall("SELECT * FROM delivery_attempts WHERE outbox_id = ? ORDER BY id", (outbox_id,))

    async def give_up_channels(self, channels: list[str], at: float) -> int:
        """Pending alerts of channels that no longer exist: marked dead (no worker would
        ever send them), with a note in their incidents."""
        marks = ",".join("?" * len(channels))
        rows = await self.fetchall(f"SELECT id, incident_id, channel FROM outbox WHERE state = 'pending'"
                                   f" AND channel IN ({marks})", channels)
        if not rows:
            return 0
        statements: list[Statement] = [(f"UPDATE outbox SET state = 'dead', last_error = 'channel removed'"
                                        f" WHERE state = 'pending' AND channel IN ({marks})", channels)]
        for row in rows:
            if row["incident_id"] is not None:
                statements.append(insert_incident_event(
                    self.next_id("incident_events"), row["incident_id"], at, "delivery_failed",
                    {"channel": row["channel"], "outbox": row["id"], "error": "the channel was removed from the config"}))
        await self.write(statements)
        return len(rows)

    async def oldest_pending_outbox(self) -> float | None:
        row = await self.fetchone("SELECT MIN(created_at) AS t FROM outbox WHERE state = 'pending'")
        return None if row is None or row["t"] is None else float(row["t"])

    async def outbox_backlog(self) -> int:
        row = await self.fetchone("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")
        return int(row["n"]) if row else 0

