"""The pure state machine, driven with fixed times: no sleeping, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cronwarden.config import MonitorConfig
from cronwarden.monitor import (
    AlertKind,
    IllegalEvent,
    MonitorState,
    Ping,
    PingKind,
    Status,
    Tick,
    effective_status,
    new_state,
    next_deadline,
)
from cronwarden.transitions import step
from cronwarden.rules import parse_rule

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
OK = Ping(PingKind.SUCCESS)
START = Ping(PingKind.START)
FAIL = Ping(PingKind.FAIL)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def heartbeat(**kw) -> MonitorConfig:  # type: ignore[no-untyped-def]
    return MonitorConfig(name="job", every=kw.pop("every", 300), grace=kw.pop("grace", 60), **kw)


class Run:
    """Feeds events in order and keeps every alert."""

    def __init__(self, cfg: MonitorConfig, state: MonitorState | None = None) -> None:
        self.cfg = cfg
        self.state = state or new_state(T0)
        self.alerts: list = []
        self.runs: list = []

    def __call__(self, event, seconds: float, silenced: bool = False, history=()):  # type: ignore[no-untyped-def]
        decision = step(self.cfg, self.state, event, at(seconds), silenced=silenced, history=history)
        self.state = decision.state
        self.alerts.extend(decision.alerts)
        if decision.run:
            self.runs.append(decision.run)
        return decision.alerts

    def tick_at_deadline(self) -> tuple[float, tuple]:  # type: ignore[type-arg]
        deadline = next_deadline(self.cfg, self.state)
        seconds = (deadline - T0).total_seconds()
        return seconds, self(Tick(), seconds)

    def sent(self) -> list[str]:
        return [a.kind.value + ("+reminder" if a.reminder else "") for a in self.alerts if a.notify]


def test_a_monitor_that_never_pinged_is_due_from_when_it_first_appeared() -> None:
    run = Run(heartbeat())
    assert next_deadline(run.cfg, run.state) == at(360)
    assert run(Tick(), 359) == ()
    alerts = run(Tick(), 360)
    assert [a.kind for a in alerts] == [AlertKind.MISSED]
    assert alerts[0].opens and alerts[0].notify
    assert "never pinged" in alerts[0].summary


def test_a_success_moves_the_deadline_forward() -> None:
    run = Run(heartbeat())
    run(OK, 100)
    assert next_deadline(run.cfg, run.state) == at(100 + 300 + 60)
    assert effective_status(run.cfg, run.state, at(200)) is Status.UP
    assert effective_status(run.cfg, run.state, at(401)) is Status.LATE


def test_a_new_monitor_reports_new_until_its_first_ping() -> None:
    run = Run(heartbeat())
    assert effective_status(run.cfg, run.state, at(10)) is Status.NEW


def test_an_early_tick_changes_nothing() -> None:
    run = Run(heartbeat())
    before = run.state
    assert run(Tick(), 30) == ()
    assert run.state == before


def test_missed_opens_one_incident_and_recovery_closes_it() -> None:
    run = Run(heartbeat())
    run.tick_at_deadline()
    assert effective_status(run.cfg, run.state, at(400)) is Status.DOWN
    # Later ticks inside the same outage send nothing new until the reminder.
    assert run(Tick(), 400) == ()
    alerts = run(OK, 500)
    assert [a.kind for a in alerts] == [AlertKind.RECOVERED]
    assert alerts[0].closes and alerts[0].incident_seq == 1
    assert run.state.incident is None
    assert run.sent() == ["missed", "recovered"]


def test_reminders_repeat_every_repeat_interval_while_down() -> None:
    run = Run(heartbeat(repeat=3600))
    run.tick_at_deadline()  # missed at 360
    assert next_deadline(run.cfg, run.state) == at(360 + 3600)
    run.tick_at_deadline()
    run.tick_at_deadline()
    assert run.sent() == ["missed", "missed+reminder", "missed+reminder"]


def test_repeat_zero_never_reminds() -> None:
    run = Run(heartbeat(repeat=0))
    run.tick_at_deadline()
    assert run(Tick(), 10 * 86400) == ()


def test_one_failure_alerts_at_once_by_default() -> None:
    run = Run(heartbeat())
    alerts = run(Ping(PingKind.FAIL, exit_status=3), 10)
    assert [a.kind for a in alerts] == [AlertKind.FAILED]
    assert "exit status 3" in alerts[0].summary
    assert run.runs[0].exit_status == 3


def test_alert_after_waits_for_that_many_failures_in_a_row() -> None:
    run = Run(heartbeat(alert_after=3))
    assert run(FAIL, 10) == ()
    assert run(FAIL, 20) == ()
    run(OK, 30)  # the streak resets
    assert run(FAIL, 40) == ()
    assert run(FAIL, 50) == ()
    alerts = run(FAIL, 60)
    assert [a.kind for a in alerts] == [AlertKind.FAILED]
    assert "3 failures in a row" in alerts[0].summary
    # Further failures are recorded in the open incident, not sent.
    assert [a.notify for a in run(FAIL, 70)] == [False]
    assert run.sent() == ["failed"]


def test_a_failure_counts_as_a_run_for_the_missed_clock() -> None:
    run = Run(heartbeat(alert_after=3))
    run(FAIL, 100)
    assert next_deadline(run.cfg, run.state) == at(100 + 360)


def test_a_run_open_past_max_runtime_is_hung() -> None:
    run = Run(heartbeat(every=3600, max_runtime=600))
    run(START, 0)
    assert effective_status(run.cfg, run.state, at(10)) is Status.RUNNING
    assert next_deadline(run.cfg, run.state) == at(600)
    _, alerts = run.tick_at_deadline()
    assert [a.kind for a in alerts] == [AlertKind.HUNG]
    assert alerts[0].run.started_at == at(0)
    # The hung run is not re-alerted.
    assert run(Tick(), 700) == ()
    # The job finishing at last recovers the monitor and records its duration.
    alerts = run(OK, 900)
    assert [a.kind for a in alerts] == [AlertKind.RECOVERED]
    assert run.runs[-1].duration_s == 900


def test_a_start_while_a_run_is_open_is_an_overlap() -> None:
    run = Run(heartbeat())
    run(Ping(PingKind.START, rid="a"), 0)
    alerts = run(Ping(PingKind.START, rid="b"), 60)
    assert [a.kind for a in alerts] == [AlertKind.OVERLAP]
    # Ends are paired by rid: "a" took 100 s, "b" 80 s.
    run(Ping(PingKind.SUCCESS, rid="a"), 100)
    run(Ping(PingKind.SUCCESS, rid="b"), 140)
    assert [(r.rid, r.duration_s) for r in run.runs] == [("a", 100), ("b", 80)]


def test_a_repeated_start_of_the_same_run_is_not_an_overlap() -> None:
    run = Run(heartbeat())
    run(Ping(PingKind.START, rid="a"), 0)
    assert run(Ping(PingKind.START, rid="a"), 5) == ()


def test_an_end_without_rid_closes_the_latest_start() -> None:
    run = Run(heartbeat())
    run(START, 0)
    run(OK, 42)
    assert run.runs[0].duration_s == 42
    assert run.state.open_runs == ()


def test_a_start_that_never_ended_is_forgotten_without_overlap_after_two_periods() -> None:
    run = Run(heartbeat(every=300, grace=60))
    run(START, 0)  # crashed: no end ping
    run(OK, 300)   # next run, no start ping: closes the open run
    run(START, 1000)
    assert run(START, 2000) == ()  # the start at 1000 is older than 2 x 300 + 60


def test_a_success_matching_a_rule_raises_rule() -> None:
    cfg = heartbeat(rules=(parse_rule("records == 0"),))
    run = Run(cfg)
    alerts = run(Ping(PingKind.SUCCESS, metadata={"records": 0}), 10)
    assert [a.kind for a in alerts] == [AlertKind.RULE]
    assert "records == 0" in alerts[0].summary
    # A later good run recovers.
    assert [a.kind for a in run(Ping(PingKind.SUCCESS, metadata={"records": 5}), 20)] == [AlertKind.RECOVERED]
    # A success that does not send the field never matches.
    assert run(OK, 30) == ()


def test_slow_after_raises_slow_without_opening_an_incident() -> None:
    run = Run(heartbeat(slow_after=100))
    run(START, 0)
    alerts = run(OK, 150)
    assert [a.kind for a in alerts] == [AlertKind.SLOW]
    assert run.state.incident is None


def test_silenced_alerts_are_recorded_but_not_sent_and_their_recovery_is_quiet() -> None:
    run = Run(heartbeat())
    alerts = run(FAIL, 10, silenced=True)
    assert [(a.kind, a.notify) for a in alerts] == [(AlertKind.FAILED, False)]
    alerts = run(OK, 20)
    assert [(a.kind, a.notify) for a in alerts] == [(AlertKind.RECOVERED, False)]
    # No reminders for an incident nobody was told about.
    assert run.state.incident is None


def test_a_log_ping_changes_nothing_but_last_ping() -> None:
    run = Run(heartbeat())
    run(Ping(PingKind.LOG), 50)
    assert run.state.last_ping == at(50)
    assert run.state.last_end is None
    assert next_deadline(run.cfg, run.state) == at(360)


def test_cron_monitors_are_due_at_the_next_fire_after_the_last_run() -> None:
    cfg = MonitorConfig(name="nightly", cron="0 2 * * *", timezone="Europe/Riga", grace=1800)
    state = new_state(datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc))
    # 02:00 in Riga (UTC+2 in winter) is 00:00 UTC; plus 30 minutes of grace.
    assert next_deadline(cfg, state) == datetime(2026, 3, 2, 0, 30, tzinfo=timezone.utc)


def test_state_round_trips_through_json() -> None:
    run = Run(heartbeat(max_runtime=60))
    run(Ping(PingKind.START, rid="x"), 0)
    run.tick_at_deadline()
    again = MonitorState.from_json(run.state.to_json())
    assert again == run.state


def test_a_naive_time_is_an_illegal_event_and_changes_nothing() -> None:
    state = new_state(T0)
    with pytest.raises(IllegalEvent):
        step(heartbeat(), state, OK, datetime(2026, 3, 1, 12, 0))


def test_recover_after_waits_for_that_many_clean_successes() -> None:
    run = Run(heartbeat(recover_after=3))
    run(FAIL, 10)
    assert run(OK, 20) == () and run(OK, 30) == ()
    run(FAIL, 40)  # flapping: the count starts again
    assert run(OK, 50) == () and run(OK, 60) == ()
    assert [a.kind for a in run(OK, 70)] == [AlertKind.RECOVERED]
    assert run.sent() == ["failed", "recovered"]


def test_a_run_over_twice_the_p95_of_its_history_is_slow() -> None:
    run = Run(heartbeat())
    history = [60.0 + i for i in range(20)]  # p95 = 79 s
    run(START, 0)
    assert run(OK, 150, history=history) == ()  # 150 s < 2 x 79
    run(START, 200)
    alerts = run(OK, 200 + 170, history=history)
    assert [a.kind for a in alerts] == [AlertKind.SLOW]
    assert "twice the p95 of the last 20 runs" in alerts[0].summary
    assert run.state.incident is None  # a warning: the monitor stays up


def test_a_slow_run_of_milliseconds_says_how_many() -> None:
    run = Run(heartbeat())
    run(START, 0)
    alerts = run(OK, 0.25, history=[0.01] * 20)
    assert [a.kind for a in alerts] == [AlertKind.SLOW]
    assert "job took 250ms, longer than twice the p95 of the last 20 runs (20ms)" in alerts[0].summary


@pytest.mark.parametrize("seconds, text", [(0.0, "0s"), (0.0004, "1ms"), (0.25, "250ms"), (0.9996, "1s"),
                                           (2.5, "2.5s"), (9.96, "10s"), (42.4, "42s"), (60, "1m"),
                                           (5400, "1h30m"), (90061, "1d1h1m1s"), (-0.4, "0s"), (-5, "0s"),
                                           (0.9994999999999999, "1s")])
def test_durations_in_alert_text(seconds: float, text: str) -> None:
    from cronwarden.units import format_duration

    assert format_duration(seconds) == text


def test_the_automatic_slow_threshold_needs_ten_runs() -> None:
    run = Run(heartbeat())
    run(START, 0)
    assert run(OK, 1000, history=[1.0] * 9) == ()


def test_a_running_job_silent_past_max_silence_is_hung() -> None:
    run = Run(heartbeat(every=86400, max_silence=600))
    run(START, 0)
    run(Ping(PingKind.LOG), 500)  # progress keeps it alive
    assert next_deadline(run.cfg, run.state) == at(1100)
    assert run(Tick(), 1000) == ()
    _, alerts = run.tick_at_deadline()
    assert [a.kind for a in alerts] == [AlertKind.HUNG]
    assert "silent for 10m" in alerts[0].summary
    assert run(Tick(), 2000) == ()  # alerted once (reminders aside)


def test_max_silence_does_not_apply_when_nothing_is_running() -> None:
    run = Run(heartbeat(every=86400, max_silence=600))
    run(OK, 0)
    assert next_deadline(run.cfg, run.state) == at(86400 + 60)


def test_escalation_steps_fire_while_unacknowledged_and_recovery_reaches_them() -> None:
    from cronwarden.alerts import channels_for
    from cronwarden.config import Escalation

    cfg = heartbeat(channels=("ops",), repeat=0,
                    escalate=(Escalation(900, ("pager",)), Escalation(3600, ("boss",))))
    run = Run(cfg)
    run(FAIL, 0)
    # First the job also misses its next run (recorded in the incident, not sent)...
    assert next_deadline(cfg, run.state) == at(360)
    _, alerts = run.tick_at_deadline()
    assert [(a.kind, a.notify) for a in alerts] == [(AlertKind.MISSED, False)]
    # ...then the escalation steps.
    assert next_deadline(cfg, run.state) == at(900)
    _, alerts = run.tick_at_deadline()
    assert [(a.escalation, channels_for(cfg, a)) for a in alerts] == [(1, ["pager"])]
    _, alerts = run.tick_at_deadline()
    assert [(a.escalation, channels_for(cfg, a)) for a in alerts] == [(2, ["boss"])]
    alerts = run(OK, 4000)
    assert [a.kind for a in alerts] == [AlertKind.RECOVERED]
    assert channels_for(cfg, alerts[0]) == ["ops", "pager", "boss"]


def test_an_incident_with_nothing_left_to_watch_has_no_deadline() -> None:
    run = Run(heartbeat(repeat=0))
    run(FAIL, 0)
    run.tick_at_deadline()  # the missed run is noted once
    assert next_deadline(run.cfg, run.state) is None


def test_a_job_that_stops_during_an_acknowledged_incident_pages_again() -> None:
    from cronwarden.monitor import Ack

    run = Run(heartbeat(repeat=0, rules=(parse_rule("records == 0"),)))
    run(Ping(PingKind.SUCCESS, metadata={"records": 0}), 0)  # 'rule' incident
    run(Ack(by="alice", via="cli"), 10)
    _, alerts = run.tick_at_deadline()  # then the job stops running
    assert [(a.kind, a.notify) for a in alerts] == [(AlertKind.MISSED, True)]
    assert "also did not run" in alerts[0].summary
    assert next_deadline(run.cfg, run.state) is None  # once


def test_an_alert_silenced_by_a_dependency_is_announced_when_the_dependency_is_up() -> None:
    run = Run(heartbeat(repeat=0))
    run(FAIL, 0, silenced=True)
    assert run.sent() == []
    alerts = run(Tick(), 100)  # the dependency recovered: the daemon ticks this monitor
    assert [(a.kind, a.notify) for a in alerts] == [(AlertKind.FAILED, True)]
    assert "now that what it depends on is up" in alerts[0].summary


def test_an_escalation_due_inside_a_maintenance_window_waits_for_its_end() -> None:
    from cronwarden.config import Escalation

    cfg = heartbeat(every=86400, repeat=0, channels=("ops",), escalate=(Escalation(600, ("pager",)),))
    run = Run(cfg)
    run(FAIL, 0)
    window_end = at(3600)
    assert next_deadline(cfg, run.state, window_end) == window_end
    decision = step(cfg, run.state, Tick(), at(700), maintenance_until=window_end)
    assert decision.alerts == () and decision.state.incident.escalated == 0
    decision = step(cfg, run.state, Tick(), at(3600))
    assert [a.escalation for a in decision.alerts] == [1]


# The routine lane (transitions.routine_ping) answers the most common pings without the
# handlers; for these it must answer exactly as they do, and leave the rest to them.
LANE_CASES = [
    # (name, config, pings before: (seconds, ping), the ping at 4000 s, lane answers it)
    ("heartbeat", heartbeat(), [], OK, True),
    ("first start", heartbeat(), [], START, True),
    ("end of a run", heartbeat(every=3600), [(3990, START)], OK, True),
    ("end by rid", heartbeat(every=3600), [(3990, Ping(PingKind.START, "a"))], Ping(PingKind.SUCCESS, "a"), True),
    ("end with another rid: the run stays open", heartbeat(every=3600), [(3990, Ping(PingKind.START, "a"))],
     Ping(PingKind.SUCCESS, "b"), False),
    ("end of a stale run: forgotten first", heartbeat(every=300), [(100, START)], OK, False),
    ("end of a slow run", heartbeat(every=3600, slow_after=5), [(3990, START)], OK, False),
    ("second start: an overlap", heartbeat(every=3600), [(3990, START)], START, False),
    ("a rule that matches", heartbeat(rules=(parse_rule("records == 0"),)), [],
     Ping(PingKind.SUCCESS, metadata={"records": 0}), False),
    ("a failure", heartbeat(alert_after=3), [], FAIL, False),
    ("a log ping", heartbeat(), [], Ping(PingKind.LOG), False),
    ("exit status 0", heartbeat(), [], Ping(PingKind.SUCCESS, exit_status=0), True),
]


@pytest.mark.parametrize("cfg, before, ping, lane", [case[1:] for case in LANE_CASES],
                         ids=[case[0] for case in LANE_CASES])
def test_the_routine_lane_answers_as_the_handlers_do(cfg: MonitorConfig, before: list, ping: Ping,
                                                     lane: bool) -> None:
    from cronwarden.transitions import _by_handlers, routine_ping

    state = new_state(T0)
    for seconds, earlier in before:
        state = step(cfg, state, earlier, at(seconds)).state
    assert state.incident is None and not state.paused
    routine = routine_ping(cfg, state, ping, at(4000), ())
    assert (routine is not None) is lane
    assert step(cfg, state, ping, at(4000)) == _by_handlers(cfg, state, ping, at(4000), False, (), None)
    if routine is not None:
        assert routine == _by_handlers(cfg, state, ping, at(4000), False, (), None)


def test_a_plain_pings_event_is_made_once_and_equals_a_new_one() -> None:
    from cronwarden.monitor import Ping, PingKind, new_ping, ping_event

    for kind in PingKind:
        for code in (None, 0, 1, 255):
            event = ping_event(kind, None, code, None)
            assert type(event) is Ping and event == Ping(kind, None, code, None)
            assert ping_event(kind, None, code, None) is event  # the same object each time
    # with a rid, metadata or an exit status outside 0-255, a new one
    for args in ((PingKind.START, "run-1", None, None), (PingKind.SUCCESS, None, 0, {"rows": 3}),
                 (PingKind.FAIL, None, 300, None), (PingKind.SUCCESS, None, -1, None)):
        event = ping_event(*args)
        assert event == Ping(*args) == new_ping(*args) and event is not ping_event(*args)
