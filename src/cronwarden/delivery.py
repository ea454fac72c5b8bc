"""Delivery workers: carry outbox rows to their channels, one worker per channel.

Each worker loops over :meth:`ChannelWorker.step`, which sends what is due
once and returns whether it did any work; when idle it waits until woken (a
commit added rows) or until the earliest retry or digest is due. A channel
that hangs or fails only delays its own rows: pings never wait on a delivery,
and other channels have their own workers.

Storm control (``group_window``): the first alert of a burst goes out at
once; alerts that fall due in the following ``group_window`` seconds are
held and then sent together as one digest, and so on while the burst lasts.
A single alert is never delayed.

Every attempt is recorded. A row stays ``pending`` until a delivery succeeds,
so a crash at any point means a repeat, never a loss; the stable delivery id
(``cw-<outbox id>``, or ``cw-<first>-<last>`` for a digest) lets receivers
drop it. A row is given up (``dead``) on a permanent error or once it is older
than the channel's ``give_up_after``; that is logged and written into the
incident. Rows of one incident go out in order: the store only offers the
oldest pending row of each incident.

Rows a commit adds are handed to the worker with their payloads
(:meth:`ChannelWorker.offer`). While the worker knows that the outbox holds
no other pending row of its channel (it read none at its last idle check, and
nothing failed since), it sends those from memory instead of reading them
back: the query and the decoding of a burst's payloads cost more than the rest
of the way to the channel. Anything else (a failure left rows pending, rows
committed without an offer, a new worker) sends it back to reading the outbox.

A reload that changes a channel retires its worker (:meth:`ChannelWorker.retire`):
it finishes the requests under way and starts no other, and the worker with the new
settings starts once it is done (:func:`take_over`), so no alert goes out twice. A
removed channel's worker finishes the same way before its pending rows are given up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Callable, Mapping

import aiohttp

from . import fastjson
from . import store as sql
from .channels import DeliveryError, SendContext, Sender
from .channels.render import make_digest
from .config import ChannelConfig
from .store import Statement, Store, StoreError
from .wheel import Clock

log = logging.getLogger("cronwarden.delivery")

BASE_BACKOFF = 2.0  # seconds before the first retry
MAX_BACKOFF = 900.0
MAX_RETRY_AFTER = 3600.0
MAX_DIGEST = 500  # alerts folded into one digest at most


def backoff(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with jitter: 50-100% of min(2 s x 2^(n-1), 15 min)."""
    step = min(MAX_BACKOFF, BASE_BACKOFF * (2 ** max(0, attempts - 1)))
    return step * (0.5 + rng.random() / 2)


Row = Mapping[str, Any]  # an outbox row: a sqlite3.Row, or one offered from memory (payload decoded)


def delivery_id(rows: list[Row]) -> str:
    return f"cw-{rows[0]['id']}" if len(rows) == 1 else f"cw-{rows[0]['id']}-{rows[-1]['id']}"


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
        self.failures = 0  # in a row (reset by a success)
        self.failures_total = 0  # attempts that failed, for /metrics
        self.window_until = 0.0  # end of the current burst window (epoch seconds)
        self._limit = asyncio.Semaphore(channel.concurrency)
        # Offered rows, oldest first. While `_in_memory` holds they are every pending row
        # of this channel in the database, and step() takes them from here.
        self._fresh: list[dict[str, Any]] = []
        self._in_memory = False
        self._back_to_database = 0  # times _from_database() ran: an idle read older than that is stale
        self._retired = False
        # The worker this one replaces (retired by a reload) and its task: this one starts
        # when that one is done (take_over).
        self.predecessor: tuple[ChannelWorker, asyncio.Task[None]] | None = None

    def offer(self, row: dict[str, Any]) -> None:
        """An outbox row of this channel that was just committed (payload as a dict)."""
        self._fresh.append(row)
        self.wake.set()

    def retire(self) -> None:
        """Stop once the deliveries under way are answered and recorded, starting no
        other (those rows stay pending): a reload changed the channel, and a worker with
        the new settings takes over (take_over)."""
        self._retired = True
        self.wake.set()

    def poke(self) -> None:
        """Rows of this channel were committed without an offer: read the outbox next."""
        self._from_database()
        self.wake.set()

    def _from_database(self) -> None:
        self._in_memory = False
        self._back_to_database += 1
        self._fresh.clear()

    # ------------------------------------------------------------ one step

    async def step(self) -> bool:
        """Send what is due once; True when anything was attempted."""
        now = self.clock.time()
        if not self._in_memory:
            self._fresh.clear()  # committed, so the query below (or a later one) reads them
        if self.channel.group_window > 0 and now < self.window_until:
            return False  # inside a burst window: the loop wakes at its end
        digests = self.channel.group_window > 0
        limit = MAX_DIGEST * self.channel.concurrency if digests else MAX_DIGEST
        if self._in_memory:
            rows: list[Row] = self._take_fresh(limit)
        else:
            rows = await self.store.due_outbox(self.channel.name, now, limit)
        if not rows:
            return False
        if digests:
            # One alert alone, or everything held during the window, in digests of at most
            # MAX_DIGEST sent side by side (up to `concurrency`). When more was due than
            # that, the rest goes at once too: the window opens after the last part.
            if len(rows) < limit:
                self.window_until = now + self.channel.group_window
            parts = [rows[i:i + MAX_DIGEST] for i in range(0, len(rows), MAX_DIGEST)]
            await asyncio.gather(*(self._limited(part) for part in parts))
        else:
            await asyncio.gather(*(self._limited([row]) for row in rows))
        return True

    def _take_fresh(self, limit: int) -> list[Row]:
        """What due_outbox() would return, from the offered rows: up to `limit`, oldest
        first, and only the oldest of each incident (the next one waits for the next step)."""
        taken: list[Row] = []
        rest: list[dict[str, Any]] = []
        incidents: set[int] = set()
        for row in self._fresh:
            incident = row["incident_id"]
            if len(taken) >= limit or incident in incidents:
                rest.append(row)
                continue
            taken.append(row)
            if incident is not None:
                incidents.add(incident)
        self._fresh = rest
        return taken

    async def _limited(self, rows: list[Row]) -> None:
        async with self._limit:
            if not self._retired:  # retired meanwhile: the rows stay pending for the next worker
                await self.deliver(rows)

    async def deliver(self, rows: list[Row]) -> None:
        """One attempt at sending `rows` (one alert, or a digest of several)."""
        payloads = [p if isinstance(p := row["payload"], dict) else fastjson.loads(p) for row in rows]
        payload = payloads[0] if len(rows) == 1 else make_digest(payloads)
        started = time.monotonic()
        at = self.clock.time()
        ctx = SendContext(self.session, at)
        error: DeliveryError | None = None
        status: int | None = None
        try:
            status = await asyncio.wait_for(
                self.sender(self.channel, payload, delivery_id(rows), ctx), self.channel.timeout + 5)
        except DeliveryError as exc:
            error = exc
        except asyncio.TimeoutError:
            error = DeliveryError(f"no result within {self.channel.timeout}s")
        except Exception as exc:  # a bug in a sender must not kill the worker
            log.exception("sender for channel %s crashed", self.channel.name)
            error = DeliveryError(f"internal error: {exc!r}")
        duration_ms = (time.monotonic() - started) * 1000
        wait: float | None = None  # one retry time for every row: a digest is retried as one
        if error is not None and not error.permanent:
            wait = backoff(max(row["attempts"] for row in rows) + 1, self.rng)
            if error.retry_after is not None:
                wait = max(wait, min(error.retry_after, MAX_RETRY_AFTER))
            what = f"alert {rows[0]['id']}" if len(rows) == 1 else f"digest {delivery_id(rows)} of {len(rows)} alerts"
            log.warning("%s to channel %s failed (%s); retry in %.0fs", what, self.channel.name, error, wait)
        statements: list[Statement] = []
        for row in rows:
            statements += self._outcome(row, at, status, error, ctx.answer, duration_ms, wait)
        try:
            await self.store.write(statements)
        except StoreError:
            self._from_database()
            await asyncio.sleep(1.0)  # the store logged it; the rows stay pending and are retried
        if error is not None:
            self._from_database()  # a retry is pending now (or the rows were given up: harmless)
        else:
            self.failures = 0
            if len(rows) > 1:
                log.info("sent a digest of %d alerts to channel %s", len(rows), self.channel.name)

    def _outcome(self, row: Row, at: float, status: int | None, error: DeliveryError | None,
                 answer: str, duration_ms: float, wait: float | None) -> list[Statement]:
        """The attempt record and the row's next state (`wait`: seconds to the retry)."""
        if error is None:
            return sql.record_attempt(self.store.next_id("delivery_attempts"), row["id"], at, True, status,
                                      None, answer, duration_ms, "sent", None)
        self.failures += 1
        self.failures_total += 1
        status = error.status if error.status is not None else status
        age = at - row["created_at"]
        if wait is None or age >= self.channel.give_up_after:
            why = "a permanent error" if error.permanent else f"{self.channel.give_up_after}s of retries"
            message = f"gave up delivering to channel {self.channel.name} after {why}: {error}"
            log.error("alert %s (%s %s): %s", row["id"], row["monitor"], row["event"], message)
            statements = sql.record_attempt(self.store.next_id("delivery_attempts"), row["id"], at, False,
                                            status, str(error), answer, duration_ms, "dead", None)
            if row["incident_id"] is not None:
                statements.append(sql.insert_incident_event(
                    self.store.next_id("incident_events"), row["incident_id"], at, "delivery_failed",
                    {"channel": self.channel.name, "outbox": row["id"], "error": str(error)}))
            return statements
        return sql.record_attempt(self.store.next_id("delivery_attempts"), row["id"], at, False, status,
                                  str(error), answer, duration_ms, "pending", at + wait)

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        while not self._retired:
            try:
                worked = await self.step()
            except StoreError:
                worked = False
            if worked or self._retired:
                continue
            self.wake.clear()
            if self._in_memory:
                next_at = self.clock.time() if self._fresh else None  # offered rows are due at once
            else:
                seen = self._back_to_database
                try:
                    next_at = await self.store.next_outbox_time(self.channel.name)
                except StoreError:
                    next_at = self.clock.time() + 1.0
                if next_at is None and seen == self._back_to_database:
                    # Nothing pending in the database: from now on every new row is offered
                    # (rows committed while this was read are offered after their commit).
                    # A poke meanwhile means a row may have landed without an offer: read again.
                    self._in_memory = True
            if next_at is not None and self.channel.group_window > 0:
                next_at = max(next_at, self.window_until)
            timeout = None if next_at is None else max(0.0, next_at - self.clock.time())
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass


FINISH_MARGIN = 10.0  # seconds past its timeout a retired worker's request may take before it is cut off


async def take_over(worker: ChannelWorker) -> None:
    """Run `worker` once the workers it replaces (retired) have finished the deliveries
    under way: an alert being sent is answered and recorded, not cancelled mid-request
    and sent again by `worker` (deliveries they had not started are left pending)."""
    if worker.predecessor is not None:
        await finish(*worker.predecessor)
        worker.predecessor = None
    await worker.run()


Workers = dict[str, tuple[ChannelWorker, "asyncio.Task[None]"]]  # channel name -> worker and its task


def sync_workers(workers: Workers, channels: Mapping[str, ChannelConfig],
                 new_worker: Callable[[ChannelConfig], ChannelWorker],
                 ) -> list[tuple[ChannelWorker, "asyncio.Task[None]"]]:
    """Bring `workers` in line with `channels`: a new channel gets a worker; a changed
    one gets a new worker, which takes over once the old one (retired) has finished
    its requests under way (take_over). Returns the workers of removed channels, taken
    out of `workers` and still running: the caller finishes or stops them."""
    replaced: Workers = {}
    removed = []
    for name in list(workers):
        if channels.get(name) != workers[name][0].channel:
            old, task = workers.pop(name)
            if name in channels:
                old.retire()
                replaced[name] = (old, task)
            else:
                removed.append((old, task))
    for name, channel in channels.items():
        if name not in workers:
            worker = new_worker(channel)
            worker.predecessor = replaced.get(name)
            workers[name] = (worker, asyncio.create_task(take_over(worker), name=f"cronwarden-channel-{name}"))
    return removed


async def finish(worker: ChannelWorker, task: "asyncio.Task[None]") -> None:
    """Retire `worker` and those it replaced that are still finishing, and wait until they
    are done; a request that outlasts the longest of their timeouts (plus FINISH_MARGIN)
    is cut off, its row left pending. (The longest: a worker that replaced another waits
    for it, so it may wait on a request of the older settings.)"""
    chain = _chain(worker, task)
    for retired, _ in chain:
        retired.retire()
    try:
        grace = max(w.channel.timeout for w, _ in chain) + FINISH_MARGIN
        await asyncio.wait([t for _, t in chain], timeout=grace)
    finally:
        await stop(worker, task)


async def stop(worker: ChannelWorker, task: "asyncio.Task[None]") -> None:
    """Stop `worker` at once, and the workers it replaced that are still finishing (an
    unfinished delivery stays pending: retried by the next worker, or at the next start)."""
    tasks = [t for _, t in _chain(worker, task)]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _chain(worker: ChannelWorker, task: "asyncio.Task[None]") -> list[tuple[ChannelWorker, "asyncio.Task[None]"]]:
    """`worker` and the workers it is still waiting for (newest first), with their tasks."""
    chain = [(worker, task)]
    while worker.predecessor is not None:
        worker, task = worker.predecessor
        chain.append((worker, task))
    return chain
