"""The store: SQLite connections, the group-committing writer and the reads.

All of cronwarden's SQL lives in the store, in four modules: the schema and
its migrations in :mod:`cronwarden.schema`, the statements that write rows in
:mod:`cronwarden.statements`, the reads by subject in :mod:`cronwarden.queries`
(methods of :class:`Store`), and the connections and the writer here. The names
of the first two are re-exported from this module, so callers keep one import
(``from cronwarden import store as sql; sql.insert_ping(...)``).

One write connection runs every write in ``BEGIN IMMEDIATE`` transactions
(the CLI may open the same file from another process), and a separate read
connection serves the API. The database is WAL with ``synchronous=FULL``:
when a write's future resolves, the data survives a power cut.

Group commit: callers hand :meth:`Store.write` a list of ``(sql, params)``
statements and await it. One writer task takes everything queued at that
moment, runs it as one transaction (statements with the same SQL text as one
``executemany``) and resolves every caller's future after the COMMIT. So a
burst of pings costs one fsync, not one each.

Ids for rows are handed out in memory (:meth:`Store.next_id`), so statements
can be built before they reach the writer and rows can refer to each other
without a round trip; the daemon is the only process that inserts these rows.
Rows that a later statement in the same batch may change (monitors,
incidents, outbox) are written as whole-row upserts, so merging batches by SQL
text keeps the last write of a row the one that lands.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import aiosqlite

from .queries import Queries
from .schema import ID_TABLES, MIGRATIONS, SCHEMA_VERSION
from .statements import (
    Statement,
    close_incident,
    close_open_incidents,
    insert_incident_event,
    insert_new_monitors,
    insert_outbox,
    insert_ping,
    insert_run,
    mark_removed,
    prune_before,
    prune_monitor_beyond,
    prune_outbox,
    record_attempt,
    upsert_incident,
    upsert_monitor,
)

# sqlite3 binds an int, float or str directly, but looks for an adapter for every other
# value first. Without one registered, that look-up raises and clears an AttributeError
# with a formatted message: ~2,000 instructions for each None and bytes value bound, and
# a routine ping binds four or five Nones. These adapters hand the value back as it is,
# which is how it is bound without them: {}.get(None) is None, bytes(b) is b.
sqlite3.register_adapter(type(None), {}.get)
sqlite3.register_adapter(bytes, bytes)

__all__ = [
    # re-exported from .schema and .statements
    "ID_TABLES", "MIGRATIONS", "SCHEMA_VERSION", "Statement", "close_incident", "close_open_incidents",
    "insert_incident_event", "insert_new_monitors", "insert_outbox", "insert_ping", "insert_run", "mark_removed",
    "prune_before", "prune_monitor_beyond", "prune_outbox", "record_attempt", "upsert_incident", "upsert_monitor",
    # defined here
    "Store", "StoreError",
]

log = logging.getLogger("cronwarden.store")


class StoreError(Exception):
    """The database refused a write (disk full, read-only, locked)."""


_Item = tuple[list[Statement], "asyncio.Future[int]", bool]

# A commit costs about the same whatever it holds (~0.3 ms of CPU here: its fsync and WAL
# frames, two thread hand-overs, the switches of Python's lock between the writer's thread
# and the event loop's). With a new connection per ping (curl in a crontab) requests come
# in a few per loop pass, and committing at once gave ~4 pings per commit. So a batch of
# fewer than GATHER_BELOW writes lets the loop run while writes keep coming. The writer
# stops waiting after two passes in a row that brought no write (a request read in one
# pass is handled in the next: one empty pass is not the end of them; stopping there gave
# ~6), after GATHER_ITERATIONS passes, or after GATHER_SECONDS, whichever comes first.
# A lone ping waits two passes, microseconds when the loop has nothing else to do; under
# load a pass takes ~0.1 - 1 ms, and a write waits at most ~5 ms more for company. With
# 50 clients (bench/ping_throughput.py): below 12 writes, 14.6 pings per commit on new
# connections and 25 on kept ones; below 100, 47 and 49, and the server's CPU per ping
# 178 - 181 -> 144 and 79 -> 71 us (bench/README.md).
GATHER_BELOW = 100
GATHER_ITERATIONS = 64
GATHER_SECONDS = 0.005

# Pages the WAL file holds before a commit copies them into the database (SQLite's
# default is 1,000). A ping dirties pages at random (its monitor's state row, its
# place in two indexes), and the same pages again and again: a checkpoint writes each
# page once however many times the WAL holds it, so a longer WAL writes fewer. 8,000
# pages (~32 MB at 4 KiB) took the SQLite thread's CPU per ping from 72 - 81 to
# 57 - 71 us in bench/sqlite_rows.py's setting (25 pings per commit, 10,000 monitors).
# The price: the commit that crosses the mark runs a checkpoint up to 8x as long (less
# often), and opening the file after a crash reads a WAL of up to ~32 MB.
WAL_CHECKPOINT_PAGES = 8000


class Store(Queries):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._write: aiosqlite.Connection | None = None
        self._read: aiosqlite.Connection | None = None
        self._pending: list[_Item] = []  # writes waiting for the next group commit
        self._wakeup: asyncio.Future[None] | None = None  # set while the writer waits for work
        # Writes to take before the writer waits for company again: up to the last one queued
        # with gather=False (a batch takes at most 5,000).
        self._hurry = 0
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the writer's, from open()
        self._ids: dict[str, Iterator[int]] = {}  # table -> its next ids (see next_id)
        self.last_error: str | None = None
        self.commits = 0

    # -- lifecycle

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._write = await _connect(self.path)
            if not (hasattr(self._write, "_execute") and getattr(self._write, "_connection", None)):
                raise StoreError("this aiosqlite has no Connection._execute/_connection, which the group "
                                 "commit runs through; install the aiosqlite version pyproject.toml allows")
            await self._migrate()
            self._read = await _connect(self.path)
            for table in ID_TABLES:
                async with self._write.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}") as cur:
                    row = await cur.fetchone()
                self._ids[table] = itertools.count((int(row[0]) if row else 0) + 1)
        except BaseException:
            await self.close()
            raise
        self._closing = False  # a Store closed before may be opened again
        # The writer's loop, for the futures of writes: asyncio.get_running_loop() makes a
        # getpid() system call on every call (Python 3.11 checks for a fork), once per ping.
        self._loop = asyncio.get_running_loop()
        self._writer = self._loop.create_task(self._write_loop(), name="cronwarden-writer")

    async def close(self) -> None:
        """Commit what is queued, then close both connections; safe to call twice."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._closing = True  # the writer commits what is pending, then stops
            self._wake_writer()
            try:
                await writer
            except Exception:  # already logged by the writer
                pass
        for attr in ("_read", "_write"):
            conn = getattr(self, attr)
            setattr(self, attr, None)
            if conn is not None:
                await conn.close()

    async def _migrate(self) -> None:
        assert self._write is not None
        async with self._write.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer cronwarden (schema {version})")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            await self._write.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _split_sql(MIGRATIONS[target]):
                    await self._write.execute(stmt)
                await self._write.execute(f"PRAGMA user_version = {target}")
                await self._write.commit()
            except BaseException:
                await self._write.rollback()
                raise

    # -- writing

    def next_id(self, table: str) -> int:
        """The id of `table`'s next row (handed out in memory: see the module's doc)."""
        return next(self._ids[table])

    def write(self, statements: list[Statement], *, gather: bool = True) -> "asyncio.Future[int]":
        """Queue statements for the next group commit; await the answer, which
        resolves once they are committed (or raises StoreError). A plain function
        returning the future, not a coroutine: Daemon.commit awaits it directly, a
        coroutine frame less to suspend and resume on every ping. `gather=False`: the
        commit that takes them does not wait for other writes to join (start-up's
        rows, which the database thread writes while the deadlines are worked out;
        alerts, whose delivery waits for their commit)."""
        if not gather:
            self._hurry = len(self._pending) + 1
        return self._submit(statements, counted=False)

    async def write_counted(self, statements: list[Statement]) -> int:
        """Like :meth:`write`, but runs these statements unmerged and returns the
        number of rows they changed (used by retention to know when to stop)."""
        return await self._submit(statements, counted=True)

    def _submit(self, statements: list[Statement], counted: bool) -> "asyncio.Future[int]":
        if self._writer is None:
            raise StoreError("the database is closed")
        future: asyncio.Future[int] = self._loop.create_future()  # type: ignore[union-attr]
        self._pending.append((statements, future, counted))
        if self._wakeup is not None:
            self._wake_writer()
        return future

    def _wake_writer(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _write_loop(self) -> None:
        """Commit everything pending in one transaction (up to 5,000 writes), again
        and again; wait when nothing is. A plain list and one wake-up future, not an
        asyncio.Queue: a ping's write is an append (the queue's put and get cost
        more than the rest of the hand-over).

        A batch of fewer than GATHER_BELOW writes first lets the event loop run while
        writes keep coming, to take in those already on their way (see GATHER_SECONDS)."""
        pending = self._pending
        while True:
            if not pending:
                if self._closing:
                    return
                self._wakeup = asyncio.get_running_loop().create_future()
                await self._wakeup
                continue
            await self._gather()
            batch = pending[:5000]
            del pending[:5000]
            self._hurry = max(0, self._hurry - len(batch))
            await self._commit_batch(batch)
            del batch  # free it now, not when the next batch (maybe an alert burst) replaces it

    async def _gather(self) -> None:
        """Let the event loop run while writes keep coming, for a batch of fewer than
        GATHER_BELOW (see GATHER_SECONDS)."""
        pending = self._pending
        loop = asyncio.get_running_loop()
        until = loop.time() + GATHER_SECONDS
        rounds, quiet = GATHER_ITERATIONS, 0
        while rounds and quiet < 2 and len(pending) < GATHER_BELOW and not self._hurry:
            rounds -= 1
            before = len(pending)
            await asyncio.sleep(0)  # one pass of the event loop: its I/O, then the handlers it woke
            quiet = quiet + 1 if len(pending) == before else 0
            if loop.time() >= until:
                return

    async def _commit_batch(self, batch: list[_Item]) -> None:
        assert self._write is not None
        grouped: dict[str, list[Sequence[Any]]] = {}
        counted: list[tuple[list[Statement], int]] = []
        rows_of = grouped.get  # two loops run per ping: written for speed
        for index, (statements, _, is_counted) in enumerate(batch):
            if is_counted:
                counted.append((statements, index))
                continue
            for sql, params in statements:
                rows = rows_of(sql)
                if rows is None:
                    grouped[sql] = [params]
                else:
                    rows.append(params)
        error: BaseException | None = None
        counts: dict[int, int] = {}
        try:
            counts = await self._in_thread(_transaction, grouped, counted)
            self.commits += 1
            self.last_error = None
        except Exception as exc:  # sqlite3.Error, OSError, or a value SQLite cannot take: never the writer's end
            error = StoreError(f"database write failed: {exc}")
            self.last_error = str(exc)
            log.error("database write failed: %s", exc)
        if error is None and not counts:  # the usual batch: no counted write, nothing failed
            for _, future, _ in batch:
                if not future.done():
                    future.set_result(0)
            return
        for index, (_, future, _) in enumerate(batch):
            if not future.done():
                if error is None:
                    future.set_result(counts.get(index, 0))
                else:
                    future.set_exception(error)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(sqlite3_connection, *args) in the write connection's thread, in one
        hand-off. aiosqlite's public calls cost one thread round trip (and event-loop
        wake-up) each, so a group commit made of BEGIN, several statements and COMMIT
        paid five or more; this pays one. It uses aiosqlite's internal _execute (the
        function every public method goes through) and the connection it wraps;
        open() checks both are there, so a changed aiosqlite fails at start-up.

        The arguments travel in a list the call empties: aiosqlite's thread keeps its
        last call until the next one arrives, and a batch it kept would be freed there,
        in front of the next write (start-up's rows for 100,000 monitors took ~17 ms to
        free, and held up the first burst of alerts after it by as much)."""
        conn = self._write
        assert conn is not None
        return await conn._execute(_call_emptying, conn._connection, [fn, *args])

    # -- reading

    async def fetchall(self, sql: str, params: Sequence[Any] = (), *, tuples: bool = False) -> list[Any]:
        """The rows as sqlite3.Row, or as plain tuples with `tuples` (cheaper to build and
        unpack, for reads of many rows)."""
        if self._read is None:
            raise StoreError("the database is closed")
        try:
            async with self._read.execute(sql, params) as cur:
                if tuples:
                    cur.row_factory = None  # type: ignore[assignment]
                return list(await cur.fetchall())
        except (sqlite3.Error, ValueError) as exc:  # ValueError: aiosqlite's "Connection closed" (a stop)
            raise StoreError(f"database read failed: {exc}") from exc

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA busy_timeout = 5000")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
    except BaseException:
        await conn.close()
        raise
    return conn


def _call_emptying(conn: sqlite3.Connection, call: list[Any]) -> Any:
    """fn(conn, *args) from call = [fn, *args], which it empties first (see Store._in_thread)."""
    fn, *args = call
    call.clear()
    return fn(conn, *args)


def _transaction(conn: sqlite3.Connection, grouped: dict[str, list[Sequence[Any]]],
                 counted: list[tuple[list[Statement], int]]) -> dict[int, int]:
    """One group commit, on the connection's own thread: BEGIN IMMEDIATE, each SQL
    text once (executemany for its rows), the counted statements, COMMIT."""
    counts: dict[int, int] = {}
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in grouped.items():
            if len(rows) == 1:
                conn.execute(sql, rows[0])
            else:
                conn.executemany(sql, rows)
        for statements, index in counted:
            counts[index] = sum(max(0, conn.execute(sql, params).rowcount) for sql, params in statements)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return counts


def _split_sql(script: str) -> Iterable[str]:
    for part in script.split(";"):
        if part.strip():
            yield part
