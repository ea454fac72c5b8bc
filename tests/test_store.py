"""The store against a real SQLite file: migrations, group commit, retention."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from cronwarden import store as sql
from cronwarden.config import ServerConfig
from cronwarden.retention import prune_once
from cronwarden.store import SCHEMA_VERSION, Store, StoreError


async def test_a_new_database_is_wal_at_the_current_schema_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "cw.db")
    await store.open()
    await store.close()
    db = sqlite3.connect(tmp_path / "cw.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


async def test_the_writer_checkpoints_the_wal_every_8000_pages(tmp_path: Path) -> None:
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        assert store._write is not None
        async with store._write.execute("PRAGMA wal_autocheckpoint") as cur:
            row = await cur.fetchone()
            assert row is not None and tuple(row) == (8000,)
    finally:
        await store.close()


async def test_concurrent_writes_are_group_committed(tmp_path: Path) -> None:
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        before = store.commits
        await asyncio.gather(*(
            store.write([sql.insert_ping(store.next_id("pings"), "m", float(i), "success", None, None, None, None)])
            for i in range(200)))
        assert store.commits - before < 20  # far fewer commits than writes
        row = await store.fetchone("SELECT COUNT(*) AS n FROM pings")
        assert row is not None and row["n"] == 200
    finally:
        await store.close()


def _ping_row(store: Store, i: int = 0) -> list[sql.Statement]:
    return [sql.insert_ping(store.next_id("pings"), "m", float(i), "success", None, None, None, None)]


@pytest.mark.parametrize("seconds", [3600.0, 0.0])
async def test_writes_that_arrive_over_a_few_loop_passes_share_one_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """As requests on new connections arrive: a few per pass of the event loop. The
    writer waits for them no longer than GATHER_SECONDS (here: an hour, or not at all)."""
    from cronwarden import store as store_module
    from cronwarden.store import GATHER_BELOW, GATHER_ITERATIONS

    monkeypatch.setattr(store_module, "GATHER_SECONDS", seconds)
    store = Store(tmp_path / "cw.db")
    await store.open()

    async def ping(i: int, passes: int) -> None:
        for _ in range(passes):
            await asyncio.sleep(0)
        await store.write(_ping_row(store, i))

    try:
        before = store.commits
        await asyncio.gather(*(ping(i, i % (GATHER_ITERATIONS - 1)) for i in range(GATHER_BELOW - 1)))
        assert (store.commits - before == 1) is (seconds > 0)
        before = store.commits
        await ping(0, 0)  # a lone write is committed all the same
        assert store.commits - before == 1
    finally:
        await store.close()


async def test_a_write_in_a_hurry_is_committed_even_behind_more_than_a_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch takes at most 5,000 writes: the one queued with gather=False behind more than
    that still goes without waiting for company (here the writer would wait for ever)."""
    released = asyncio.Event()

    async def gather_for_ever(store: Store) -> None:
        while not store._hurry and not released.is_set():
            await asyncio.sleep(0.01)

    monkeypatch.setattr(Store, "_gather", gather_for_ever)
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        queued = [store.write(_ping_row(store, i)) for i in range(6000)]
        await asyncio.sleep(0.1)
        assert store.commits == 0
        await asyncio.wait_for(store.write(_ping_row(store, 6000), gather=False), 10)
        assert all(w.done() for w in queued) and store.commits == 2
    finally:
        released.set()
        await store.close()


@pytest.mark.parametrize("gather", [True, False])
async def test_a_write_leaves_for_its_commit_after_two_quiet_passes_or_at_once(tmp_path: Path,
                                                                             gather: bool) -> None:
    """Start-up queues its rows with gather=False and works out the deadlines after three
    passes of the loop (adopt.recover): by then the rows must be in the database thread."""
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        written = store.write(_ping_row(store), gather=gather)
        await asyncio.sleep(0)  # the writer wakes
        await asyncio.sleep(0)
        assert bool(store._pending) is gather  # gathering: one quiet pass so far
        await asyncio.sleep(0)
        assert not store._pending
        await written
    finally:
        await store.close()


async def test_the_writer_thread_keeps_nothing_of_a_committed_batch(tmp_path: Path) -> None:
    """A batch kept until the next write would be freed in front of that write: start-up's
    rows for 100,000 monitors held up the first alert burst after them by ~20 ms."""
    import sys

    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        statement = sql.insert_ping(store.next_id("pings"), "m", 1.0, "success", None, None, None, None)
        params = statement[1]
        statements = [statement]
        del statement
        held = sys.getrefcount(params), sys.getrefcount(statements)
        await store.write(statements)
        await asyncio.sleep(0)  # the writer task's turn after the commit
        # only this test's own references: neither the thread nor the writer task keeps them
        assert (sys.getrefcount(params), sys.getrefcount(statements)) == held
    finally:
        await store.close()


async def test_ids_continue_after_a_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "cw.db")
    await store.open()
    await store.write([sql.insert_ping(store.next_id("pings"), "m", 1.0, "success", None, None, None, None)])
    await store.close()
    store = Store(tmp_path / "cw.db")
    await store.open()
    assert store.next_id("pings") == 2
    await store.close()


async def test_a_failed_write_raises_store_error_and_the_store_keeps_working(tmp_path: Path) -> None:
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        with pytest.raises(StoreError):
            await store.write([("INSERT INTO nowhere VALUES (1)", ())])
        await store.write([sql.insert_ping(store.next_id("pings"), "m", 1.0, "success", None, None, None, None)])
    finally:
        await store.close()
    with pytest.raises(StoreError):
        await store.write([])


async def test_none_and_bytes_are_bound_through_adapters_that_keep_them_as_they_are(tmp_path: Path) -> None:
    # Without an adapter, sqlite3 looks one up by raising and clearing an AttributeError
    # for each None and bytes value: the store registers adapters that skip that.
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
    body = b"\x00output\xff"
    assert sqlite3.adapters[(bytes, sqlite3.PrepareProtocol)](body) is body
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        await asyncio.wait_for(store.write([sql.insert_ping(store.next_id("pings"), "m", 1.0, "success", None, None,
                                                            body, None)]), 10)
        rows = await store.fetchall("SELECT exit_status IS NULL, typeof(body), body, remote IS NULL FROM pings",
                                    tuples=True)
        assert rows == [(1, "blob", body, 1)]
    finally:
        await store.close()


async def test_a_value_sqlite_cannot_take_fails_that_write_not_the_writer(tmp_path: Path) -> None:
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        with pytest.raises(StoreError, match="too large"):
            await asyncio.wait_for(store.write([sql.insert_ping(store.next_id("pings"), "m", 1.0, "success",
                                                                2 ** 70, None, None, None)]), 10)
        await asyncio.wait_for(store.write([sql.insert_ping(store.next_id("pings"), "m", 2.0, "success", 0, None,
                                                            None, None)]), 10)
        assert len(await store.fetchall("SELECT id FROM pings")) == 1
    finally:
        await store.close()


async def test_a_store_opened_again_after_close_commits(tmp_path: Path) -> None:
    store = Store(tmp_path / "cw.db")
    await store.open()
    await store.close()
    await store.open()
    try:
        for at in (1.0, 2.0, 3.0):
            await asyncio.wait_for(store.write([sql.insert_ping(store.next_id("pings"), "m", at, "success", None,
                                                                None, None, None)]), 10)
            await asyncio.sleep(0.05)  # the writer goes back to waiting between them
    finally:
        await store.close()


async def test_retention_keeps_the_newest_runs_per_monitor_and_drops_old_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        now = 1_000_000_000.0
        rows = []
        for i in range(5000):
            monitor = f"m{i % 2}"
            at = now - (200 * 86400 if i < 1000 else 1000 - i / 10)
            rows.append(sql.insert_run(store.next_id("runs"), monitor, None, None, at, 1.0, 0, None, None))
            rows.append(sql.insert_ping(store.next_id("pings"), monitor, at, "success", None, None, b"x", None))
        await store.write(rows)
        deleted = await prune_once(store, ServerConfig(retention_runs=100, retention_days=90), now)
        counts = {r["monitor"]: r["n"] for r in await store.fetchall(
            "SELECT monitor, COUNT(*) AS n FROM runs GROUP BY monitor")}
        assert counts == {"m0": 100, "m1": 100}
        oldest = await store.fetchone("SELECT MIN(ended_at) AS t FROM runs")
        assert oldest is not None and oldest["t"] > now - 90 * 86400
        pings = await store.fetchone("SELECT COUNT(*) AS n FROM pings")
        assert pings is not None and pings["n"] == 600
        assert deleted == 10000 - 200 - 600
    finally:
        await store.close()


async def test_retention_of_100000_runs_keeps_writes_flowing(tmp_path: Path) -> None:
    """Pruning a big database runs in short batches: other writes commit between them."""
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        now = 1_000_000_000.0
        rows = [sql.insert_run(store.next_id("runs"), f"m{i % 50}", None, None, now - 100 * 86400 + i, 1.0, 0,
                               None, None) for i in range(100_000)]
        await store.write(rows)
        latencies: list[float] = []

        async def keep_writing() -> None:
            loop = asyncio.get_running_loop()
            for i in range(200):
                started = loop.time()
                await store.write([sql.insert_ping(store.next_id("pings"), "live", now, "success", None, None,
                                                   None, None)])
                latencies.append(loop.time() - started)
                await asyncio.sleep(0.001)

        writer = asyncio.create_task(keep_writing())
        deleted = await prune_once(store, ServerConfig(retention_runs=1000, retention_days=90), now)
        await writer
        assert deleted == 100_000
        remaining = await store.fetchone("SELECT COUNT(*) AS n FROM runs")
        assert remaining is not None and remaining["n"] == 0
        assert len(latencies) == 200
        # No write waited for the whole prune: each waits for at most a batch or two.
        assert max(latencies) < 2.0
    finally:
        await store.close()


async def test_an_incident_opened_and_closed_in_one_group_commit_ends_closed(tmp_path: Path) -> None:
    """Statements are merged by SQL text: a close must never run before the open."""
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        await store.write([sql.upsert_incident(1, "x", 1, "failed", "warning", "x failed", 1.0, None)])
        await asyncio.gather(
            store.write([sql.close_incident(1, "x", 1, 2.0)]),
            store.write([sql.upsert_incident(2, "y", 1, "failed", "warning", "y failed", 3.0, None)]),
            store.write([sql.close_incident(2, "y", 1, 4.0)]),
        )
        rows = {r["id"]: (r["closed_at"], r["summary"]) for r in await store.fetchall("SELECT * FROM incidents")}
        assert rows == {1: (2.0, "x failed"), 2: (4.0, "y failed")}
    finally:
        await store.close()


async def test_incidents_are_listed_newest_first_by_when_they_opened(tmp_path: Path) -> None:
    """A Tick planned ahead takes its incident's id before the incident opens: an
    incident with a lower id may have opened later, and is listed first."""
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        await store.write([sql.upsert_incident(1, "planned", 1, "missed", "warning", "s", 20.5, None),
                           sql.upsert_incident(2, "pinged", 1, "failed", "warning", "s", 20.2, None),
                           sql.upsert_incident(3, "pinged", 2, "failed", "warning", "s", 30.0, 31.0)])
        assert [r["id"] for r in await store.incidents()] == [3, 1, 2]
        assert [r["id"] for r in await store.incidents("pinged")] == [3, 2]
        assert [r["id"] for r in await store.incidents(open_only=True, limit=1)] == [1]
    finally:
        await store.close()


async def test_the_next_delivery_time_ignores_rows_waiting_behind_an_earlier_one(tmp_path: Path) -> None:
    """A recovery queued behind its trigger (in backoff) is not due before the trigger:
    counting it made the delivery worker spin until the trigger's retry."""
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        await store.write([sql.insert_outbox(1, "hook", "m", 7, "failed", {}, 100.0),
                           sql.insert_outbox(2, "hook", "m", 7, "recovered", {}, 200.0),
                           ("UPDATE outbox SET next_attempt_at = 900.0 WHERE id = 1", ())])
        assert await store.next_outbox_time("hook") == 900.0
        assert [r["id"] for r in await store.due_outbox("hook", 1000.0)] == [1]
    finally:
        await store.close()


async def test_stored_states_are_read_for_all_monitors_or_for_the_names_asked(tmp_path: Path) -> None:
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        await store.write([sql.upsert_monitor(f"m{i}", 1.0, {"created_at": float(i)}) for i in range(1200)])
        assert len(await store.load_monitors()) == 1200
        wanted = [f"m{i}" for i in range(0, 1200, 2)] + ["never-seen"]  # more than one query's worth
        got = await store.load_monitors(wanted)
        assert sorted(got) == sorted(wanted[:-1])
        assert got["m4"] == ('{"created_at":4.0}', None)
    finally:
        await store.close()


async def test_a_write_after_new_monitors_rows_wins_in_the_same_group_commit(tmp_path: Path) -> None:
    # The writer runs a batch grouped by SQL text, in the order each text first came: here
    # the ping's upsert text (first used for "z") runs before the new rows' insert. The
    # insert leaves a row already there alone, so x ends with the ping's state all the same.
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        before = store.commits
        await asyncio.gather(store.write([sql.upsert_monitor("z", 1.0, '{"created_at":1.0}')]),
                             store.write([sql.insert_new_monitors(["x", "y"], 2.0, '{"created_at":2.0}')]),
                             store.write([sql.upsert_monitor("x", 2.0, '{"created_at":2.0,"failures":1}')]))
        assert store.commits - before == 1
        got = await store.load_monitors()
        assert got == {"x": ('{"created_at":2.0,"failures":1}', None), "y": ('{"created_at":2.0}', None),
                       "z": ('{"created_at":1.0}', None)}
    finally:
        await store.close()


async def test_writes_queued_before_close_are_committed_by_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "cw.db")
    await store.open()
    pending = [store.write([sql.insert_ping(store.next_id("pings"), "m", float(i), "success", None, None, None,
                                            None)]) for i in range(3)]
    await store.close()
    assert all(f.done() and f.exception() is None for f in pending)
    store = Store(tmp_path / "cw.db")
    await store.open()
    try:
        row = await store.fetchone("SELECT COUNT(*) AS n FROM pings")
        assert row is not None and row["n"] == 3
    finally:
        await store.close()


def test_the_shorter_ping_and_run_texts_store_the_rows_the_full_ones_do(tmp_path: Path) -> None:
    """insert_ping and insert_run leave out the columns that are None: the rows are the
    same as the full INSERT's, NULLs included, for every mix of None and values."""
    import itertools

    from cronwarden import statements
    from cronwarden.schema import MIGRATIONS

    db = sqlite3.connect(tmp_path / "rows.db")
    for version in sorted(MIGRATIONS):
        db.executescript(MIGRATIONS[version])
    pid = 0
    for exit_status, rid, body, remote in itertools.product((None, 0, 3), (None, "r1"), (None, b"", b"out"),
                                                            (None, "10.0.0.1")):
        for text, params in (sql.insert_ping(pid + 1, "m", 1.5, "success", exit_status, rid, body, remote),
                             (statements._PING, (pid + 2, "m", 1.5, "success", exit_status, rid, body, remote))):
            db.execute(text, params)
        pid += 2
    for rid, started, duration, exit_status, metadata, ping_id in itertools.product(
            (None, "r1"), (None, 1.0), (None, 0.5), (None, 0), (None, {}, {"rows": 3}), (None, 7)):
        for text, params in (sql.insert_run(pid + 1, "m", rid, started, 2.0, duration, exit_status, metadata, ping_id),
                             (statements._RUN, (pid + 2, "m", rid, started, 2.0, duration, exit_status,
                                                None if metadata is None else statements.dumps(metadata), ping_id))):
            db.execute(text, params)
        pid += 2
    for table in ("pings", "runs"):
        columns = [d[0] for d in db.execute(f"SELECT * FROM {table} LIMIT 0").description][1:]  # all but id
        rows = db.execute(f"SELECT {', '.join(columns)}, {', '.join(f'typeof({c})' for c in columns)} "
                          f"FROM {table} ORDER BY id").fetchall()
        assert len(rows) > 2 and len(rows) % 2 == 0
        assert rows[0::2] == rows[1::2]  # values and their SQLite types, the short text's row first
    db.close()


async def test_reads_cut_short_by_close_raise_store_error(tmp_path: Path) -> None:
    """A read in flight when the store closes (a history read at stop) ends in StoreError,
    which its callers handle, not in aiosqlite's ValueError."""
    store = Store(tmp_path / "cw.db")
    await store.open()
    reads = [asyncio.ensure_future(store.fetchall("SELECT 1", tuples=True)) for _ in range(50)]
    await asyncio.sleep(0)
    await store.close()
    results = await asyncio.gather(*reads, return_exceptions=True)
    assert all(r == [(1,)] or isinstance(r, StoreError) for r in results), results
