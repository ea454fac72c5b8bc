"""The daemon: a thin shell of I/O around the pure core.

Lifecycle (``Daemon.run``): start → serve → stop.

1. start: open the store, recover every monitor's state, reconcile it with the
   config (new monitors are due from now, removed ones keep their history but
   stop alerting), schedule every deadline (those already past fire at once),
   start the timer task (:mod:`cronwarden.timer`), one delivery worker per
   channel, and the HTTP server.
2. serve: pings, ticks and people's actions go through :meth:`Daemon.plan`
   (the pure :func:`transitions.step`, and every statement of the change)
   and :meth:`Daemon.commit` (one group-committed write of the ping, the new
   state, the run, the incident rows and the outbox rows). Most pings raise
   nothing and take :meth:`Daemon.plan_routine`, plan() without what only alerts
   need. A monitor is held from plan to commit, so no change builds on one that
   may not land.
3. stop (SIGTERM/SIGINT): stop taking requests, stop the timer and the
   workers (an unfinished delivery stays pending and is retried next start),
   commit what was accepted, close the database. A second signal exits at once.

SIGHUP re-reads the config (:mod:`cronwarden.reload`); a bad file is refused
with its problems logged and the running config stays in force.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import aiohttp
from aiohttp import web

from . import (
    acklinks, alerts, checkpoint, delivery, health, maintenance, monitor, reload, retention, sdnotify, stats, timer,
    transitions,
)
from .adopt import recover, resync
from . import store as sql
from .channels import sender_for
from .channels.log import format_line
from .config import ChannelConfig, Config, MonitorConfig
from .delivery import ChannelWorker
from .monitor import Decision, Event, MonitorState
from .ratelimit import RateLimiter
from .store import Statement, Store, StoreError
from .wheel import Clock, TimerWheel

log = logging.getLogger("cronwarden")

KEEPALIVE = 75.0  # seconds an idle keep-alive connection stays open
LISTEN_BACKLOG = 4096  # pending connections the kernel queues (capped by net.core.somaxconn)
# The garbage collector's thresholds while serving, in place of Python's (700, 10, 10).
# Under load a ping's new state outlives two young collections and reaches the oldest
# generation, so with Python's a full collection (~50 ms with 10,000 monitors) came every
# ~2 s, and the young ones ~80 times a second: 12 - 19 us per request. These: ~1 us, and a
# young collection takes ~0.5 ms. The states pings replace are freed by their reference
# counts, not by the collector; only cyclic garbage waits longer for it.
GC_THRESHOLDS = (5000, 10, 100)


class UnknownMonitor(KeyError):
    """The monitor left the config while its ping was being handled."""


@dataclass
class Stats:
    pings: int = 0
    alerts: int = 0
    last_lateness: float = 0.0
    max_lateness: float = 0.0
    clock_jumps: int = 0
    started_at: float = 0.0
    reloads: int = 0
    reload_errors: int = 0


class Daemon:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.store = Store(config.server.database)
        self.states: dict[str, MonitorState] = {}
        self.adopt_config(config)
        self.ack_secret = b""
        self.incident_ids: dict[tuple[str, int], int] = {}
        self.history: dict[str, stats.History] = {}  # recent successful run durations, oldest first
        # per monitor: [pings, alerts] since start, for /metrics
        self.counters: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.wheel = TimerWheel()
        self.ahead = timer.Ahead()  # Ticks the timer has taken off the wheel and planned (timer.py)
        self.stats = Stats()
        self.workers: dict[str, tuple[ChannelWorker, asyncio.Task[None]]] = {}
        self.session: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.bound: tuple[str, int] | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._watchdog_task: asyncio.Task[None] | None = None
        # systemd's notify socket and watchdog; a no-op when not run by systemd. Unset, so
        # `command` channel programs do not inherit NOTIFY_SOCKET/WATCHDOG_*.
        self.notifier = sdnotify.Notifier.from_environ(unset=True)
        self._rearm = asyncio.Event()
        self._sleep_until = 0.0
        self._stopping = asyncio.Event()
        self._background: set[asyncio.Future[object]] = set()
        self._stopped = False
        self.reload_lock = asyncio.Lock()  # reloads run one at a time
        self._force_tick: set[str] = set()  # monitors to Tick at once whatever their deadline
        # monitors between plan() and commit -> the events waiting for them (see _claim)
        self._inflight: dict[str, list[asyncio.Future[None]]] = {}
        # Routine pings' states, written behind them (see cronwarden.checkpoint): the monitors
        # whose row lacks some -> the first of those pings; the last ping of each monitor
        # pinged past the mark; the mark (None until start-up reads it); the last ping id.
        self.unsaved: dict[str, int] = {}
        self.unsaved_wake = asyncio.Event()  # set when `unsaved` gets its first monitor
        self.ping_ids: dict[str, int] = {}
        self.mark: int | None = None
        self.last_ping_id = 0
        self._checkpoint_task: asyncio.Task[None] | None = None
        self.checkpoint_lock = asyncio.Lock()  # checkpoints run one at a time

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.stats.started_at = self.clock.time()
        await self.store.open()
        try:
            self.session = aiohttp.ClientSession()
            self.ack_secret = await self.store.secret("ack_links", acklinks.new_secret)
            async with self.reload_lock:  # a SIGHUP during start-up waits for the states it would change
                await recover(self)
            self._timer_task = asyncio.create_task(timer.run(self), name="cronwarden-timer")
            self._retention_task = asyncio.create_task(retention.retention_loop(self), name="cronwarden-retention")
            self._heartbeat_task = asyncio.create_task(health.heartbeat_loop(self), name="cronwarden-heartbeat")
            self._checkpoint_task = asyncio.create_task(checkpoint.checkpoint_loop(self), name="cronwarden-checkpoint")
            self._sync_workers()
            from .http import build_app, with_fast_pings

            self.runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False,
                                        keepalive_timeout=KEEPALIVE, shutdown_timeout=5.0)
            await self.runner.setup()
            server = self.runner.server
            assert server is not None
            server.request_handler = with_fast_pings(server.request_handler, self)
            # A `:00` burst of curl pings opens hundreds of connections at once: a listen
            # queue of aiohttp's default 128 drops some, and their clients retry a second later.
            site = web.TCPSite(self.runner, self.config.server.host, self.config.server.port,
                               reuse_address=True, backlog=LISTEN_BACKLOG)
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            host, port = sockets[0].getsockname()[:2] if sockets else (self.config.server.host,
                                                                        self.config.server.port)
            self.bound = (host, port)
            if not gc.isenabled():
                gc.freeze()  # what start-up built lives as long as the daemon: never scan it again
                gc.set_threshold(*GC_THRESHOLDS)
                gc.enable()
            log.info("cronwarden listening on http://%s:%s with %d monitors (database %s, %s event loop)",
                     host, port, len(self.config.monitors), self.config.server.database,
                     type(asyncio.get_running_loop()).__module__.split(".")[0])
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop everything start() started; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        for task in (self._watchdog_task, self._timer_task, self._retention_task, self._heartbeat_task,
                     self._checkpoint_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._timer_task = self._retention_task = self._heartbeat_task = self._watchdog_task = None
        self._checkpoint_task = None
        if self.unsaved and self.mark is not None:
            try:
                await checkpoint.checkpoint(self)
            except StoreError as exc:
                log.error("monitor states not written at stop (the next start puts them back): %s", exc)
        for name in list(self.workers):
            await delivery.stop(*self.workers.pop(name))
        if self.session is not None:
            await self.session.close()
            self.session = None
        await self.store.close()
        log.info("cronwarden stopped")

    async def run(self, config_path: str | None = None) -> None:
        """Start, serve until SIGTERM/SIGINT, then stop. SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        signals = 0

        def on_term() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                log.warning("second signal: exiting at once")
                os._exit(1)
            log.info("stopping (signal received)")
            self._stopping.set()

        loop.add_signal_handler(signal.SIGTERM, on_term)
        loop.add_signal_handler(signal.SIGINT, on_term)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload_from(config_path)))
        try:
            await self.start()
            self.notifier.ready(self.status_line())
            self._watchdog_task = asyncio.create_task(
                sdnotify.watchdog_loop(self.notifier, lambda: health.alive(self)), name="cronwarden-watchdog")
            await self._stopping.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.notifier.stopping()
            await self.stop()

    def status_line(self) -> str:
        """One line for `systemctl status` (sd_notify STATUS=)."""
        host, port = self.bound or (self.config.server.host, self.config.server.port)
        return f"serving {len(self.config.monitors)} monitors on http://{host}:{port}"

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------ reload

    async def reload_from(self, path: str | None) -> bool:
        """SIGHUP: re-read the config and apply it, or refuse it (see reload.py)."""
        return await reload.reload_from(self, path)

    def adopt_config(self, new: Config) -> None:
        """Make `new` the running config (the monitors' states are reconciled by the caller)."""
        self.config = new
        self.by_key = new.monitor_by_key()
        self.dependents = new.dependents()
        self.depth = new.depends_depth()
        self.windows = new.windows_by_monitor()
        self.limiter = RateLimiter(new.server.rate_limit, new.server.rate_burst)

    # ------------------------------------------------------------ applying events

    def resolve(self, name_or_key: str) -> str | None:
        """The monitor a ping path names (by name or by key), as the config's own string: the
        dicts keyed by monitor then find it by identity, without comparing the text."""
        cfg = self.config.monitors.get(name_or_key)
        if cfg is not None:
            return cfg.name
        return self.by_key.get(name_or_key.lower())

    def silenced(self, cfg: MonitorConfig) -> bool:
        if not cfg.depends_on:
            return False  # most monitors: no generator to start
        return any(
            (dep_state := self.states.get(dep)) is not None and dep_state.incident is not None
            for dep in cfg.depends_on
        )

    def plan(self, name: str, event: Event, now: datetime, ping_row: tuple | None = None,
             body: bytes | None = None) -> tuple[Decision, alerts.Outcome]:
        """Step the monitor and build every statement of the change; memory is updated."""
        cfg = self.config.monitors[name]
        state = self.states[name]
        decision, outcome = self._decide(name, cfg, state, event, now, self.incident_ids, ping_row, body)
        self._adopt(name, decision, outcome, now)
        self._follow(name, cfg, state, decision.state, event)
        return decision, outcome

    def plan_routine(self, name: str, state: MonitorState, ping: monitor.Ping, now: datetime,
                     ping_row: tuple, history: stats.History | None) -> list[Statement] | None:
        """plan() of a routine ping (transitions.routine_change: most pings), which raises and
        notes nothing: its rows, with no Outcome to build and none of what only alerts read
        (dependencies, maintenance windows); None for every other ping, which plan() takes.
        `history`: self.history's entry for `name`, which the caller has looked up."""
        if state.incident is not None or state.paused:
            return None
        cfg = self.config.monitors[name]
        change = transitions.routine_change(cfg, state, ping, now, () if history is None else history)
        if change is None:
            return None
        new, run = change
        rows, ping_id = self._rows(name, now.timestamp(), ping_row, run)
        self._leave_unsaved(name, ping_id)  # its state row is written behind it (cronwarden.checkpoint)
        self._take(name, new, run, history)
        # _follow(), knowing it is a ping that leaves no incident and no pause
        if not (name in self.wheel and monitor.quiet_ping_defers_deadline(cfg, state, new, ping.kind)):
            self._schedule(name, lazy=True)
        return rows

    def _follow(self, name: str, cfg: MonitorConfig, before: MonitorState, after: MonitorState,
                event: Event) -> None:
        """Put `name`'s next deadline on the wheel after `event` took it from `before` to
        `after`. Most pings only move the deadline later: the timer already on the wheel,
        earlier, stays (see _schedule's `lazy`), and the new deadline need not be worked out."""
        if not (type(event) is monitor.Ping and name in self.wheel
                and monitor.ping_defers_deadline(cfg, before, after, event.kind)):
            self._schedule(name, lazy=True)

    def _decide(self, name: str, cfg: MonitorConfig, state: MonitorState, event: Event, now: datetime,
                incident_ids: dict[tuple[str, int], int], ping_row: tuple | None = None,
                body: bytes | None = None) -> tuple[Decision, alerts.Outcome]:
        """The step and every statement of the change, from `state`; changes nothing in
        memory but `incident_ids` (the incidents it opens), the store's id counters and,
        for a ping (`ping_row`, which only plan() passes), the ping ids and the unsaved
        monitors of cronwarden.checkpoint: a routine ping's state row is left to it."""
        history = self.history.get(name, ())  # read by step(), appended to only after it
        decision = transitions.step(cfg, state, event, now, silenced=self.silenced(cfg),
                                    history=history, maintenance_until=self._maintenance(name, now))
        if decision.alerts or decision.notes:
            output = alerts.tail(body) if decision.alerts else ""
            dependents = self.dependents.get(name)
            suppressed = [d for d in dependents if (st := self.states.get(d)) and st.incident] if dependents else []
            outcome = alerts.apply_alerts(self.store, self.config, cfg, decision, incident_ids, output, now,
                                          suppressed, self.ack_url)
        else:  # what apply_alerts() gives for a decision with nothing to record (most pings)
            outcome = alerts.Outcome(monitor=name)
        statements = outcome.statements
        at = now.timestamp()
        rows, ping_id = self._rows(name, at, ping_row, decision.run)
        if rows:
            statements[:0] = rows
        new = decision.state
        if new is not state:
            if ping_id is not None and not decision.alerts and not decision.notes:
                self._leave_unsaved(name, ping_id)  # a routine ping: its row is written behind it
            else:
                statements.append(self.state_row(name, new, now, at))
        return decision, outcome

    def _leave_unsaved(self, name: str, ping_id: int) -> None:
        """Leave `name`'s state row to the checkpoint from ping `ping_id` on, the first of its
        pings the row lacks (from an earlier one if it is left already); the checkpoint loop
        waits for the first monitor left so."""
        unsaved = self.unsaved
        if name not in unsaved:
            if not unsaved:
                self.unsaved_wake.set()
            unsaved[name] = ping_id

    def _rows(self, name: str, at: float, ping_row: tuple | None,
              run: monitor.RunInfo | None) -> tuple[list[Statement], int | None]:
        """The rows of a ping at `at` (`ping_row`: its kind, exit status, rid, body and
        remote address; None for other events) and of the run that ended with the event,
        and the ping's id (None with no ping). A ping's id is also its monitor's last in
        ping_ids, for the checkpoint."""
        ping_id = None
        rows = []
        if ping_row is not None:
            self.last_ping_id = self.ping_ids[name] = ping_id = self.store.next_id("pings")
            rows.append(sql.insert_ping(ping_id, name, at, *ping_row))
        if run is not None:
            rows.append(sql.insert_run(
                self.store.next_id("runs"), name, run.rid,
                run.started_at.timestamp() if run.started_at else None,
                at, run.duration_s, run.exit_status, run.metadata, ping_id))
        return rows, ping_id

    def state_row(self, name: str, state: MonitorState, now: datetime | None = None, at: float = 0.0) -> Statement:
        """The statement that writes `name`'s row with `state` (`now`, `at`: see to_json),
        with the last ping folded into it when that is past the mark."""
        data = state.to_json(now, at)
        ping_id = self.ping_ids.get(name)
        if ping_id is not None:
            data["ping_id"] = ping_id
        return sql.upsert_monitor(name, data["created_at"], data)

    def _adopt(self, name: str, decision: Decision, outcome: alerts.Outcome, now: datetime) -> None:
        """Take a decided change into memory: the state, counters, history (the caller
        puts the next deadline on the wheel)."""
        run = decision.run
        self._take(name, decision.state, run, None if run is None else self.history.get(name))
        if outcome.alerts:
            self.counters[name][1] += outcome.alerts
            self.stats.alerts += outcome.alerts
        if decision.alerts and name in self.dependents and any(a.closes for a in decision.alerts):
            # Monitors whose alerts this one's outage silenced are checked again now:
            # one still failing is announced on its own.
            for dependent in self.dependents.get(name, ()):
                dep_state = self.states.get(dependent)
                if dep_state is not None and dep_state.incident is not None and not dep_state.incident.notified:
                    self._force_tick.add(dependent)
                    self.wheel.schedule(dependent, now.timestamp())
                    self._rearm.set()

    def _take(self, name: str, state: MonitorState, run: monitor.RunInfo | None,
              history: stats.History | None) -> None:
        """The new state, and the duration of a clean `run` for the `slow` rule's `history`
        (`name`'s, if it has one)."""
        if run is not None and run.duration_s is not None and run.exit_status == 0 and history is not None:
            history.append(run.duration_s)
        self.states[name] = state

    async def commit(self, outcomes: list[alerts.Outcome], gather: bool = True) -> None:
        """Commit what plan() built (`gather`: see Store.write). If the commit fails, the
        in-memory state that plan() already advanced is put back from the database, so an
        incident opened in memory whose alert rows never landed is raised again (on the
        next Tick or ping) instead of being lost."""
        statements = outcomes[0].statements if len(outcomes) == 1 else [s for o in outcomes for s in o.statements]
        if statements:
            try:
                await self.store.write(statements, gather=gather)
            except StoreError:
                await resync(self, {o.monitor for o in outcomes if o.monitor})
                raise
        self._committed(outcomes)

    def _committed(self, outcomes: list[alerts.Outcome]) -> None:
        """After the commit: log the alerts that have no channel, hand the new outbox rows to
        their channels' workers."""
        for outcome in outcomes:
            for payload in outcome.logged:
                log.warning("%s (no channel configured)", format_line(payload))
            for row in outcome.outbox:
                worker = self.workers.get(row["channel"])
                if worker:
                    worker[0].offer(row)

    def _wake(self, channel: str) -> None:
        """Outbox rows for `channel` were committed without being offered: its worker
        reads the outbox now."""
        worker = self.workers.get(channel)
        if worker:
            worker[0].poke()

    async def ping(self, name: str, kind: monitor.PingKind, *, exit_status: int | None = None,
                   rid: str | None = None, metadata: dict | None = None, body: bytes | None = None,
                   remote: str | None = None) -> None:
        """Record one ping; returns once it is committed (raises StoreError if it cannot be)."""
        history = self.history.get(name)
        if history is None and kind is not monitor.PingKind.START and kind is not monitor.PingKind.LOG:
            # Read recent durations in the background: awaiting them here would let a
            # later ping of the same job (its next start) overtake this one.
            history = self.history[name] = stats.History()
            self._spawn(self._load_history(name, self.last_ping_id))
        if name not in self._inflight:  # held by no one (the usual case): hold it without a coroutine call
            claim = self._hold(name)
        else:
            claim = await self._claim(name)
            history = self.history.get(name)  # _load_history or a reload may have replaced it meanwhile
        try:
            state = self.states.get(name)
            if state is None:
                raise UnknownMonitor(name)  # removed by a reload while it waited
            now = self.clock.now()
            event = monitor.ping_event(kind, rid, exit_status, metadata)
            row = (kind._value_, exit_status, rid, body or None, remote)
            outcome = None
            statements = self.plan_routine(name, state, event, now, row, history)
            if statements is None:
                _, outcome = self.plan(name, event, now, row, body)
                statements = outcome.statements
            self.stats.pings += 1
            self.counters[name][0] += 1
            # commit([outcome]), written out: a ping always writes (its own row), and this
            # is one coroutine frame less to resume on every ping's way back from its commit.
            # A ping that raises an alert does not wait for other writes: its delivery waits.
            try:
                await self.store.write(statements, gather=outcome is None or not outcome.alerts)
            except StoreError:
                await resync(self, {name})
                raise
            if outcome is not None and (outcome.outbox or outcome.logged):
                self._committed([outcome])
        finally:
            self._release_one(name, claim)

    async def act(self, name: str, event: Event) -> Decision:
        """Apply a person's action (ack, resolve, pause, resume) to `name` and commit it.
        Raises monitor.IllegalEvent, with the state unchanged, when it does not apply."""
        claim = await self._claim(name)
        try:
            if name not in self.states:
                raise UnknownMonitor(name)
            decision, outcome = self.plan(name, event, self.clock.now())
            await self.commit([outcome])
            return decision
        finally:
            self._release({name: claim})

    async def _claim(self, name: str) -> list[asyncio.Future[None]]:
        """Wait until no change of `name` is between plan() and its commit, then hold it.

        plan() steps the in-memory state before the commit; a second event of the same
        monitor planned on top of a change whose commit then fails would build on a
        state the database never had. Holding the monitor until the commit is done
        (or failed and re-read) rules that out; other monitors are not held up.
        The claim is the list of events waiting for it (usually none: then holding
        costs one dict entry and no future)."""
        while (waiters := self._inflight.get(name)) is not None:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters.append(waiter)
            await waiter
        return self._hold(name)

    def _hold(self, name: str) -> list[asyncio.Future[None]]:
        """Hold `name`, which no one holds (see _claim)."""
        claim: list[asyncio.Future[None]] = []
        self._inflight[name] = claim
        return claim

    def _release(self, claims: dict[str, list[asyncio.Future[None]]]) -> None:
        for name, claim in claims.items():
            self._release_one(name, claim)

    def _release_one(self, name: str, claim: list[asyncio.Future[None]]) -> None:
        if self._inflight.get(name) is claim:
            del self._inflight[name]
        for waiter in claim:
            if not waiter.done():
                waiter.set_result(None)

    async def _load_history(self, name: str, through_ping: int) -> None:
        """Recent durations, read once per monitor on its first run end after start-up: those
        of the runs ended by `through_ping` or before, the last ping before that end. The
        runs after it go into the history in memory as they come (the first one among them),
        and the read may see them committed: they would count twice."""
        try:
            durations = await self.store.recent_durations(name, stats.HISTORY, through_ping)
        except StoreError:
            return
        current = self.history.get(name)
        if current is not None:  # durations recorded meanwhile come after the stored ones
            self.history[name] = stats.History([*durations, *current])

    async def test_alert(self, channel: str) -> int:
        """Queue a test alert for `channel` through the outbox; returns its outbox id."""
        now = self.clock.now()
        payload = alerts.test_payload(self.config, now)
        outbox_id = self.store.next_id("outbox")
        await self.store.write([sql.insert_outbox(outbox_id, channel, "test-alert", None, "test", payload,
                                                  now.timestamp())])
        self._wake(channel)
        return outbox_id

    # ------------------------------------------------------------ timer

    def _maintenance(self, name: str, now: datetime) -> datetime | None:
        windows = self.windows.get(name)
        return maintenance.maintenance_until(windows, now) if windows else None

    def _deadline(self, name: str) -> datetime | None:
        state = self.states[name]
        until = self._maintenance(name, self.clock.now()) if state.incident is not None else None
        return monitor.next_deadline(self.config.monitors[name], state, until)

    def ack_url(self, incident_id: int) -> str:
        return acklinks.url(self.config.server.base_url, self.ack_secret, incident_id)

    def _schedule(self, name: str, lazy: bool = False) -> datetime | None:
        """Put `name`'s next deadline on the wheel. `lazy` (after a ping): a timer
        already set earlier stays, and when it fires timer.fire() finds the deadline has
        moved and sets it again: one look per period instead of a wheel update per ping."""
        deadline = self._deadline(name)
        self._arm(name, None if deadline is None else deadline.timestamp(), lazy)
        return deadline

    def _arm(self, name: str, when: float | None, lazy: bool) -> None:
        """Put `name`'s deadline `when` (epoch seconds; None: it has none) on the wheel."""
        if when is None:
            if not lazy:
                self.wheel.cancel(name)
            return
        if lazy:
            self.wheel.schedule_before(name, when)
        else:
            self.wheel.schedule(name, when)
        if when < self._sleep_until:
            self._rearm.set()

    # ------------------------------------------------------------ workers

    def _sync_workers(self) -> list[tuple[ChannelWorker, asyncio.Task[None]]]:
        """Channel workers for the config in force (delivery.sync_workers); returns those of
        removed channels, still running, for the caller to finish or stop."""
        return delivery.sync_workers(self.workers, self.config.channels, self._new_worker)

    def _new_worker(self, channel: ChannelConfig) -> ChannelWorker:
        assert self.session is not None
        return ChannelWorker(self.store, channel, sender_for(channel.type), self.session, self.clock)

