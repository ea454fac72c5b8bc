"""``cronwarden backup --config FILE DEST``: a consistent copy of the live database.

The copy is made with SQLite's online backup API while the daemon keeps
running. The source is opened read-only (``file:...?mode=ro``, with a busy
timeout) and copied ``pages_per_step`` pages at a time with a short sleep
between steps. The daemon's database is in WAL mode, so one read transaction
is held across all the steps: the copy is the snapshot of the moment the
backup began, the daemon's writes are never blocked by it (WAL readers do
not block writers), and they do not make the backup start over (which is
what the backup API does when another connection writes between steps of an
unpinned backup). For a database not in WAL mode, each step takes its own
short read lock instead, so a writer waits at most one step.

The copy is written to a temporary file beside DEST, switched to a
self-contained rollback journal (no -wal/-shm files to carry along), checked
with ``PRAGMA integrity_check``, fsynced and renamed over DEST, so DEST is
always either the previous backup or a complete new one. It is created
mode 0600: it holds ping output and the secret that signs acknowledgement
links.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

COUNTED_TABLES = ("monitors", "pings", "runs", "incidents")
BUSY_TIMEOUT_MS = 5000


class BackupError(Exception):
    """The backup could not be made, or the copy failed its integrity check."""


def _ro_uri(path: Path) -> str:
    return "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"


def _destination(dest: Path) -> Path:
    if dest.is_dir():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return dest / f"cronwarden-{stamp}.db"
    return dest


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def describe(conn: sqlite3.Connection) -> dict[str, Any]:
    """Schema version, size and row counts of an open database."""
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    counts = {t: (conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] if t in tables else None)
              for t in COUNTED_TABLES}
    return {
        "user_version": conn.execute("PRAGMA user_version").fetchone()[0],
        "page_size": conn.execute("PRAGMA page_size").fetchone()[0],
        "pages": conn.execute("PRAGMA page_count").fetchone()[0],
        "tables": tables,
        "counts": counts,
    }


def backup(src: Path, dest: Path, pages_per_step: int = 1024, *, sleep: float = 0.005,
           busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> dict[str, Any]:
    """Copy the database `src` to `dest` (a file, or a directory to put a dated
    file in) and return what was copied: ``dest``, ``bytes``, ``pages``,
    ``page_size``, ``user_version``, ``integrity``, ``tables``, ``counts``
    (monitors, pings, runs, incidents), ``steps``, ``seconds``, ``wal``.
    Raises :class:`BackupError`; DEST is untouched unless the copy is good."""
    src, dest = Path(src), _destination(Path(dest))
    if pages_per_step == 0 or pages_per_step < -1:
        raise ValueError("pages_per_step must be positive (or -1 for everything in one step)")
    if not src.is_file():
        raise BackupError(f"{src}: no such database")
    if not dest.parent.is_dir():
        raise BackupError(f"{dest.parent}: no such directory")
    if dest.exists() and dest.resolve() == src.resolve():
        raise BackupError(f"{dest}: refusing to overwrite the database being backed up")
    started = time.monotonic()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")  # mode 0600
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        info = _copy(src, tmp, pages_per_step, sleep, busy_timeout_ms)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {src} failed: {exc}") from exc
    except OSError as exc:
        raise BackupError(f"backup to {dest} failed: {exc}") from exc
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass
    info.update(source=str(src.resolve()), dest=str(dest), bytes=dest.stat().st_size,
                seconds=time.monotonic() - started)
    return info


def _copy(src: Path, tmp: Path, pages_per_step: int, sleep: float, busy_timeout_ms: int) -> dict[str, Any]:
    source = sqlite3.connect(_ro_uri(src), uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        source.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        wal = str(source.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
        if wal:  # pin one snapshot for every step (see the module docstring)
            source.execute("BEGIN")
            source.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        target = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            steps = 0

            def progress(status: int, remaining: int, total: int) -> None:
                nonlocal steps
                steps += 1
                if remaining and sleep > 0:
                    time.sleep(sleep)

            source.backup(target, pages=pages_per_step, progress=progress)
            target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            try:
                problems = [str(r[0]) for r in target.execute("PRAGMA integrity_check").fetchall()]
            except sqlite3.DatabaseError as exc:  # damage bad enough that the check itself stops
                problems = [str(exc)]
            if problems != ["ok"]:
                raise BackupError(f"the copy of {src} failed its integrity check: {'; '.join(problems[:10])}")
            info = describe(target)
        finally:
            target.close()
        if wal:
            source.execute("COMMIT")
    finally:
        source.close()
    info.update(integrity="ok", steps=steps, wal=wal)
    return info


def _size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


def format_report(info: dict[str, Any]) -> str:
    counts = ", ".join(f"{t} {'-' if n is None else n}" for t, n in info["counts"].items())
    return (f"backed up {info['source']} to {info['dest']}\n"
            f"  {_size(info['bytes'])} ({info['pages']} pages of {info['page_size']} bytes),"
            f" schema version {info['user_version']}, integrity {info['integrity']},"
            f" {info['seconds']:.2f} s\n"
            f"  {counts}")


def cmd_backup(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{args.config}: {len(exc.problems)} problem(s); nothing was backed up", file=sys.stderr)
        return 2
    try:
        info = backup(config.server.database, Path(args.dest), args.pages_per_step)
    except (BackupError, ValueError) as exc:
        print(f"cronwarden backup: {exc}", file=sys.stderr)
        return 1
    print(format_report(info))
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``backup`` to the CLI's subcommands."""
    from .cli import DEFAULT_CONFIG

    parser = sub.add_parser("backup", help="copy the live database consistently (SQLite online backup)",
                            description="Copy the running daemon's database to DEST (a file, or a "
                                        "directory for a dated file) without stopping it.")
    parser.add_argument("dest", metavar="DEST", help="file to write (replaced atomically), or a directory")
    parser.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="YAML file (default %(default)s)")
    parser.add_argument("--pages-per-step", type=int, default=1024,
                        help="pages copied per step (default %(default)s)")
    parser.set_defaults(func=cmd_backup)
