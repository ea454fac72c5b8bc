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

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from . import schedule
from .config import MonitorConfig
from .configtypes import frozen_builder

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


@dataclass(frozen=True, slots=True)
class Ack:
    """Someone acknowledged the open incident: reminders and escalation stop."""

    by: str
    via: str  # "cli", "api", "link", "dashboard"
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Resolve:
    """Someone closed the open incident by hand."""

    by: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    until: datetime | None  # None: until resumed
    reason: str | None = None
    by: str = "cli"


@dataclass(frozen=True, slots=True)
class Resume:
    by: str = "cli"


Event = Ping | Tick | Ack | Resolve | Pause | Resume

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
    held: bool = False  # opened inside a maintenance window: announced when it ends, if still open
    missed_noted: bool = False  # the job also stopped running during this incident (recorded once)


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
    paused: bool = False
    paused_until: datetime | None = None
    pause_reason: str | None = None
    clock_from: datetime | None = None  # resume / manual resolve restart the "missed" clock here

    def to_json(self, now: datetime | None = None, now_ts: float = 0.0) -> dict[str, Any]:
        """The stored form. Fields at their defaults (none, zero, false, empty) are left
        out: most monitors' states are mostly defaults, and a row is written per ping
        (from_json reads a missing key as its default, and rows written with every key).
        `now_ts`: ``now.timestamp()``, which the caller has worked out already (an aware
        datetime's timestamp() costs as much as building the rest of the dict); used for
        the instants that are `now` itself, as a ping's are."""
        # Written out field by field, not looped over (key, value) pairs: this runs on
        # every ping, and a ping sets last_ping, last_success and last_end to one instant.
        inc = self.incident
        data: dict[str, Any] = {"created_at": self.created_at.timestamp()}
        last_ping, last_success, last_end = self.last_ping, self.last_success, self.last_end
        if last_ping is not None:
            data["last_ping"] = ping_ts = now_ts if last_ping is now else last_ping.timestamp()
        if last_success is not None:
            data["last_success"] = success_ts = ping_ts if last_success is last_ping else last_success.timestamp()
        if last_end is not None:
            data["last_end"] = (ping_ts if last_end is last_ping else success_ts if last_end is last_success
                                else last_end.timestamp())
        if self.paused_until is not None:
            data["paused_until"] = self.paused_until.timestamp()
        if self.clock_from is not None:
            data["clock_from"] = self.clock_from.timestamp()
        if self.failures:
            data["failures"] = self.failures
        if self.successes:
            data["successes"] = self.successes
        if self.incident_count:
            data["incident_count"] = self.incident_count
        if self.open_runs:
            data["open_runs"] = [[now_ts if r.started_at is now and now is not None else r.started_at.timestamp(),
                                  r.rid, r.hung] for r in self.open_runs]
        if inc is not None:
            data["incident"] = [inc.seq, inc.kind.value, inc.opened_at.timestamp(), inc.notified,
                                inc.last_notified_at.timestamp() if inc.last_notified_at else None, inc.acked,
                                inc.escalated, inc.held, inc.missed_noted]
        if self.last_duration is not None:
            data["last_duration"] = self.last_duration
        if self.paused:
            data["paused"] = True
        if self.pause_reason is not None:
            data["pause_reason"] = self.pause_reason
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "MonitorState":
        # Start-up decodes one of these per distinct stored text (100,000 at worst, each
        # different on a box that has been running): no closure, one dict lookup per key,
        # no conversion of null values, one datetime for the instants a ping sets alike
        # (a success sets last_ping, last_success and last_end to the same instant), no
        # look-up of the keys most states leave out when none is there, and the object
        # built by frozen_builder (see configtypes).
        utc = timezone.utc
        fromts = datetime.fromtimestamp
        get = data.get
        created_at = data["created_at"]
        created_at = None if created_at is None else fromts(created_at, utc)
        end_ts = get("last_end")
        last_end = None if end_ts is None else fromts(end_ts, utc)
        success_ts = get("last_success")
        if success_ts == end_ts:
            last_success = last_end
        else:
            last_success = None if success_ts is None else fromts(success_ts, utc)
        ping_ts = get("last_ping")
        if ping_ts == end_ts:
            last_ping = last_end
        elif ping_ts == success_ts:
            last_ping = last_success
        else:
            last_ping = None if ping_ts is None else fromts(ping_ts, utc)
        if _RARE_KEYS.isdisjoint(data):  # most states: the rest at their defaults
            return _new_state(created_at, last_ping, last_success, last_end, 0, 0, (), None, 0,  # type: ignore[no-any-return]
                              get("last_duration"), False, None, None, None)
        runs = get("open_runs", ())
        open_runs = tuple(OpenRun(None if s is None else fromts(s, utc), rid, bool(h))  # type: ignore[arg-type]
                          for s, rid, h in runs) if runs else ()
        inc = get("incident")
        if inc is not None:
            n = len(inc)
            inc = Incident(
                inc[0], AlertKind(inc[1]), None if inc[2] is None else fromts(inc[2], utc),  # type: ignore[arg-type]
                bool(inc[3]), None if inc[4] is None else fromts(inc[4], utc), bool(inc[5]),
                int(inc[6]) if n > 6 else 0, bool(inc[7]) if n > 7 else False, bool(inc[8]) if n > 8 else False,
            )
        paused_until = get("paused_until")
        if paused_until is not None:
            paused_until = fromts(paused_until, utc)
        clock_from = get("clock_from")
        if clock_from is not None:
            clock_from = fromts(clock_from, utc)
        return _new_state(  # type: ignore[no-any-return]
            created_at,
            last_ping,
            last_success,
            last_end,
            int(get("failures", 0)),
            int(get("successes", 0)),
            open_runs,
            inc,
            int(get("incident_count", 0)),
            get("last_duration"),
            bool(get("paused", False)),
            paused_until,
            get("pause_reason"),
            clock_from,
        )


# MonitorState(...) without the frozen __init__'s cost (half of decoding a stored state):
# from_json and the end of every step (transitions) build states with it.
_new_state = frozen_builder(MonitorState)

# Keys that a state without counts, open runs, incident or pause leaves out (to_json).
_RARE_KEYS = frozenset(("failures", "successes", "open_runs", "incident", "incident_count", "paused",
                        "paused_until", "pause_reason", "clock_from"))


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
class Note:
    """A timeline entry that is not an alert: acknowledged, paused, resumed, ..."""

    kind: str
    incident_seq: int | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Decision:
    state: MonitorState
    alerts: tuple[Alert, ...] = ()
    run: RunInfo | None = None  # a run that ended with this event
    notes: tuple[Note, ...] = ()


# The same for what a step builds on every ping (see frozen_builder: 2-3x faster).
new_decision = frozen_builder(Decision)
new_run_info = frozen_builder(RunInfo)
new_ping = frozen_builder(Ping)
new_open_run = frozen_builder(OpenRun)
# The events of pings with no rid and no metadata (nearly all), made once: an event is
# immutable, and every ping built one (~0.5 us) before its step. Keyed by the kind's text.
_PLAIN_PINGS = {(kind._value_, code): new_ping(kind, None, code, None)
                for kind in PingKind for code in (None, *range(256))}


def ping_event(kind: PingKind, rid: str | None, exit_status: int | None, metadata: dict[str, Any] | None) -> Ping:
    """The event of a ping: new_ping(...), or for a plain one the same event made once."""
    if rid is None and metadata is None:
        event = _PLAIN_PINGS.get((kind._value_, exit_status))
        if event is not None:
            return event
    return new_ping(kind, rid, exit_status, metadata)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def new_state(now: datetime) -> MonitorState:
    return MonitorState(created_at=now)


# ---------------------------------------------------------------- deadlines


def due_at(cfg: MonitorConfig, state: MonitorState) -> datetime:
    """When the next run should have ended (before grace)."""
    base = state.last_end or state.created_at
    if state.clock_from is not None and state.clock_from > base:
        base = state.clock_from
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


def next_deadline(cfg: MonitorConfig, state: MonitorState,
                  maintenance_until: datetime | None = None) -> datetime | None:
    """The earliest moment a Tick could change this monitor; None when no Tick can
    (an open incident with no reminder, escalation or run left to watch).
    `maintenance_until`: the end of the maintenance window the monitor is in."""
    if state.paused:
        return state.paused_until
    incident = state.incident
    if incident is None and not state.open_runs:
        return missed_deadline(cfg, state)  # no incident, no run open (all of them at start-up)
    candidates: list[datetime] = []
    if incident is not None and incident.held:
        candidates.append(maintenance_until or incident.opened_at)
    if incident is None or (incident.kind is not AlertKind.MISSED and not incident.missed_noted):
        candidates.append(missed_deadline(cfg, state))
    if incident is not None and incident.notified and not incident.acked:
        if cfg.repeat > 0:
            last = incident.last_notified_at or incident.opened_at
            candidates.append(last + timedelta(seconds=cfg.repeat))
        if incident.escalated < len(cfg.escalate):
            step_at = incident.opened_at + timedelta(seconds=cfg.escalate[incident.escalated].after)
            # Escalation waits for the end of a maintenance window rather than being spent in it.
            candidates.append(max(step_at, maintenance_until) if maintenance_until else step_at)
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


def ping_defers_deadline(cfg: MonitorConfig, before: MonitorState, after: MonitorState, kind: PingKind) -> bool:
    """Whether ``next_deadline(cfg, after) >= next_deadline(cfg, before)`` is certain for a
    ping of `kind` that took `before` to `after`, without working either out: with no
    incident and no pause on either side, an end (success or fail) sets ``last_end`` to now
    and leaves fewer open runs, a log ping only hears from the job, and a start adds a run
    whose own deadline, without max_runtime and max_silence, is two periods and the grace
    away: later than the missed deadline already there. All of that holds only if the ping
    came no earlier than every instant `before` records that a deadline is worked out from
    (a wall clock stepped back breaks it), so such a ping is never said to defer. (The daemon
    then leaves the earlier timer on the wheel: it fires, finds the deadline moved, and is
    set again.)"""
    if before.incident is not None or after.incident is not None or before.paused or after.paused:
        return False
    return quiet_ping_defers_deadline(cfg, before, after, kind)


def quiet_ping_defers_deadline(cfg: MonitorConfig, before: MonitorState, after: MonitorState,
                               kind: PingKind) -> bool:
    """ping_defers_deadline() for a ping the caller knows left no incident and no pause
    on either side (transitions.routine_change's)."""
    now = after.last_ping  # the ping's instant
    if (now is None or now < before.created_at
            or (before.last_ping is not None and now < before.last_ping)
            or (before.last_end is not None and now < before.last_end)
            or (before.clock_from is not None and now < before.clock_from)
            or (before.open_runs and any(now < run.started_at for run in before.open_runs))):
        return False
    return kind is not PingKind.START or (cfg.max_runtime is None and cfg.max_silence is None)


def effective_status(cfg: MonitorConfig, state: MonitorState, now: datetime) -> Status:
    if state.paused:
        return Status.PAUSED
    if state.incident is not None:
        return Status.DOWN
    if any(not r.hung for r in state.open_runs):
        return Status.RUNNING
    due = due_at(cfg, state)
    if now > due:
        return Status.LATE
    return Status.NEW if state.last_ping is None else Status.UP


__all__ = [
    "Ack", "Note", "Pause", "Resolve", "Resume",
    "Alert", "AlertKind", "Decision", "Event", "IllegalEvent", "Incident", "MonitorState", "OpenRun",
    "Ping", "PingKind", "RunInfo", "Status", "Tick", "due_at", "effective_status", "missed_deadline",
    "new_state", "next_deadline", "ping_defers_deadline", "ping_event",
]
