#!/usr/bin/env python3
"""What a ping's rows cost SQLite alone: the floor under the daemon's ping path.

A durable ping writes three rows: the ping, the run it ends (a heartbeat's
run too) and the monitor's state (an upsert). This script writes exactly
those statements (cronwarden's own SQL and schema) for pings spread at
random over ``--monitors`` monitors, group-committed as the daemon's writer
does (BEGIN IMMEDIATE, one executemany per statement text, COMMIT), in
batches of each ``--batches`` size, with ``synchronous=FULL`` (as the
daemon) and with ``synchronous=OFF`` (no fsync: what the fsyncs cost is the
difference). The database first gets ``--grow`` pings, as a daemon's that
has run a while. Figures are CPU time of this process per ping (SQLite runs
in it; the kernel's work for its writes and fsyncs included), pinned to
``--cpu``. No daemon, no HTTP, no event loop: compare with the daemon's CPU
per ping in ping_throughput.py.

    python bench/sqlite_rows.py                      # batches 1, 5, 25, 100
    python bench/sqlite_rows.py --batches 25 --pings 50000 --dir /var/tmp
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import add_run_options, machine_line, pin_to, table, time_limit, use_source  # noqa: E402

# A state row as a ping leaves it: times, a count, a duration (MonitorState.to_json's shape).
STATE = ('{"created_at":1764000000.0,"last_ping":1764100000.123456,"last_success":1764100000.123456,'
         '"last_end":1764100000.123456,"incident_count":2,"last_duration":1.234567}')


def open_db(path: Path, synchronous: str) -> sqlite3.Connection:
    from cronwarden.schema import MIGRATIONS, SCHEMA_VERSION

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    for version in range(1, SCHEMA_VERSION + 1):
        db.executescript(MIGRATIONS[version])
    return db


class Writer:
    """Pings at random over the monitors, written as the daemon's group commit writes them."""

    def __init__(self, db: sqlite3.Connection, monitors: int, rng: random.Random) -> None:
        from cronwarden import statements as sql

        self.db, self.monitors, self.rng, self.sql = db, monitors, rng, sql
        self.next_id = 0
        db.execute("BEGIN")
        for i in range(monitors):
            db.execute(*sql.upsert_monitor(f"m{i}", 1764000000.0, STATE))
        db.execute("COMMIT")

    def write(self, pings: int, batch: int) -> None:
        sql, db = self.sql, self.db
        for _ in range(pings // batch):
            grouped: dict[str, list[tuple]] = {}
            for _ in range(batch):
                self.next_id += 1
                pid, name, at = self.next_id, f"m{self.rng.randrange(self.monitors)}", 1764100000.0 + self.next_id
                for text, params in (sql.insert_ping(pid, name, at, "success", 0, None, None, "127.0.0.1"),
                                     sql.insert_run(pid, name, None, at - 1.5, at, 1.5, 0, None, pid),
                                     sql.upsert_monitor(name, 1764000000.0, STATE)):
                    grouped.setdefault(text, []).append(params)
            db.execute("BEGIN IMMEDIATE")
            for text, rows in grouped.items():
                db.executemany(text, rows)
            db.execute("COMMIT")


def measure(directory: Path, synchronous: str, batch: int, args: argparse.Namespace) -> float:
    """CPU microseconds per ping, in batches of `batch`, on a database grown to args.grow pings."""
    path = directory / f"rows-{synchronous}-{batch}.db"
    db = open_db(path, synchronous)
    try:
        writer = Writer(db, args.monitors, random.Random(batch))
        writer.write(args.grow, 500)
        started = time.process_time()
        writer.write(args.pings, batch)
        return (time.process_time() - started) / (args.pings // batch * batch) * 1e6
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--monitors", type=int, default=10_000)
    ap.add_argument("--grow", type=int, default=100_000, help="pings written before measuring (default 100,000)")
    ap.add_argument("--pings", type=int, default=20_000, help="pings measured per cell (default 20,000)")
    ap.add_argument("--batches", default="1,5,25,100", help="pings per commit, comma list")
    ap.add_argument("--cpu", type=int, default=0)
    add_run_options(ap)
    args = ap.parse_args()
    print(machine_line())
    print("measuring", use_source(args.src))
    if args.src:
        from _common import SOURCE  # set by use_source
        sys.path.insert(0, str(SOURCE))
    batches = [int(b) for b in args.batches.split(",")]
    time_limit(args.max_seconds or 120 + 10 * len(batches) * (args.grow + args.pings) / 10_000)
    pin_to(args.cpu)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="cw-rows-", dir=args.dir))
    print("database in", tmp)
    try:
        for batch in batches:
            full = measure(tmp, "FULL", batch, args)
            off = measure(tmp, "OFF", batch, args)
            rows.append([batch, f"{full:.1f}", f"{off:.1f}", f"{full - off:.1f}", f"{(full - off) * batch:.0f}"])
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nthree rows per ping (ping, run, state) over {args.monitors:,} monitors, {args.pings:,} pings per "
          f"cell after {args.grow:,}; CPU time of this process, pinned to CPU {args.cpu}")
    print(table(["pings/commit", "FULL us/ping", "OFF us/ping", "fsync us/ping", "fsync us/commit"], rows))


if __name__ == "__main__":
    main()
