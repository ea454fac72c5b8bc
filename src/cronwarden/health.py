"""Is the daemon healthy? One answer for /healthz, the external heartbeat
(``server.heartbeat_url``) and systemd's watchdog.

Healthy means: the timer task is alive and not behind (no deadline overdue by
more than WHEEL_BEHIND), the last database write succeeded, and no alert has
waited in the outbox longer than OUTBOX_STALE (a channel that has been down
that long is news the operator must get from outside: the heartbeat stops).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("cronwarden.health")

WHEEL_BEHIND = 10.0  # seconds a due deadline may wait before the timer counts as stuck
OUTBOX_STALE = 600.0  # seconds an alert may wait for delivery before the daemon counts as unhealthy


def wheel_behind(daemon: "Daemon") -> float:
    """How long the earliest due deadline has been waiting (0 when none is due): on the
    wheel, or taken off it and planned ahead (the timer's plans wait outside the wheel)."""
    times = [t for t in (daemon.wheel.next_time(), daemon.ahead.next_time()) if t is not None]
    if not times:
        return 0.0
    return max(0.0, daemon.clock.time() - min(times))


def alive(daemon: "Daemon") -> bool:
    """The cheap, synchronous part (for the watchdog): timer running and on time, database writable."""
    task = daemon._timer_task
    return (task is not None and not task.done() and wheel_behind(daemon) < WHEEL_BEHIND
            and daemon.store.last_error is None)


async def report(daemon: "Daemon") -> dict[str, Any]:
    problems = []
    try:
        backlog = await daemon.store.outbox_backlog()
        oldest = await daemon.store.oldest_pending_outbox()
    except Exception as exc:  # the read connection failing is itself the news
        backlog, oldest = -1, None
        problems.append(f"database read failed: {exc}")
    if daemon.store.last_error:
        problems.append(f"database write failed: {daemon.store.last_error}")
    behind = wheel_behind(daemon)
    task = daemon._timer_task
    if task is None or task.done():
        problems.append("the timer task is not running")
    elif behind >= WHEEL_BEHIND:
        problems.append(f"the timer is {behind:.0f}s behind")
    waiting = 0.0 if oldest is None else max(0.0, daemon.clock.time() - oldest)
    if waiting >= OUTBOX_STALE:
        problems.append(f"an alert has waited {waiting:.0f}s for delivery")
    stats = daemon.stats
    return {
        "status": "ok" if not problems else "degraded",
        "problems": problems,
        "database": "ok" if daemon.store.last_error is None else f"error: {daemon.store.last_error}",
        "monitors": len(daemon.states),
        "outbox_backlog": backlog,
        "outbox_oldest_wait_s": round(waiting, 1),
        "wheel_behind_s": round(behind, 3),
        "wheel_lateness_s": round(stats.last_lateness, 3),
        "wheel_max_lateness_s": round(stats.max_lateness, 3),
        "pings": stats.pings,
        "alerts": stats.alerts,
    }


async def heartbeat_loop(daemon: "Daemon") -> None:
    """Ping server.heartbeat_url every heartbeat_every while healthy: an external
    dead man's switch then notices a dead or wedged daemon (or a dead box)."""
    failing = False
    while True:
        server = daemon.config.server
        if server.heartbeat_url and daemon.session is not None:
            result = await report(daemon)
            if result["status"] == "ok":
                try:
                    async with daemon.session.get(server.heartbeat_url, allow_redirects=False,
                                                  timeout=aiohttp.ClientTimeout(total=10)) as resp:
                        await resp.read()
                        ok = resp.status < 400
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                if not ok and not failing:
                    log.warning("heartbeat to %s failed; retrying every %ss", server.heartbeat_url,
                                server.heartbeat_every)
                failing = not ok
            else:
                log.warning("heartbeat withheld: %s", "; ".join(result["problems"]))
        await asyncio.sleep(server.heartbeat_every)
