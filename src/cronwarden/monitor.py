"""The monitor state machine: pure, no I/O, no clock reads.

Theory of operation
-------------------
Each monitor is a :class:`MonitorState` (frozen) plus its :class:`MonitorConfig`.
Everything that happens to it is an event: a ping (success, start, fail, log)
or a :class:`Tick`, which the daemon sends when a deadline from
:func:`next_deadline` has passed. :func:`step` takes the state, the event and
the current time and returns a :class:`Decision`: the new state, the alerts
to record (and maybe send) and the run that just ended, if any. The daemon
writes all of it in one transaction and carries the alerts out.

Deadlines are derived from the state, never stored apart from it, so a
restart or a reload recomputes them and a stale timer is harmless: a Tick
that arrives early changes nothing (the "re-check when it fires" rule).

Conditions and incidents:

1. ``missed``: no run ended (success or failure) by the due time plus grace.
   The due time counts from the last ended run, or from when the monitor was
   first seen (``created_at``) if it never pinged. A failure counts as "it
   ran": failures are what ``failed`` and ``alert_after`` are for.
2. ``failed``: ``alert_after`` failures in a row.
3. ``hung``: a run open for longer than ``max_runtime``.
4. ``overlap``: a start while an earlier, not yet hung, run is still open.
5. ``rule``: a success whose metadata matches one of the monitor's rules.
6. ``slow``: a run longer than ``slow_after`` (a warning; no incident).
7. ``recovered``: a clean success while an incident is open; closes it.

The first condition opens an incident and is sent. While the incident is
open, further conditions are recorded in it but not sent (one page per
outage); only reminders every ``repeat`` and the final ``recovered`` go out.
When ``silenced`` is true (a dependency is down) alerts are recorded and not
sent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Sequence

from . import schedule, stats
from .config import MonitorConfig
from .units import format_duration

MAX_OPEN_RUNS = 8


class Status(StrEnum):
    NEW = "new"
    UP = "up"
    RUNNING = "running"
    LATE = "late"
    DOWN = "down"
    PAUSED = "paused"


class AlertKind(StrEnum):
    MISSED = "missed"
    FAILED = "failed"
    HUNG = "hung"
    OVERLAP = "overlap"
    RULE = "rule"
    SLOW = "slow"
    RECOVERED = "recovered"


class PingKind(StrEnum):
    SUCCESS = "success"
    START = "start"
    FAIL = "fail"
    LOG = "log"


class IllegalEvent(ValueError):
    """An event the state machine cannot accept; the state is left unchanged."""


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Ping:
    kind: PingKind
    rid: str | None = None
    exit_status: int | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """A deadline passed: re-evaluate time-based conditions."""


Event = Ping | Tick

# ---------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class OpenRun:
    started_at: datetime
    rid: str | None = None
    hung: bool = False


@dataclass(frozen=True, slots=True)
class Incident:
    seq: int  # per-monitor number; the store maps it to a global id
    kind: AlertKind
    opened_at: datetime
    notified: bool  # False when it opened silenced: then recovery is not sent either
    last_notified_at: datetime | None = None
    acked: bool = False
    escalated: int = 0  # escalation steps sent so far


@dataclass(frozen=True, slots=True)
class MonitorState:
    created_at: datetime
    last_ping: datetime | None = None
    last_success: datetime | None = None
    last_end: datetime | None = None  # last success or failure: the "missed" clock
    failures: int = 0  # consecutive
    successes: int = 0  # consecutive clean successes while an incident is open (recover_after)
    open_runs: tuple[OpenRun, ...] = ()
    incident: Incident | None = None
    incident_count: int = 0
    last_duration: float | None = None

    def to_json(self) -> dict[str, Any]:
        def ts(value: datetime | None) -> float | None:
            return value.timestamp() if value else None

        inc = self.incident
        return {
            "created_at": ts(self.created_at),
            "last_ping": ts(self.last_ping),
            "last_success": ts(self.last_success),
            "last_end": ts(self.last_end),
            "failures": self.failures,
            "successes": self.successes,
            "open_runs": [[ts(r.started_at), r.rid, r.hung] for r in self.open_runs],
            "incident": None if inc is None else [inc.seq, inc.kind.value, ts(inc.opened_at), inc.notified,
                                                  ts(inc.last_notified_at), inc.acked, inc.escalated],
            "incident_count": self.incident_count,
            "last_duration": self.last_duration,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "MonitorState":
        def dt(value: float | None) -> datetime | None:
            return None if value is None else datetime.fromtimestamp(value, timezone.utc)

        inc = data.get("incident")
        return cls(
            created_at=dt(data["created_at"]),  # type: ignore[arg-type]
            last_ping=dt(data.get("last_ping")),
            last_success=dt(data.get("last_success")),
            last_end=dt(data.get("last_end")),
            failures=int(data.get("failures", 0)),
            successes=int(data.get("successes", 0)),
            open_runs=tuple(OpenRun(dt(s), rid, bool(h)) for s, rid, h in data.get("open_runs", ())),  # type: ignore[arg-type]
            incident=None if inc is None else Incident(
                inc[0], AlertKind(inc[1]), dt(inc[2]), bool(inc[3]), dt(inc[4]), bool(inc[5]),  # type: ignore[arg-type]
                int(inc[6]) if len(inc) > 6 else 0,
            ),
            incident_count=int(data.get("incident_count", 0)),
            last_duration=data.get("last_duration"),
        )


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class RunInfo:
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    exit_status: int | None
    metadata: dict[str, Any] | None
    rid: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "exit_status": self.exit_status,
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    at: datetime
    summary: str
    incident_seq: int | None
    notify: bool
    reminder: bool = False
    opens: bool = False
    closes: bool = False
    run: RunInfo | None = None
    expected_at: datetime | None = None
    escalation: int = 0  # n > 0: this is escalation step n, for that step's channels only
    escalated: int = 0  # steps sent before: reminders and recovery also go to their channels


@dataclass(frozen=True, slots=True)
class Decision:
    state: MonitorState
    alerts: tuple[Alert, ...] = ()
    run: RunInfo | None = None  # a run that ended with this event


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def new_state(now: datetime) -> MonitorState:
    return MonitorState(created_at=now)


# ---------------------------------------------------------------- deadlines


def due_at(cfg: MonitorConfig, state: MonitorState) -> datetime:
    """When the next run should have ended (before grace)."""
    base = state.last_end or state.created_at
    if cfg.every is not None:
        return schedule.next_every(base, cfg.every)
    assert cfg.cron is not None
    return schedule.next_cron_fire(cfg.cron, cfg.tz, base)


def missed_deadline(cfg: MonitorConfig, state: MonitorState) -> datetime:
    return due_at(cfg, state) + timedelta(seconds=cfg.grace)


def _forget_after(cfg: MonitorConfig, run: OpenRun) -> datetime:
    """When an open run with no end is dropped silently (no max_runtime set)."""
    if cfg.every is not None:
        period = cfg.every
    else:
        assert cfg.cron is not None
        fire = schedule.next_cron_fire(cfg.cron, cfg.tz, run.started_at)
        period = max(60.0, (fire - run.started_at).total_seconds())
    return run.started_at + timedelta(seconds=2 * period + cfg.grace)


def next_deadline(cfg: MonitorConfig, state: MonitorState) -> datetime | None:
    """The earliest moment a Tick could change this monitor; None when no Tick can
    (an open incident with no reminder, escalation or run left to watch)."""
    candidates: list[datetime] = []
    if state.incident is None:
        candidates.append(missed_deadline(cfg, state))
    elif state.incident.notified and not state.incident.acked:
        incident = state.incident
        if cfg.repeat > 0:
            last = incident.last_notified_at or incident.opened_at
            candidates.append(last + timedelta(seconds=cfg.repeat))
        if incident.escalated < len(cfg.escalate):
            candidates.append(incident.opened_at + timedelta(seconds=cfg.escalate[incident.escalated].after))
    live = [r for r in state.open_runs if not r.hung]
    if cfg.max_silence is not None and live:
        heard = max(state.last_ping or live[-1].started_at, live[-1].started_at)
        candidates.append(heard + timedelta(seconds=cfg.max_silence))
    for run in state.open_runs:
        if cfg.max_runtime is not None:
            if not run.hung:
                candidates.append(run.started_at + timedelta(seconds=cfg.max_runtime))
        else:
            candidates.append(_forget_after(cfg, run))
    return min(candidates) if candidates else None


def effective_status(cfg: MonitorConfig, state: MonitorState, now: datetime) -> Status:
    if state.incident is not None:
        return Status.DOWN
    if any(not r.hung for r in state.open_runs):
        return Status.RUNNING
    due = due_at(cfg, state)
    if now > due:
        return Status.LATE
    return Status.NEW if state.last_ping is None else Status.UP


# ---------------------------------------------------------------- transitions


def step(
    cfg: MonitorConfig,
    state: MonitorState,
    event: Event,
    now: datetime,
    *,
    silenced: bool = False,
    history: Sequence[float] = (),
) -> Decision:
    """Apply `event` at `now`; pure. Raises IllegalEvent for events it cannot take.

    `silenced`: a dependency is down, so alerts are recorded, not sent.
    `history`: durations of recent runs, oldest first, for the automatic `slow`."""
    if now.tzinfo is None:
        raise IllegalEvent("now must be timezone-aware")
    builder = _Builder(cfg, state, now, silenced, history)
    if isinstance(event, Tick):
        builder.on_tick()
    elif isinstance(event, Ping):
        builder.state = replace(builder.state, last_ping=now)
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
    return Decision(builder.state, tuple(builder.alerts), builder.run)


class _Builder:
    """Accumulates one step's changes; each handler is one transition."""

    def __init__(self, cfg: MonitorConfig, state: MonitorState, now: datetime, silenced: bool,
                 history: Sequence[float]) -> None:
        self.cfg, self.state, self.now, self.silenced, self.history = cfg, state, now, silenced, history
        self.alerts: list[Alert] = []
        self.run: RunInfo | None = None

    # -- conditions

    def raise_condition(self, kind: AlertKind, summary: str, run: RunInfo | None = None,
                        expected_at: datetime | None = None) -> None:
        """Open an incident with `kind`, or record it in the one already open."""
        st = self.state
        if st.incident is not None:
            self.alerts.append(Alert(kind, self.now, summary, st.incident.seq, notify=False,
                                     run=run, expected_at=expected_at))
            return
        seq = st.incident_count + 1
        notify = not self.silenced
        incident = Incident(seq, kind, self.now, notify, self.now if notify else None)
        self.state = replace(st, incident=incident, incident_count=seq)
        self.alerts.append(Alert(kind, self.now, summary, seq, notify=notify, opens=True,
                                 run=run, expected_at=expected_at))

    def recover(self, run: RunInfo) -> None:
        incident = self.state.incident
        if incident is None:
            return
        self.state = replace(self.state, incident=None, successes=0)
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
                self.state = replace(self.state, open_runs=keep)

    def on_start(self, ping: Ping) -> None:
        runs = self.state.open_runs
        if ping.rid is not None and any(r.rid == ping.rid for r in runs):
            return  # a repeated start of the same run
        live = [r for r in runs if not r.hung]
        runs = (runs + (OpenRun(self.now, ping.rid),))[-MAX_OPEN_RUNS:]
        self.state = replace(self.state, open_runs=runs)
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
        self.state = replace(self.state, open_runs=rest)
        return match

    def on_end(self, ping: Ping, ok: bool) -> None:
        cfg, now = self.cfg, self.now
        started = self.take_run(ping.rid)
        duration = (now - started.started_at).total_seconds() if started else None
        exit_status = ping.exit_status if ping.exit_status is not None else (0 if ok else None)
        run = RunInfo(started.started_at if started else None, now, duration, exit_status,
                      ping.metadata, ping.rid)
        self.run = run
        self.state = replace(self.state, last_end=now,
                             last_duration=duration if duration is not None else self.state.last_duration)
        if not ok:
            failures = self.state.failures + 1
            self.state = replace(self.state, failures=failures, successes=0)
            if failures >= cfg.alert_after or self.state.incident is not None:
                status = f"exit status {exit_status}" if exit_status is not None else "a fail ping"
                streak = f" ({failures} failures in a row)" if failures > 1 else ""
                self.raise_condition(AlertKind.FAILED, f"{cfg.name} failed with {status}{streak}", run)
            return
        self.state = replace(self.state, failures=0, last_success=now)
        self.check_slow(run)
        matched = [rule.text for rule in cfg.rules if ping.metadata and rule.matches(ping.metadata)]
        if matched:
            self.state = replace(self.state, successes=0)
            self.raise_condition(AlertKind.RULE,
                                 f"{cfg.name} succeeded but matched rule {matched[0]!r}", run)
            return
        if self.state.incident is not None:
            successes = self.state.successes + 1
            self.state = replace(self.state, successes=successes)
            if successes < cfg.recover_after:
                return  # a flapping job must prove itself before "recovered"
        self.recover(run)

    def check_slow(self, run: RunInfo) -> None:
        """`slow_after`, or without it 2 x the p95 of recent runs (10 runs at least)."""
        cfg, duration = self.cfg, run.duration_s
        if duration is None:
            return
        if cfg.slow_after is not None:
            limit: float | None = cfg.slow_after
            why = f"slow_after {format_duration(cfg.slow_after)}"
        else:
            limit = stats.slow_threshold(self.history)
            why = f"twice the p95 of the last {min(len(self.history), stats.HISTORY)} runs"
        if limit is None or duration <= limit:
            return
        incident = self.state.incident
        self.alerts.append(Alert(
            AlertKind.SLOW, self.now,
            f"{cfg.name} took {format_duration(duration)}, longer than {why} ({format_duration(limit)})",
            incident.seq if incident else None,
            notify=not self.silenced and incident is None, run=run,
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
        self.state = replace(st, open_runs=runs)
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
        self.forget_stale_runs()
        if cfg.max_runtime is not None:
            limit = timedelta(seconds=cfg.max_runtime)
            for run in self.state.open_runs:
                if not run.hung and run.started_at + limit <= now:
                    runs = tuple(replace(r, hung=True) if r is run else r for r in self.state.open_runs)
                    self.state = replace(self.state, open_runs=runs)
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
                self.state = replace(self.state, incident=replace(incident, last_notified_at=now))
                self.alerts.append(Alert(
                    incident.kind, now,
                    f"Still down: {cfg.name} {incident.kind.value} since {_iso(incident.opened_at)}",
                    incident.seq, notify=not self.silenced, reminder=True, escalated=incident.escalated,
                ))

    def check_escalation(self) -> None:
        """Send each `escalate` step whose time has come while the incident is unacknowledged."""
        cfg, now = self.cfg, self.now
        incident = self.state.incident
        while (incident is not None and incident.notified and not incident.acked
               and incident.escalated < len(cfg.escalate)
               and incident.opened_at + timedelta(seconds=cfg.escalate[incident.escalated].after) <= now):
            step_no = incident.escalated + 1
            incident = replace(incident, escalated=step_no)
            self.state = replace(self.state, incident=incident)
            self.alerts.append(Alert(
                incident.kind, now,
                f"Escalated: {cfg.name} {incident.kind.value} unacknowledged for "
                f"{format_duration((now - incident.opened_at).total_seconds())}",
                incident.seq, notify=not self.silenced, escalation=step_no,
            ))


__all__ = [
    "Alert", "AlertKind", "Decision", "Event", "IllegalEvent", "Incident", "MonitorState", "OpenRun",
    "Ping", "PingKind", "RunInfo", "Status", "Tick", "due_at", "effective_status", "missed_deadline",
    "new_state", "next_deadline", "step",
]
