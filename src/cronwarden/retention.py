"""Retention: keep the database from growing without bound.

Runs and pings older than ``retention.days``, runs beyond the newest
``retention.runs`` of a monitor (pings beyond three times that: a run is
usually a start, an end and a log line), and delivered alerts older than
``retention.days`` are deleted in small batches. Each batch is its own short
transaction through the same writer as the pings, so pruning never holds the
write lock long enough to delay them.
"""

from __future__ import annotations

import asyncio
import logging

from typing import TYPE_CHECKING

from . import checkpoint
from . import store as sql
from .config import ServerConfig
from .store import Store

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("cronwarden.retention")

BATCH = 2000
INTERVAL = 3600.0  # seconds between passes


async def retention_loop(daemon: "Daemon") -> None:
    """The daemon's task: a pass a minute after start-up, then every INTERVAL."""
    await asyncio.sleep(60)  # let start-up and the first burst of overdue alerts settle
    while True:
        try:
            # Pruning may delete pings past the mark: their states are written first.
            await checkpoint.checkpoint(daemon)
            await prune_once(daemon.store, daemon.config.server, daemon.clock.time())
        except Exception:
            log.exception("retention pass failed; trying again next hour")
        await asyncio.sleep(INTERVAL)


async def _drain(store: Store, statements: list[sql.Statement]) -> int:
    total = 0
    while True:
        changed = await store.write_counted(statements)
        total += changed
        if changed == 0:
            return total
        await asyncio.sleep(0)  # let pings in between batches


async def prune_once(store: Store, server: ServerConfig, now: float) -> int:
    """One full pass; returns the number of rows deleted."""
    cutoff = now - server.retention_days * 86400
    deleted = 0
    deleted += await _drain(store, [sql.prune_before("runs", "ended_at", cutoff, BATCH)])
    deleted += await _drain(store, [sql.prune_before("pings", "at", cutoff, BATCH)])
    deleted += await _drain(store, sql.prune_outbox(cutoff, BATCH))
    for table, keep in (("runs", server.retention_runs), ("pings", 3 * server.retention_runs)):
        for monitor in await store.monitors_over(table, keep):
            deleted += await _drain(store, [sql.prune_monitor_beyond(table, monitor, keep, BATCH)])
    if deleted:
        log.info("retention: deleted %d old rows", deleted)
    return deleted
