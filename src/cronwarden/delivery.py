"""Delivery workers: carry outbox rows to their channels, one worker per channel.

Each worker loops over :meth:`ChannelWorker.step`, which delivers every due
row of its channel once and returns whether it did any work; when idle it
waits until woken (a commit added rows) or until the earliest retry is due.
A channel that hangs or fails only delays its own rows: pings never wait on
a delivery, and other channels have their own workers.

Every attempt is recorded. A row stays ``pending`` until a delivery
succeeds, so a crash at any point means a repeat, never a loss; the stable
``webhook-id`` / ``Message-ID`` (``cw-<outbox id>``) lets receivers drop it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import time


import aiohttp

from . import store as sql
from .channels import DeliveryError, SendContext, Sender
from .config import ChannelConfig
from .store import Store, StoreError
from .wheel import Clock

log = logging.getLogger("cronwarden.delivery")

BASE_BACKOFF = 2.0  # seconds before the first retry
MAX_BACKOFF = 900.0
GIVE_UP_AFTER = 3 * 86400.0  # a row older than this that still fails is marked dead


def backoff(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter in [50%, 100%] of the step."""
    step = min(MAX_BACKOFF, BASE_BACKOFF * (2 ** max(0, attempts - 1)))
    return step * (0.5 + rng.random() / 2)


def delivery_id(outbox_id: int) -> str:
    return f"cw-{outbox_id}"


class ChannelWorker:
    def __init__(self, store: Store, channel: ChannelConfig, sender: Sender,
                 session: aiohttp.ClientSession, clock: Clock,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.channel = channel
        self.sender = sender
        self.session = session
        self.clock = clock
        self.rng = rng or random.Random()
        self.wake = asyncio.Event()
        self.failures = 0

    async def step(self) -> bool:
        """Deliver every due row of this channel once; True when any was tried."""
        now = self.clock.time()
        rows = await self.store.due_outbox(self.channel.name, now)
        for row in rows:
            await self.deliver(row)
        return bool(rows)

    async def deliver(self, row: sqlite3.Row) -> None:
        payload = json.loads(row["payload"])
        started = time.monotonic()
        at = self.clock.time()
        status: int | None = None
        error: str | None = None
        next_at: float | None = None
        state = "sent"
        try:
            status = await self.sender(self.channel, payload, delivery_id(row["id"]),
                                       SendContext(self.session, at))
        except DeliveryError as exc:
            error, status = str(exc), exc.status
            self.failures += 1
            if exc.permanent or at - row["created_at"] > GIVE_UP_AFTER:
                state = "dead"
                log.error("giving up on alert %s to channel %s: %s", row["id"], self.channel.name, exc)
            else:
                state = "pending"
                wait = backoff(row["attempts"] + 1, self.rng)
                if exc.retry_after is not None:
                    wait = max(wait, min(exc.retry_after, 3600.0))
                next_at = at + wait
                log.warning("alert %s to channel %s failed (%s); retry in %.0fs",
                            row["id"], self.channel.name, exc, wait)
        except Exception as exc:  # a bug in a sender must not kill the worker
            error, state, next_at = f"internal error: {exc!r}", "pending", at + backoff(row["attempts"] + 1, self.rng)
            log.exception("sender for channel %s crashed", self.channel.name)
        duration_ms = (time.monotonic() - started) * 1000
        try:
            await self.store.write(sql.record_attempt(
                self.store.next_id("delivery_attempts"), row["id"], at, state == "sent", status, error,
                duration_ms, state, next_at))
        except StoreError:
            await asyncio.sleep(1.0)  # the store logs it; the row is retried

    async def run(self) -> None:
        while True:
            try:
                worked = await self.step()
            except StoreError:
                worked = False
            if worked:
                continue
            self.wake.clear()
            next_at = await self._next_due()
            timeout = None if next_at is None else max(0.0, next_at - self.clock.time())
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _next_due(self) -> float | None:
        return await self.store.next_outbox_time(self.channel.name)


