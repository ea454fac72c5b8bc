"""The database schema: one versioned constant, grown only by migrations.

``MIGRATIONS[n]`` is the SQL script that takes a database from schema ``n - 1``
to ``n``; :class:`~cronwarden.store.Store` runs the ones a file is missing, each
in its own ``BEGIN IMMEDIATE`` transaction, and records the version in
``PRAGMA user_version``. A released script is never edited: a change to the
tables is a new entry and a bump of ``SCHEMA_VERSION``. A file written by a
newer cronwarden (a higher version) is refused rather than guessed at.

Part of the store: this module, :mod:`cronwarden.statements` and
:mod:`cronwarden.store` hold all of cronwarden's SQL.
"""

from __future__ import annotations

SCHEMA_VERSION = 4
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE monitors (
        name TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        state TEXT NOT NULL,
        removed_at REAL
    );
    CREATE TABLE pings (
        id INTEGER PRIMARY KEY,
        monitor TEXT NOT NULL,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        exit_status INTEGER,
        rid TEXT,
        body BLOB,
        remote TEXT
    );
    CREATE INDEX pings_by_monitor ON pings (monitor, id);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        monitor TEXT NOT NULL,
        rid TEXT,
        started_at REAL,
        ended_at REAL NOT NULL,
        duration_s REAL,
        exit_status INTEGER,
        metadata TEXT,
        ping_id INTEGER
    );
    CREATE INDEX runs_by_monitor ON runs (monitor, id);
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        monitor TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        summary TEXT NOT NULL,
        opened_at REAL NOT NULL,
        closed_at REAL,
        UNIQUE (monitor, seq)
    );
    CREATE TABLE incident_events (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        monitor TEXT NOT NULL,
        incident_id INTEGER,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'pending',
        last_error TEXT,
        sent_at REAL
    );
    CREATE INDEX outbox_pending ON outbox (state, channel, id);
    CREATE TABLE delivery_attempts (
        id INTEGER PRIMARY KEY,
        outbox_id INTEGER NOT NULL,
        at REAL NOT NULL,
        ok INTEGER NOT NULL,
        status INTEGER,
        error TEXT,
        duration_ms REAL
    );
    CREATE INDEX attempts_by_outbox ON delivery_attempts (outbox_id);
    """,
    2: """
    ALTER TABLE delivery_attempts ADD COLUMN answer TEXT;
    CREATE INDEX outbox_by_incident ON outbox (incident_id, id);
    """,
    3: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE INDEX incidents_by_monitor ON incidents (monitor, id);
    """,
    # From 4 on, a monitor's row may lag behind its routine pings, which start-up puts
    # back from the pings past the mark (cronwarden.checkpoint). Before, every row held
    # every ping: the mark starts at the last one. (And a cronwarden from before 4, which
    # would not put them back, refuses the file.)
    4: """
    INSERT OR REPLACE INTO meta (key, value) SELECT 'state_mark', COALESCE(MAX(id), 0) FROM pings;
    """,
}

ID_TABLES = ("pings", "runs", "incidents", "incident_events", "outbox", "delivery_attempts")
