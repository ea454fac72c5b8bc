"""Faults against the real daemon: kill -9 under load, a full disk, a target
that hangs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import pytest

from conftest import DaemonFactory, Receiver, local_app
from test_daemon_e2e import config


async def test_kill_9_under_load_loses_no_answered_ping(daemon: DaemonFactory, receiver: Receiver) -> None:
    monitors = "".join(f"  m{i}: {{every: 1h}}\n" for i in range(20))
    d = await daemon(config(receiver, monitors))
    answered: list[str] = []
    stop = asyncio.Event()

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            rid = uuid.uuid4().hex
            try:
                async with session.get(f"{d.url}/ping/m{i}?rid={rid}") as resp:
                    if resp.status == 200 and await resp.text() == "OK":
                        answered.append(rid)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return  # the daemon died mid-request: that ping was never answered

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        clients = [asyncio.create_task(client(i, session)) for i in range(20)]
        await asyncio.sleep(1.5)
        await d.kill9()
        stop.set()
        await asyncio.gather(*clients)
    assert len(answered) > 100
    db = sqlite3.connect(d.config_path.parent / "cw.db")
    stored = {row[0] for row in db.execute("SELECT rid FROM pings")}
    db.close()
    missing = [rid for rid in answered if rid not in stored]
    assert missing == []
    await d.start()  # and it comes back on the same database
    assert (await d.api("monitors/m0"))["pings"] >= sum(1 for _ in answered) // 20 // 2
    # Each monitor's state has its last stored ping, though routine pings' states are
    # written behind them (cronwarden.checkpoint): start-up put back what the kill lost.
    db = sqlite3.connect(d.config_path.parent / "cw.db")
    last = dict(db.execute("SELECT monitor, MAX(at) FROM pings GROUP BY monitor"))
    db.close()
    for i in range(20):
        shown = (await d.api(f"monitors/m{i}"))["last_ping"]
        assert shown == datetime.fromtimestamp(last[f"m{i}"], timezone.utc).isoformat().replace("+00:00", "Z")


@contextlib.asynccontextmanager
async def _released(event: asyncio.Event):  # type: ignore[no-untyped-def]
    """Let a hanging handler finish when the block ends, so the server can shut down."""
    try:
        yield
    finally:
        event.set()


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True)
    return result.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(mount, "3m"):
        pytest.skip("needs root and tmpfs mounts to make a small full filesystem")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_answers_503_says_so_and_recovers_by_itself(
        daemon: DaemonFactory, receiver: Receiver, small_disk: Path) -> None:
    d = await daemon(f"server: {{listen: '127.0.0.1:0', database: '{small_disk}/cw.db'}}\n"
                     f"channels: {{hook: {{type: webhook, url: '{receiver.url}', group_window: 0}}}}\n"
                     "monitors:\n  a: {every: 1h, channels: [hook]}\n  b: {every: 3s, grace: 0, channels: [hook]}\n")
    assert await d.ping("a") == (200, "OK")
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # fill the filesystem to the last byte
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    body = os.urandom(60000)
    statuses = [(await d.ping("a", method="POST", data=body))[0] for _ in range(5)]
    assert 503 in statuses
    status, text = await d.ping("a", method="POST", data=body)
    assert status == 503 and "ping not recorded" in text
    status, health = await d.request("GET", "/healthz")
    assert status == 503 and "database write failed" in health
    # b falls due while the disk is full: its alert cannot be written yet, and is not lost.
    await d.wait_for_log("re-read from the database after a failed write", timeout=10)
    assert receiver.events("b") == []
    filler.unlink()
    assert await d.ping("a", method="POST", data=body) == (200, "OK")
    status, _ = await d.request("GET", "/healthz")
    assert status == 200
    got = await receiver.wait_for(lambda b: b["monitor"] == "b" and b["event"] == "missed")
    assert got.body["incident"] is not None


async def test_a_target_that_hangs_slows_neither_pings_nor_the_timer(daemon: DaemonFactory) -> None:
    from aiohttp import web

    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(release.wait(), 60)
        except asyncio.TimeoutError:
            pass
        return web.Response()

    app = web.Application()
    app.router.add_post("/", hang)
    async with local_app(app) as port, _released(release):
        d = await daemon("server: {listen: '127.0.0.1:0', database: cw.db}\n"
                         f"channels: {{hang: {{type: webhook, url: 'http://127.0.0.1:{port}/', timeout: 30s}}, "
                         "log: {type: log}}\n"
                         "monitors:\n  a: {every: 1h, channels: [hang]}\n  b: {every: 2s, grace: 0, channels: [log]}\n")
        await d.ping("a/fail")  # its alert hangs on the receiver
        started = time.monotonic()
        for _ in range(50):
            assert (await d.ping("a"))[0] == 200
        assert time.monotonic() - started < 5
        line = await d.wait_for_log(r"ALERT \[warning\] missed monitor=b", timeout=10)
        assert "missed" in line
        status, text = await d.request("GET", "/healthz")
        assert '"wheel_max_lateness_s": 0.' in text
