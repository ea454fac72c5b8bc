#!/usr/bin/env python3
"""kill -9 under load: pings answered 200 versus pings stored.

Starts the daemon with 1,000 monitors, drives it with concurrent clients
(each ping carries a unique rid), sends SIGKILL in the middle of the load,
then opens the database the daemon left behind and counts how many of the
pings that were answered 200 are in it. The difference must be zero: a 200
is only sent after the commit (WAL, synchronous=FULL).

    python bench/kill9_load.py [--clients 64] [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from _common import log, machine_line, monitor_lines, start_daemon, table, use_source, write_config


async def load(url: str, clients: int, seconds: float, kill) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    answered: list[str] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    killed = asyncio.Event()

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        n = 0
        while time.monotonic() < stop_at and not killed.is_set():
            rid = uuid.uuid4().hex
            path = (f"/ping/m{(i * 7919 + n) % 1000:06d}" + ("/start" if n % 3 == 1 else "/0" if n % 3 == 2 else "")
                    + f"?rid={rid}")
            n += 1
            try:
                async with session.get(url + path) as resp:
                    if resp.status == 200 and await resp.read() == b"OK":
                        answered.append(rid)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                errors += 1
                return

    async def killer() -> None:
        await asyncio.sleep(seconds / 2)
        kill()
        killed.set()

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(killer(), *(client(i, session) for i in range(clients)))
    return answered, errors


def one_round(workdir: Path, clients: int, seconds: float) -> list[object]:
    config = write_config(workdir, monitor_lines(1000, mixed=False))
    proc = start_daemon(config)
    answered, errors = asyncio.run(load(proc.url, clients, seconds, proc.popen.kill))
    proc.popen.wait(10)
    db = sqlite3.connect(workdir / "cw.db")  # opening it replays the WAL, as a restart would
    stored = {row[0] for row in db.execute("SELECT rid FROM pings")}
    db.close()
    lost = sum(1 for rid in answered if rid not in stored)
    return [len(answered), len(stored), lost, errors]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0, help="load per round; the kill comes halfway")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--src", help="run the daemon from this source tree")
    args = parser.parse_args()
    log(f"source: {use_source(args.src)}")
    print(machine_line())
    rows = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="cw-kill9-") as tmp:
            rows.append([r + 1, *one_round(Path(tmp), args.clients, args.seconds)])
    print(table(["round", "answered 200", "stored", "answered but lost", "requests cut by the kill"], rows))
    lost = sum(int(row[3]) for row in rows)  # type: ignore[call-overload]
    print(f"pings answered 200 but missing after kill -9: {lost}")
    raise SystemExit(1 if lost else 0)


if __name__ == "__main__":
    main()
