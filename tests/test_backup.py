"""`cronwarden backup`: SQLite's online backup of a real database, with the real
daemon writing to it while the copy is made."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sqlite3
import stat
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import DaemonFactory
from cronwarden import backup as bk
from cronwarden.store import SCHEMA_VERSION, Store

ROWS = 100_000


async def make_database(path: Path, pings: int = ROWS, monitor: str = "filler") -> None:
    """A database with the daemon's schema (made by Store) and `pings` rows in pings."""
    store = Store(path)
    await store.open()
    await store.close()
    db = sqlite3.connect(path, isolation_level=None)
    now = time.time()
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO pings (monitor, at, kind, exit_status, rid, body, remote) VALUES (?,?,?,?,?,?,?)",
        ((monitor, now - (pings - i), "success", 0, None, f"row {i} ".encode() * 8, "127.0.0.1")
         for i in range(pings)))
    db.execute("INSERT INTO monitors (name, created_at, state) VALUES (?, ?, '{}')", (monitor, now))
    db.execute("COMMIT")
    db.close()


def digest(path: Path) -> tuple[int, str]:
    """Row count and a hash of every row of pings, in id order."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    h = hashlib.sha256()
    n = 0
    for row in db.execute("SELECT * FROM pings ORDER BY id"):
        h.update(repr(row).encode())
        n += 1
    db.close()
    return n, h.hexdigest()


def names(folder: Path) -> list[str]:
    """Files in `folder`, less the -wal/-shm that a read-only reader of a WAL database
    leaves beside it when no writer is open (SQLite cannot remove them read-only)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm")))


def open_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


# ------------------------------------------------------------- backup() directly


async def test_backup_copies_100k_pings_exactly(tmp_path: Path) -> None:
    src = tmp_path / "live.db"
    await make_database(src)
    dest = tmp_path / "out" / "copy.db"
    dest.parent.mkdir()

    info = bk.backup(src, dest, pages_per_step=256)

    assert info["dest"] == str(dest)
    assert info["integrity"] == "ok"
    assert info["user_version"] == SCHEMA_VERSION
    assert info["counts"] == {"monitors": 1, "pings": ROWS, "runs": 0, "incidents": 0}
    assert {"monitors", "pings", "runs", "incidents", "incident_events", "outbox", "delivery_attempts",
            "meta"} <= set(info["tables"])
    assert info["bytes"] == dest.stat().st_size == info["pages"] * info["page_size"]
    assert info["steps"] >= info["pages"] // 256  # copied in steps, not at one go
    assert digest(dest) == digest(src)
    copy = open_ro(dest)
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # self-contained, no -wal
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    copy.close()
    assert names(dest.parent) == ["copy.db"]  # no temp file left
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600  # ping output and the ack-link secret


async def test_the_copy_opens_in_the_daemons_store(tmp_path: Path) -> None:
    src = tmp_path / "live.db"
    await make_database(src, pings=1000)
    dest = tmp_path / "restored.db"
    bk.backup(src, dest)
    store = Store(dest)
    await store.open()
    try:
        assert await store.ping_count("filler") == 1000
        assert "filler" in await store.load_monitors()
        assert store.next_id("pings") == 1001
    finally:
        await store.close()


async def test_a_stepped_backup_under_concurrent_writes_is_one_snapshot(tmp_path: Path) -> None:
    """Another connection commits between the steps; the held read transaction keeps
    the backup from starting over and gives exactly the rows committed before it."""
    src = tmp_path / "live.db"
    await make_database(src, pings=50_000)
    stop = threading.Event()
    committed = [0]

    def writer() -> None:
        db = sqlite3.connect(src, isolation_level=None, timeout=5)
        db.execute("PRAGMA synchronous = NORMAL")
        while not stop.is_set():
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO pings (monitor, at, kind) VALUES ('busy', 0, 'success')")
            db.execute("COMMIT")
            committed[0] += 1
        db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while committed[0] < 20:
            await asyncio.sleep(0.01)
        before = committed[0]
        info = await asyncio.to_thread(bk.backup, src, tmp_path / "copy.db", 32, sleep=0.002)
        after = committed[0]
    finally:
        stop.set()
        thread.join()
    assert info["integrity"] == "ok"
    expected_steps = -(-info["pages"] // 32)
    assert info["steps"] <= expected_steps + 1, "the backup restarted"
    assert after > before, "nothing was written during the backup; the test proves nothing"
    copied_busy = info["counts"]["pings"] - 50_000
    assert before <= copied_busy <= after


async def test_dest_directory_gets_a_dated_file(tmp_path: Path) -> None:
    src = tmp_path / "live.db"
    await make_database(src, pings=10)
    out = tmp_path / "backups"
    out.mkdir()
    info = bk.backup(src, out)
    made = list(out.iterdir())
    assert len(made) == 1 and made[0].name.startswith("cronwarden-") and made[0].suffix == ".db"
    assert info["dest"] == str(made[0])


async def test_an_existing_backup_is_replaced_whole(tmp_path: Path) -> None:
    src = tmp_path / "live.db"
    await make_database(src, pings=10)
    dest = tmp_path / "copy.db"
    dest.write_bytes(b"yesterday's backup")
    bk.backup(src, dest)
    assert dest.read_bytes().startswith(b"SQLite format 3\0")


async def test_refusals_leave_dest_alone(tmp_path: Path) -> None:
    src = tmp_path / "live.db"
    await make_database(src, pings=10)
    with pytest.raises(bk.BackupError, match="no such database"):
        bk.backup(tmp_path / "missing.db", tmp_path / "copy.db")
    assert not (tmp_path / "missing.db").exists()  # read-only: never created
    with pytest.raises(bk.BackupError, match="refusing to overwrite"):
        bk.backup(src, src)
    with pytest.raises(bk.BackupError, match="no such directory"):
        bk.backup(src, tmp_path / "nowhere" / "copy.db")
    with pytest.raises(ValueError):
        bk.backup(src, tmp_path / "copy.db", pages_per_step=0)
    assert digest(src)[0] == 10
    assert names(tmp_path) == ["live.db"]


async def test_a_corrupt_copy_is_not_installed(tmp_path: Path) -> None:
    src = tmp_path / "live.db"
    await make_database(src, pings=5000)
    dest = tmp_path / "copy.db"
    dest.write_bytes(b"previous")
    db = sqlite3.connect(src)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    assert not Path(str(src) + "-wal").exists() or Path(str(src) + "-wal").stat().st_size == 0
    with open(src, "r+b") as f:  # scribble over a b-tree page in the middle of pings
        f.seek(page_size * (pages // 2))
        f.write(os.urandom(page_size))
    with pytest.raises(bk.BackupError, match="integrity"):
        bk.backup(src, dest)
    assert dest.read_bytes() == b"previous"
    assert names(tmp_path) == ["copy.db", "live.db"]  # the temporary copy is gone


async def test_the_subcommand_prints_what_it_copied(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await make_database(tmp_path / "cw.db", pings=1234)
    config = tmp_path / "cronwarden.yaml"
    config.write_text("server:\n  database: ./cw.db\nmonitors:\n  filler: {every: 1h}\n")
    parser = argparse.ArgumentParser(prog="cronwarden")
    bk.register(parser.add_subparsers(dest="command", required=True))

    args = parser.parse_args(["backup", "--config", str(config), str(tmp_path / "copy.db")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"to {tmp_path / 'copy.db'}" in out
    assert f"schema version {SCHEMA_VERSION}, integrity ok" in out
    assert "monitors 1, pings 1234, runs 0, incidents 0" in out

    config.write_text("server:\n  database: ./cw.db\nmonitors:\n  bad: {every: soon}\n")
    assert args.func(args) == 2
    assert "problem" in capsys.readouterr().err

    config.write_text("server:\n  database: ./gone.db\nmonitors:\n  filler: {every: 1h}\n")
    assert args.func(args) == 1
    assert "no such database" in capsys.readouterr().err


# ------------------------------------------------------------- the live daemon


async def test_backup_of_the_running_daemon_while_pings_keep_coming(daemon: DaemonFactory, tmp_path: Path) -> None:
    db_path = tmp_path / "cw.db"
    await make_database(db_path, pings=ROWS)  # history, so the copy takes many steps
    d = await daemon("""
        server:
          listen: 127.0.0.1:0
          database: ./cw.db
          retention: {runs: 1000000, days: 3650}
        channels:
          quiet: {type: log}
        monitors:
          job: {every: 1h, channels: [quiet]}
        """)
    assert d.config_path.parent / "cw.db" == db_path

    answered: list[tuple[float, str, float]] = []  # (answered at, body, latency) of every 200
    stop = asyncio.Event()

    async def pinger() -> None:
        while not stop.is_set():
            body = f"ping {uuid.uuid4().hex}"
            t0 = time.monotonic()
            status, text = await d.ping("job", method="POST", data=body)
            assert (status, text.strip()) == (200, "OK"), (status, text)
            answered.append((time.monotonic(), body, time.monotonic() - t0))

    tasks = [asyncio.create_task(pinger()) for _ in range(2)]
    try:
        while len(answered) < 50:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        before = {body for at, body, _ in answered if at <= started}
        dest = tmp_path / "backup" / "cw-copy.db"
        dest.parent.mkdir()
        info = await asyncio.to_thread(bk.backup, db_path, dest, 64, sleep=0.002)
        finished = time.monotonic()
        await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    during = [(at, latency) for at, _, latency in answered if started < at <= finished]
    assert len(during) >= 5, f"only {len(during)} pings answered during a {finished - started:.2f}s backup"
    assert max(latency for _, latency in during) < 2.0  # the daemon was not blocked by the copy

    assert info["integrity"] == "ok"
    copy = open_ro(dest)
    live = open_ro(db_path)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("PRAGMA user_version").fetchone()[0] == \
            live.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"monitors", "pings", "runs", "incidents", "incident_events", "outbox", "delivery_attempts",
                "meta"} <= tables
        copied = {bytes(r[0]).decode() for r in copy.execute("SELECT body FROM pings WHERE monitor = 'job'")}
        assert before <= copied, f"{len(before - copied)} answered pings missing from the copy"
        assert copied <= {body for _, body, _ in answered}  # nothing invented
        assert copy.execute("SELECT COUNT(*) FROM pings WHERE monitor = 'filler'").fetchone()[0] == ROWS
        assert copy.execute("SELECT COUNT(*) FROM runs WHERE monitor = 'job'").fetchone()[0] >= len(before)
        assert copy.execute("SELECT name FROM monitors WHERE name = 'job'").fetchone() is not None
        assert copy.execute("SELECT COUNT(*) FROM meta").fetchone()[0] >= 1  # the ack-link secret
    finally:
        copy.close()
        live.close()
    assert info["counts"]["pings"] == ROWS + len(copied)
