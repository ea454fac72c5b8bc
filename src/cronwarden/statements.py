"""The statements that write rows: pure functions from values to ``(sql, params)``.

Nothing here touches a connection. Callers build a plan of statements, with
row ids from :meth:`Store.next_id <cronwarden.store.Store.next_id>`, and hand
it to :meth:`Store.write <cronwarden.store.Store.write>`, which commits it in
the next group commit. Rows that a later statement in the same batch may change
(monitors, incidents, outbox) are whole-row upserts, so that the writer's
merging of a batch by SQL text keeps the last write of a row the one that lands.

Part of the store: this module, :mod:`cronwarden.schema` and
:mod:`cronwarden.store` hold all of cronwarden's SQL.
"""

from __future__ import annotations

from typing import Any, Sequence

from .fastjson import dumps

Statement = tuple[str, Sequence[Any]]


def upsert_monitor(name: str, created_at: float, state: dict[str, Any] | str) -> Statement:
    """`state`: MonitorState.to_json(), or that already encoded."""
    return (
        "INSERT INTO monitors (name, created_at, state, removed_at) VALUES (?, ?, ?, NULL) "
        "ON CONFLICT (name) DO UPDATE SET state = excluded.state, removed_at = NULL",
        (name, created_at, state if isinstance(state, str) else dumps(state)),
    )


def insert_new_monitors(names: list[str], created_at: float, state: str) -> Statement:
    """Rows for monitors new to the database, all with the same encoded `state`. One
    statement whatever the number: SQLite reads the names from one JSON array, so the
    insert runs in one step of the database thread, which holds Python's lock only to
    start it (100,000 rows bound one by one took that lock back from the event loop
    100,000 times at start-up). A row already there is left as it is: unlike the
    whole-row upserts, this statement may run after a later write of the same monitor
    in the same batch (the writer groups a batch by SQL text), and must not undo it."""
    return (
        "INSERT INTO monitors (name, created_at, state, removed_at) "
        "SELECT value, ?, ?, NULL FROM json_each(?) WHERE true ON CONFLICT (name) DO NOTHING",
        (created_at, state, dumps(names)),
    )


def close_open_incidents(monitor: str, at: float) -> Statement:
    return ("UPDATE incidents SET closed_at = ? WHERE monitor = ? AND closed_at IS NULL", (at, monitor))


def mark_removed(name: str, at: float) -> Statement:
    return ("UPDATE monitors SET removed_at = ? WHERE name = ? AND removed_at IS NULL", (at, name))


# A ping's and a run's row without the columns that are NULL in most of them (left out of
# an INSERT, a column is NULL): sqlite3 binds a None through an adapter look-up that costs
# several times what binding a number does, and a routine ping's rows held six.
_PING = "INSERT INTO pings (id, monitor, at, kind, exit_status, rid, body, remote) VALUES (?,?,?,?,?,?,?,?)"
_PING_PLAIN = "INSERT INTO pings (id, monitor, at, kind, exit_status, remote) VALUES (?,?,?,?,?,?)"
_PING_BARE = "INSERT INTO pings (id, monitor, at, kind, remote) VALUES (?,?,?,?,?)"
_RUN = ("INSERT INTO runs (id, monitor, rid, started_at, ended_at, duration_s, exit_status, metadata, ping_id)"
        " VALUES (?,?,?,?,?,?,?,?,?)")
_RUN_PLAIN = ("INSERT INTO runs (id, monitor, started_at, ended_at, duration_s, exit_status, ping_id)"
              " VALUES (?,?,?,?,?,?,?)")
_RUN_BEAT = "INSERT INTO runs (id, monitor, ended_at, exit_status, ping_id) VALUES (?,?,?,?,?)"


def insert_ping(pid: int, monitor: str, at: float, kind: str, exit_status: int | None,
                rid: str | None, body: bytes | None, remote: str | None) -> Statement:
    if rid is None and body is None:
        if exit_status is None:
            return _PING_BARE, (pid, monitor, at, kind, remote)
        return _PING_PLAIN, (pid, monitor, at, kind, exit_status, remote)
    return _PING, (pid, monitor, at, kind, exit_status, rid, body, remote)


def insert_run(run_id: int, monitor: str, rid: str | None, started_at: float | None, ended_at: float,
               duration_s: float | None, exit_status: int | None, metadata: Any,
               ping_id: int | None) -> Statement:
    if rid is None and metadata is None:
        if started_at is None and duration_s is None:  # a heartbeat's run
            return _RUN_BEAT, (run_id, monitor, ended_at, exit_status, ping_id)
        return _RUN_PLAIN, (run_id, monitor, started_at, ended_at, duration_s, exit_status, ping_id)
    return _RUN, (run_id, monitor, rid, started_at, ended_at, duration_s, exit_status,
                  None if metadata is None else dumps(metadata), ping_id)


def upsert_incident(iid: int, monitor: str, seq: int, kind: str, severity: str, summary: str,
                    opened_at: float, closed_at: float | None) -> Statement:
    return (
        "INSERT INTO incidents (id, monitor, seq, kind, severity, summary, opened_at, closed_at)"
        " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET closed_at = excluded.closed_at",
        (iid, monitor, seq, kind, severity, summary, opened_at, closed_at),
    )


def close_incident(iid: int, monitor: str, seq: int, closed_at: float) -> Statement:
    """Closing is the same upsert as opening (only closed_at changes on conflict), so
    in a group commit, which merges statements by SQL text, a close can never run
    before the insert of an incident opened earlier in the same batch."""
    return upsert_incident(iid, monitor, seq, "unknown", "info", "", closed_at, closed_at)


def insert_incident_event(eid: int, incident_id: int, at: float, kind: str, detail: dict[str, Any]) -> Statement:
    return (
        "INSERT INTO incident_events (id, incident_id, at, kind, detail) VALUES (?,?,?,?,?)",
        (eid, incident_id, at, kind, dumps(detail)),
    )


def insert_outbox(oid: int, channel: str, monitor: str, incident_id: int | None, event: str,
                  payload: dict[str, Any] | str, created_at: float) -> Statement:
    """`payload`: the alert's payload, or that already encoded (one alert, several channels)."""
    return (
        "INSERT INTO outbox (id, channel, monitor, incident_id, event, payload, created_at, next_attempt_at)"
        " VALUES (?,?,?,?,?,?,?,?)",
        (oid, channel, monitor, incident_id, event, payload if isinstance(payload, str) else dumps(payload),
         created_at, created_at),
    )


def record_attempt(aid: int, outbox_id: int, at: float, ok: bool, status: int | None, error: str | None,
                   answer: str | None, duration_ms: float, final_state: str,
                   next_attempt_at: float | None) -> list[Statement]:
    """The attempt, and the row's new state. Only a pending row changes: one given up
    meanwhile (its channel removed by a reload) or already sent stays as it is."""
    return [
        ("INSERT INTO delivery_attempts (id, outbox_id, at, ok, status, error, answer, duration_ms)"
         " VALUES (?,?,?,?,?,?,?,?)", (aid, outbox_id, at, int(ok), status, error, answer or None, duration_ms)),
        ("UPDATE outbox SET attempts = attempts + 1, state = ?, last_error = ?,"
         " next_attempt_at = COALESCE(?, next_attempt_at), sent_at = CASE WHEN ? THEN ? ELSE sent_at END"
         " WHERE id = ? AND state = 'pending'", (final_state, error, next_attempt_at, int(ok), at, outbox_id)),
    ]


def prune_before(table: str, column: str, cutoff: float, batch: int) -> Statement:
    """Delete up to `batch` rows of `table` whose `column` is older than `cutoff`."""
    assert table in ("runs", "pings") and column in ("ended_at", "at")
    return (f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {column} < ? LIMIT ?)",
            (cutoff, batch))


def prune_monitor_beyond(table: str, monitor: str, keep: int, batch: int) -> Statement:
    """Delete up to `batch` of the oldest rows of `monitor` beyond the newest `keep`."""
    assert table in ("runs", "pings")
    return (f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE monitor = ? AND id <="
            f" (SELECT id FROM {table} WHERE monitor = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"
            f" ORDER BY id LIMIT ?)", (monitor, monitor, keep, batch))


def prune_outbox(cutoff: float, batch: int) -> list[Statement]:
    """Delivered (or abandoned) alerts and their attempts older than `cutoff`."""
    return [
        ("DELETE FROM delivery_attempts WHERE outbox_id IN (SELECT id FROM outbox WHERE state != 'pending'"
         " AND created_at < ? LIMIT ?)", (cutoff, batch)),
        ("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state != 'pending' AND created_at < ?"
         " LIMIT ?)", (cutoff, batch)),
    ]
