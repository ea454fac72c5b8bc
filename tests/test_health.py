"""Self-monitoring: /healthz and the external heartbeat."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from conftest import DaemonFactory, Receiver, local_app
from cronwarden import health, timer
from cronwarden.config import parse_config
from cronwarden.daemon import Daemon


async def test_the_heartbeat_url_is_pinged_while_the_daemon_is_healthy(daemon: DaemonFactory) -> None:
    hits: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(asyncio.get_running_loop().time())
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/hb", handle)
    async with local_app(app) as port:
        d = await daemon(f"server: {{listen: '127.0.0.1:0', database: cw.db, "
                         f"heartbeat_url: 'http://127.0.0.1:{port}/hb', heartbeat_every: 1s}}\n"
                         "monitors: {a: {every: 1h}}\n")
        await asyncio.sleep(2.5)
        assert len(hits) >= 2
        status, text = await d.request("GET", "/healthz")
        assert status == 200 and '"status": "ok"' in text


async def test_healthz_is_503_with_the_reason_when_the_timer_is_dead(tmp_path: Path) -> None:
    config = parse_config("server: {listen: '127.0.0.1:0', database: cw.db}\nmonitors: {a: {every: 1h}}\n",
                          tmp_path / "c.yaml")
    d = Daemon(config)
    await d.start()
    try:
        assert (await health.report(d))["status"] == "ok" and health.alive(d)
        assert d._timer_task is not None
        d._timer_task.cancel()
        await asyncio.gather(d._timer_task, return_exceptions=True)
        result = await health.report(d)
        assert result["status"] == "degraded"
        assert "the timer task is not running" in result["problems"]
        assert not health.alive(d)
    finally:
        await d.stop()


async def test_a_planned_tick_left_waiting_past_its_deadline_counts_as_the_timer_behind(tmp_path: Path) -> None:
    """The timer takes deadlines off the wheel a second early and plans them; a timer
    wedged with plans past due is behind even when the wheel itself holds nothing due."""
    from datetime import timedelta

    config = parse_config("server: {listen: '127.0.0.1:0', database: cw.db}\nmonitors: {a: {every: 1h}}\n",
                          tmp_path / "c.yaml")
    d = Daemon(config)
    await d.start()
    try:
        assert d._timer_task is not None
        d._timer_task.cancel()
        await asyncio.gather(d._timer_task, return_exceptions=True)
        d.wheel.cancel("a")
        assert health.wheel_behind(d) == 0.0
        d.ahead.add(timer.plan_ahead(d, "a", d.clock.now() - timedelta(seconds=30)))
        assert 30 <= health.wheel_behind(d) < 40 and health.WHEEL_BEHIND < 30
    finally:
        await d.stop()


async def test_healthz_answers_503_when_an_alert_waits_too_long(daemon: DaemonFactory, receiver: Receiver,
                                                                monkeypatch) -> None:  # type: ignore[no-untyped-def]
    d = await daemon("server: {listen: '127.0.0.1:0', database: cw.db}\n"
                     "channels: {dead: {type: webhook, url: 'http://127.0.0.1:9/x', timeout: 1s}}\n"
                     "monitors: {a: {every: 1h, channels: [dead]}}\n")
    await d.ping("a/fail")
    # Age the pending alert in the database as if it had waited 20 minutes.
    import sqlite3
    db = sqlite3.connect(d.config_path.parent / "cw.db")
    db.execute("UPDATE outbox SET created_at = created_at - 1200")
    db.commit()
    db.close()
    status, text = await d.request("GET", "/healthz")
    assert status == 503 and "waited" in text
