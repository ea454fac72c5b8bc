"""Transitions of the monitor state machine: :func:`step` and its handlers.

See :mod:`cronwarden.monitor` for the theory of operation, the states and the
events. Every handler is one transition; an event the state cannot take
raises :class:`IllegalEvent` and leaves the state as it was (``step`` builds
a new state and only returns it on success).
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, Sequence

from . import stats
from .config import MonitorConfig
from .configtypes import frozen_replacer
from .monitor import (
    MAX_OPEN_RUNS, Ack, Alert, AlertKind, Decision, Event, IllegalEvent, Incident, MonitorState, Note,
    OpenRun, Pause, Ping, PingKind, Resolve, Resume, RunInfo, Tick, _forget_after, _iso, _new_state, due_at,
    new_decision, new_open_run, new_run_info,
)
from .units import format_duration


def step(
    cfg: MonitorConfig,
    state: MonitorState,
    event: Event,
    now: datetime,
    *,
    silenced: bool = False,
    history: Sequence[float] = (),
    maintenance_until: datetime | None = None,
) -> Decision:
    """Apply `event` at `now`; pure. Raises IllegalEvent for events it cannot take.

    `silenced`: a dependency is down, so alerts are recorded, not sent.
    `history`: durations of recent runs, oldest first, for the automatic `slow`.
    `maintenance_until`: the monitor is in a maintenance window ending then;
    incidents that open meanwhile are held and announced at its end if still open."""
    if now.tzinfo is None:
        raise IllegalEvent("now must be timezone-aware")
    if type(event) is Ping and state.incident is None and not state.paused:
        routine = routine_ping(cfg, state, event, now, history)
        if routine is not None:
            return routine
    return _by_handlers(cfg, state, event, now, silenced, history, maintenance_until)


def _by_handlers(cfg: MonitorConfig, state: MonitorState, event: Event, now: datetime, silenced: bool,
                 history: Sequence[float], maintenance_until: datetime | None) -> Decision:
    """The step of every event, through the handlers of _Builder."""
    builder = _Builder(cfg, state, now, silenced, history, maintenance_until)
    if isinstance(event, Tick):
        builder.on_tick()
    elif isinstance(event, Ack):
        builder.on_ack(event)
    elif isinstance(event, Resolve):
        builder.on_resolve(event)
    elif isinstance(event, Pause):
        builder.on_pause(event)
    elif isinstance(event, Resume):
        builder.on_resume(event.by)
    elif isinstance(event, Ping):
        builder.state.last_ping = now
        builder.forget_stale_runs()
        if event.kind is PingKind.START:
            builder.on_start(event)
        elif event.kind is PingKind.SUCCESS:
            builder.on_end(event, ok=True)
        elif event.kind is PingKind.FAIL:
            builder.on_end(event, ok=False)
        elif event.kind is not PingKind.LOG:
            raise IllegalEvent(f"unknown ping kind {event.kind!r}")
    else:
        raise IllegalEvent(f"unknown event {event!r}")
    alerts = builder.alerts
    if maintenance_until is not None:
        # Inside a maintenance window only good news goes out; the rest is recorded.
        alerts = [a if a.kind is AlertKind.RECOVERED else replace(a, notify=False) for a in alerts]
    return new_decision(builder.state.freeze(), tuple(alerts), builder.run, tuple(builder.notes))


_FIELDS = tuple(f.name for f in fields(MonitorState))
_values = attrgetter(*_FIELDS)


# The new state of each kind of routine ping, in one frame each (see frozen_replacer).
_started = frozen_replacer(MonitorState, _new_state, ("last_ping", "open_runs"))
_beat = frozen_replacer(MonitorState, _new_state, ("last_ping", "last_success", "last_end", "failures"))
_ended = frozen_replacer(MonitorState, _new_state,
                         ("last_ping", "last_success", "last_end", "failures", "open_runs", "last_duration"))


def routine_change(cfg: MonitorConfig, state: MonitorState, ping: Ping, now: datetime,
                   history: Sequence[float]) -> tuple[MonitorState, RunInfo | None] | None:
    """The step of the most common pings, worked out directly: a start with no run open,
    and a success with no run open (a heartbeat) or one (the end of a run), that raise
    nothing, on a monitor with no incident and no pause (the caller checks those two):
    the new state and the run that ended. None for every other ping, which the handlers
    take. What it gives is equal to what the handlers give (a property test steps random
    pings both ways); the one difference is identity: for a ping that changes nothing (a
    heartbeat at the very instant of the last one) the handlers keep the old state object
    and this makes an equal one, so the daemon writes an unneeded state row. On a busy
    box this lane takes most pings, and the handlers' working copy, builder and checks
    cost a ping ~3x as much. The daemon calls it first itself (Daemon.plan_routine),
    without step()'s arguments that only alerts read."""
    kind = ping.kind
    runs = state.open_runs
    if kind is PingKind.START:
        if runs:
            return None  # a repeated start, or an overlap
        return _started(state, now, (new_open_run(now, ping.rid, False),)), None
    if kind is not PingKind.SUCCESS or (cfg.rules and ping.metadata):
        return None
    exit_status = 0 if ping.exit_status is None else ping.exit_status
    if not runs:  # a heartbeat
        return _beat(state, now, now, now, 0), new_run_info(None, now, None, exit_status, ping.metadata, ping.rid)
    run = runs[0]
    if len(runs) > 1 or (ping.rid is not None and ping.rid != run.rid):
        return None
    if cfg.max_runtime is None and _forget_after(cfg, run) <= now:
        return None  # stale: forgotten before the end is matched
    started = run.started_at
    duration = (now - started).total_seconds()
    limit = _slow_limit(cfg, history)
    if limit is not None and duration > limit:
        return None  # slow
    return (_ended(state, now, now, now, 0, (), duration),
            new_run_info(started, now, duration, exit_status, ping.metadata, ping.rid))


def routine_ping(cfg: MonitorConfig, state: MonitorState, ping: Ping, now: datetime,
                 history: Sequence[float]) -> Decision | None:
    """routine_change() as the Decision step() gives."""
    change = routine_change(cfg, state, ping, now, history)
    return None if change is None else new_decision(change[0], (), change[1], ())


def _slow_limit(cfg: MonitorConfig, history: Sequence[float]) -> float | None:
    """The duration past which a run is slow: `slow_after`, or without it 2 x the p95 of
    recent runs (None with fewer than 10)."""
    return cfg.slow_after if cfg.slow_after is not None else stats.slow_threshold(history)


def _copy_fields() -> Any:
    """_Draft's __init__, generated from MonitorState's fields: it copies them all in one
    statement (``self.a, self.b, ... = _values(state)``); a loop of setattr() calls took
    3x as long, on every step."""
    namespace: dict[str, Any] = {"_values": _values}
    exec(f"def __init__(self, state):\n    self._orig = state\n"
         f"    {', '.join('self.' + name for name in _FIELDS)}, = _values(state)\n", namespace)
    return namespace["__init__"]


class _Draft:
    """A working copy of a MonitorState that a step changes field by field, frozen
    once at the end (a ``dataclasses.replace`` per change cost more than the rest of
    a ping's step). It has the same attributes, so the helpers that read a state
    (``due_at``, ``next_deadline``) read it too."""

    __slots__ = ("_orig",) + _FIELDS

    __init__ = _copy_fields()

    def freeze(self) -> MonitorState:
        """The new state; the original object itself when nothing changed."""
        values = _values(self)
        return self._orig if values == _values(self._orig) else _new_state(*values)


class _Builder:
    """Accumulates one step's changes; each handler is one transition."""

    def __init__(self, cfg: MonitorConfig, state: MonitorState, now: datetime, silenced: bool,
                 history: Sequence[float], maintenance_until: datetime | None) -> None:
        self.cfg, self.now, self.silenced, self.history = cfg, now, silenced, history
        self.state: Any = _Draft(state)  # read like a MonitorState; changed through change()
        self.maintenance_until = maintenance_until
        self.alerts: list[Alert] = []
        self.notes: list[Note] = []
        self.run: RunInfo | None = None

    def change(self, **fields: Any) -> None:
        state = self.state
        for name, value in fields.items():
            setattr(state, name, value)

    # -- conditions

    def raise_condition(self, kind: AlertKind, summary: str, run: RunInfo | None = None,
                        expected_at: datetime | None = None) -> None:
        """Open an incident with `kind`, or record it in the one already open.
        A paused monitor raises nothing."""
        st = self.state
        if st.paused:
            return
        if st.incident is not None:
            self.alerts.append(Alert(kind, self.now, summary, st.incident.seq, notify=False,
                                     run=run, expected_at=expected_at))
            return
        seq = st.incident_count + 1
        held = self.maintenance_until is not None and not self.silenced
        notify = not self.silenced and not held
        incident = Incident(seq, kind, self.now, notify, self.now if notify else None, held=held)
        self.change(incident=incident, incident_count=seq)
        self.alerts.append(Alert(kind, self.now, summary, seq, notify=notify, opens=True,
                                 run=run, expected_at=expected_at))

    def recover(self, run: RunInfo) -> None:
        incident = self.state.incident
        if incident is None:
            return
        self.change(incident=None, successes=0)
        self.alerts.append(Alert(
            AlertKind.RECOVERED, self.now,
            f"{self.cfg.name} recovered: succeeded after {incident.kind.value} "
            f"(down for {format_duration((self.now - incident.opened_at).total_seconds())})",
            incident.seq, notify=incident.notified and not self.silenced, closes=True, run=run,
            escalated=incident.escalated,
        ))

    # -- pings

    def forget_stale_runs(self) -> None:
        if self.cfg.max_runtime is None and self.state.open_runs:
            keep = tuple(r for r in self.state.open_runs if _forget_after(self.cfg, r) > self.now)
            if len(keep) != len(self.state.open_runs):
                self.change(open_runs=keep)

    def on_start(self, ping: Ping) -> None:
        runs = self.state.open_runs
        if ping.rid is not None and any(r.rid == ping.rid for r in runs):
            return  # a repeated start of the same run
        live = [r for r in runs if not r.hung]
        runs = (runs + (OpenRun(self.now, ping.rid),))[-MAX_OPEN_RUNS:]
        self.change(open_runs=runs)
        if live:
            earlier = live[-1]
            self.raise_condition(
                AlertKind.OVERLAP,
                f"{self.cfg.name} started again while the run started at {_iso(earlier.started_at)} "
                f"is still going ({format_duration((self.now - earlier.started_at).total_seconds())} so far)",
                run=RunInfo(earlier.started_at, None, None, None, None, earlier.rid),
            )

    def take_run(self, rid: str | None) -> OpenRun | None:
        """Remove and return the run this end ping closes: by rid, else the latest."""
        runs = self.state.open_runs
        if not runs:
            return None
        if rid is not None:
            match = next((r for r in reversed(runs) if r.rid == rid), None)
            if match is None:
                return None
            rest = tuple(r for r in runs if r is not match)
        else:
            match = runs[-1]
            # Hung runs older than the one that just ended are evidently gone.
            rest = tuple(r for r in runs[:-1] if not r.hung)
        self.change(open_runs=rest)
        return match

    def on_end(self, ping: Ping, ok: bool) -> None:
        cfg, now = self.cfg, self.now
        started = self.take_run(ping.rid)
        duration = (now - started.started_at).total_seconds() if started else None
        exit_status = ping.exit_status if ping.exit_status is not None else (0 if ok else None)
        run = new_run_info(started.started_at if started else None, now, duration, exit_status,
                           ping.metadata, ping.rid)
        self.run = run
        self.change(last_end=now,
                             last_duration=duration if duration is not None else self.state.last_duration)
        if not ok:
            failures = self.state.failures + 1
            self.change(failures=failures, successes=0)
            if failures >= cfg.alert_after or self.state.incident is not None:
                status = f"exit status {exit_status}" if exit_status is not None else "a fail ping"
                streak = f" ({failures} failures in a row)" if failures > 1 else ""
                self.raise_condition(AlertKind.FAILED, f"{cfg.name} failed with {status}{streak}", run)
            return
        self.change(failures=0, last_success=now)
        self.check_slow(run)
        matched = [rule.text for rule in cfg.rules if ping.metadata and rule.matches(ping.metadata)]
        if matched:
            self.change(successes=0)
            self.raise_condition(AlertKind.RULE,
                                 f"{cfg.name} succeeded but matched rule {matched[0]!r}", run)
            return
        if self.state.incident is not None:
            successes = self.state.successes + 1
            self.change(successes=successes)
            if successes < cfg.recover_after:
                return  # a flapping job must prove itself before "recovered"
        self.recover(run)

    def check_slow(self, run: RunInfo) -> None:
        """`slow_after`, or without it 2 x the p95 of recent runs (10 runs at least)."""
        cfg, duration = self.cfg, run.duration_s
        if duration is None:
            return
        limit = _slow_limit(cfg, self.history)
        if limit is None or duration <= limit:
            return
        if cfg.slow_after is not None:
            why = f"slow_after {format_duration(cfg.slow_after)}"
        else:
            why = f"twice the p95 of the last {min(len(self.history), stats.HISTORY)} runs"
        incident = self.state.incident
        self.alerts.append(Alert(
            AlertKind.SLOW, self.now,
            f"{cfg.name} took {format_duration(duration)}, longer than {why} ({format_duration(limit)})",
            incident.seq if incident else None,
            notify=not self.silenced and incident is None and self.maintenance_until is None
            and not self.state.paused, run=run,
        ))

    # -- time

    def check_silence(self) -> None:
        """max_silence: a running job that has said nothing for that long is hung."""
        cfg, now, st = self.cfg, self.now, self.state
        live = [r for r in st.open_runs if not r.hung]
        if cfg.max_silence is None or not live:
            return
        heard = max(st.last_ping or live[-1].started_at, live[-1].started_at)
        if heard + timedelta(seconds=cfg.max_silence) > now:
            return
        runs = tuple(replace(r, hung=True) if r in live else r for r in st.open_runs)
        self.change(open_runs=runs)
        run = live[-1]
        self.raise_condition(
            AlertKind.HUNG,
            f"{cfg.name} is running but has been silent for {format_duration((now - heard).total_seconds())}, "
            f"past max_silence {format_duration(cfg.max_silence)}",
            RunInfo(run.started_at, None, (now - run.started_at).total_seconds(), None, None, run.rid),
            expected_at=heard + timedelta(seconds=cfg.max_silence),
        )

    def on_tick(self) -> None:
        cfg, now = self.cfg, self.now
        if self.state.paused:
            if self.state.paused_until is not None and self.state.paused_until <= now:
                self.on_resume("timer")  # the pause expired on its own
            return
        self.forget_stale_runs()
        self.release_held()
        if cfg.max_runtime is not None:
            limit = timedelta(seconds=cfg.max_runtime)
            for run in self.state.open_runs:
                if not run.hung and run.started_at + limit <= now:
                    runs = tuple(replace(r, hung=True) if r is run else r for r in self.state.open_runs)
                    self.change(open_runs=runs)
                    self.raise_condition(
                        AlertKind.HUNG,
                        f"{cfg.name} has been running for "
                        f"{format_duration((now - run.started_at).total_seconds())}, "
                        f"past max_runtime {format_duration(cfg.max_runtime)}",
                        RunInfo(run.started_at, None, (now - run.started_at).total_seconds(),
                                None, None, run.rid),
                        expected_at=run.started_at + limit,
                    )
        self.check_silence()
        self.check_missed_during_incident()
        if self.state.incident is None:
            due = due_at(cfg, self.state)
            if due + timedelta(seconds=cfg.grace) <= now:
                last = self.state.last_success
                since = f"last success {_iso(last)}" if last else "never pinged"
                self.raise_condition(
                    AlertKind.MISSED,
                    f"{cfg.name} did not run: expected by {_iso(due)} ({since})",
                    expected_at=due,
                )
        self.check_escalation()
        incident = self.state.incident
        if incident is not None and incident.notified and not incident.acked and cfg.repeat > 0:
            last = incident.last_notified_at or incident.opened_at
            if last + timedelta(seconds=cfg.repeat) <= now and not any(a.opens for a in self.alerts):
                self.change(incident=replace(incident, last_notified_at=now))
                self.alerts.append(Alert(
                    incident.kind, now,
                    f"Still down: {cfg.name} {incident.kind.value} since {_iso(incident.opened_at)}",
                    incident.seq, notify=not self.silenced, reminder=True, escalated=incident.escalated,
                ))

    def check_missed_during_incident(self) -> None:
        """The job stopped running while another incident (failed, rule, hung, overlap)
        is open: recorded once in that incident, and sent if the incident was
        acknowledged (the people who silenced it must hear that the job is gone too)."""
        cfg, now = self.cfg, self.now
        incident = self.state.incident
        if incident is None or incident.kind is AlertKind.MISSED or incident.missed_noted:
            return
        due = due_at(cfg, self.state)
        if due + timedelta(seconds=cfg.grace) > now:
            return
        self.change(incident=replace(incident, missed_noted=True))
        last = self.state.last_success
        since = f"last success {_iso(last)}" if last else "never succeeded"
        self.alerts.append(Alert(
            AlertKind.MISSED, now,
            f"{cfg.name} also did not run: expected by {_iso(due)} ({since}) during its open "
            f"{incident.kind.value} incident",
            incident.seq, notify=incident.notified and incident.acked and not self.silenced, expected_at=due,
        ))

    def release_held(self) -> None:
        """An incident nobody was told about is announced once that is allowed: it opened
        during maintenance and the window is over, or it opened while a dependency was
        down (silenced) and the dependency is up again."""
        incident = self.state.incident
        if incident is None or incident.notified or self.maintenance_until is not None or self.silenced:
            return
        notify = not self.silenced
        self.change(incident=replace(
            incident, held=False, notified=notify, last_notified_at=self.now if notify else None))
        why = "after its maintenance window" if incident.held else "now that what it depends on is up"
        self.alerts.append(Alert(
            incident.kind, self.now,
            f"{self.cfg.name} is still {incident.kind.value} {why} (since {_iso(incident.opened_at)})",
            incident.seq, notify=notify, expected_at=incident.opened_at,
        ))

    # -- people

    def note(self, kind: str, **detail: object) -> None:
        incident = self.state.incident
        self.notes.append(Note(kind, incident.seq if incident else None,
                               {k: v for k, v in detail.items() if v is not None}))

    def on_ack(self, ack: Ack) -> None:
        incident = self.state.incident
        if incident is None:
            raise IllegalEvent(f"{self.cfg.name} has no open incident to acknowledge")
        if incident.acked:
            raise IllegalEvent(f"incident of {self.cfg.name} is already acknowledged")
        self.change(incident=replace(incident, acked=True))
        self.note("acknowledged", by=ack.by, via=ack.via, note=ack.note)

    def on_resolve(self, resolve: Resolve) -> None:
        incident = self.state.incident
        if incident is None:
            raise IllegalEvent(f"{self.cfg.name} has no open incident to resolve")
        self.note("resolved", by=resolve.by, note=resolve.note)
        self.change(incident=None, successes=0, failures=0, clock_from=self.now)
        self.alerts.append(Alert(
            AlertKind.RECOVERED, self.now,
            f"{self.cfg.name} incident resolved by hand by {resolve.by}"
            + (f": {resolve.note}" if resolve.note else ""),
            incident.seq, notify=incident.notified, closes=True, escalated=incident.escalated,
        ))

    def on_pause(self, pause: Pause) -> None:
        if pause.until is not None and pause.until <= self.now:
            raise IllegalEvent("a pause must end in the future")
        self.change(paused=True, paused_until=pause.until, pause_reason=pause.reason)
        self.note("paused", by=pause.by, until=_iso(pause.until), reason=pause.reason)

    def on_resume(self, by: str) -> None:
        if not self.state.paused:
            raise IllegalEvent(f"{self.cfg.name} is not paused")
        # The missed clock restarts: a job paused for a week is not overdue at once.
        self.change(paused=False, paused_until=None, pause_reason=None,
                             clock_from=self.now)
        self.note("resumed", by=by)

    def check_escalation(self) -> None:
        """Send each `escalate` step whose time has come while the incident is unacknowledged
        (not inside a maintenance window: the step waits for its end)."""
        cfg, now = self.cfg, self.now
        if self.maintenance_until is not None:
            return
        incident = self.state.incident
        while (incident is not None and incident.notified and not incident.acked
               and incident.escalated < len(cfg.escalate)
               and incident.opened_at + timedelta(seconds=cfg.escalate[incident.escalated].after) <= now):
            step_no = incident.escalated + 1
            incident = replace(incident, escalated=step_no)
            self.change(incident=incident)
            self.alerts.append(Alert(
                incident.kind, now,
                f"Escalated: {cfg.name} {incident.kind.value} unacknowledged for "
                f"{format_duration((now - incident.opened_at).total_seconds())}",
                incident.seq, notify=not self.silenced, escalation=step_no,
            ))


