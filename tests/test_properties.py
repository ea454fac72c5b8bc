"""Property-based tests: every input to the parsers gives a result or a clear
one-line error, never a traceback; what the daemon assumes of the state machine holds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cronwarden.config import ConfigError, MonitorConfig, parse_config
from cronwarden.http import PingPathError, parse_ping_path
from cronwarden.monitor import Ping, PingKind, Tick, new_state, next_deadline, ping_defers_deadline
from cronwarden.ratelimit import RateLimiter
from cronwarden.rules import RuleError, parse_rule
from cronwarden.schedule import validate_cron
from cronwarden.transitions import _by_handlers, routine_ping, step
from cronwarden.units import parse_duration, parse_size

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message


@PROPS
@given(scalars)
def test_durations_parse_or_say_why(value: object) -> None:
    try:
        assert parse_duration(value) >= 0
    except ValueError as exc:
        assert one_line(str(exc))


@PROPS
@given(st.from_regex(r"\A(\d{1,4}[smhdw]){1,4}\Z"))
def test_well_formed_durations_always_parse(text: str) -> None:
    assert parse_duration(text) >= 0


@PROPS
@given(scalars)
def test_sizes_parse_or_say_why(value: object) -> None:
    try:
        assert parse_size(value) >= 0
    except ValueError as exc:
        assert one_line(str(exc))


@PROPS
@given(st.text(max_size=60))
def test_rules_parse_or_name_a_column_inside_the_text(text: str) -> None:
    try:
        rule = parse_rule(text)
    except RuleError as exc:
        assert 0 <= exc.col <= len(text) and one_line(str(exc))
    else:
        assert rule.matches({}) is False  # no field sent: nothing matches
        rule.matches({"a": 1, "b": "x", "c": True, "d": None, "e": [1]})


@PROPS
@given(st.text(alphabet="0123456789*/,-@ abcdefghijklmnopqrstuvwxyzJANFEBMONSUN?LW#", max_size=40))
def test_cron_expressions_validate_without_raising(text: str) -> None:
    reason = validate_cron(text)
    assert reason is None or one_line(reason)


@PROPS
@given(st.text(max_size=80), st.one_of(st.none(), st.text(min_size=1, max_size=10)))
def test_ping_paths_parse_or_answer_400_or_404(tail: str, ping_key: str | None) -> None:
    try:
        target = parse_ping_path(tail, ping_key)
    except PingPathError as exc:
        assert exc.status in (400, 404) and one_line(str(exc))
    else:
        assert target.ident and (target.exit_status is None or 0 <= target.exit_status <= 255)


yaml_values = st.recursive(
    scalars, lambda children: st.one_of(st.lists(children, max_size=4),
                                        st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=20)


@PROPS
@given(st.dictionaries(st.sampled_from(["server", "defaults", "channels", "monitors", "routes", "maintenance",
                                        "bogus"]), yaml_values, max_size=5))
def test_any_yaml_structure_loads_or_lists_problems_with_positions(data: dict) -> None:  # type: ignore[type-arg]
    import yaml

    text = yaml.safe_dump(data)
    try:
        parse_config(text, Path("f.yaml"))
    except ConfigError as exc:
        for problem in exc.problems:
            assert problem.startswith("f.yaml:") and one_line(problem)


@PROPS
@given(st.text(max_size=300))
def test_any_text_loads_or_lists_problems_with_positions(text: str) -> None:
    try:
        parse_config(text, Path("f.yaml"))
    except ConfigError as exc:
        assert all(p.startswith("f.yaml:") and "\n" not in p for p in exc.problems)


def test_the_rate_limiter_allows_a_burst_then_the_rate_and_never_limits_loopback() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert all(limiter.allow("192.0.2.1", 0.0) for _ in range(5))
    assert not limiter.allow("192.0.2.1", 0.0)
    assert limiter.retry_after("192.0.2.1") > 0
    assert limiter.allow("192.0.2.1", 0.1)  # one token back after 1/rate
    assert limiter.allow("192.0.2.2", 0.0)  # clients are separate
    assert all(limiter.allow("127.0.0.1", 0.0) for _ in range(1000))
    assert all(RateLimiter(0, 1).allow("192.0.2.1", 0.0) for _ in range(100))


# ------------------------------------------------------------ the state machine

configs = st.builds(
    lambda schedule, grace, max_runtime, max_silence, alert_after: MonitorConfig(
        name="job", grace=grace, max_runtime=max_runtime, max_silence=max_silence, alert_after=alert_after,
        **schedule),
    st.sampled_from([{"every": 60}, {"every": 3600}, {"cron": "*/5 * * * *"},
                     {"cron": "30 3 * * *", "timezone": "Europe/Riga"}]),
    st.sampled_from([0, 300]), st.sampled_from([None, 600]), st.sampled_from([None, 300]), st.sampled_from([1, 3]))
# gaps between events, the wall clock now and then stepping back
events = st.lists(st.tuples(st.sampled_from([*PingKind, "tick"]), st.sampled_from([None, "a", "b"]),
                            st.integers(min_value=-600, max_value=3 * 3600)), max_size=25)


@PROPS
@given(configs, events)
@example(MonitorConfig(name="job", every=60, grace=0),  # the clock steps back between a success and a start
         [(PingKind.SUCCESS, None, 1), (PingKind.START, None, -1), (PingKind.SUCCESS, None, 0)])
def test_a_ping_said_to_defer_the_deadline_never_brings_it_sooner(cfg: MonitorConfig, seq: list) -> None:
    # The daemon leaves the wheel alone after such a ping (Daemon.plan): its timer, set for
    # the deadline before the ping or earlier, must still be no later than the new one.
    now = datetime(2026, 3, 28, 12, tzinfo=timezone.utc)  # Riga's clocks go forward the next night
    state = new_state(now)
    for kind, rid, gap in seq:
        now += timedelta(seconds=gap)
        if kind == "tick":
            state = step(cfg, state, Tick(), now).state
            continue
        before = state
        state = step(cfg, before, Ping(kind, rid=rid), now).state
        if ping_defers_deadline(cfg, before, state, kind):
            earlier, later = next_deadline(cfg, before), next_deadline(cfg, state)
            assert earlier is not None and later is not None and later >= earlier


lane_configs = st.builds(
    lambda schedule, max_runtime, max_silence, slow_after, rules, alert_after: MonitorConfig(
        name="job", grace=300, max_runtime=max_runtime, max_silence=max_silence, slow_after=slow_after,
        rules=rules, alert_after=alert_after, **schedule),
    st.sampled_from([{"every": 600}, {"cron": "*/5 * * * *"}, {"cron": "30 3 * * *", "timezone": "Europe/Riga"}]),
    st.sampled_from([None, 900]), st.sampled_from([None, 300]), st.sampled_from([None, 60]),
    st.sampled_from([(), (parse_rule("records == 0"),)]), st.sampled_from([1, 3]))
lane_events = st.lists(st.tuples(st.sampled_from([*PingKind, "tick"]), st.sampled_from([None, "a", "b"]),
                                 st.sampled_from([None, 0]), st.sampled_from([None, {"records": 0}, {"records": 5}]),
                                 st.integers(min_value=-600, max_value=2 * 3600)), max_size=25)


@PROPS
@given(lane_configs, lane_events, st.lists(st.floats(min_value=0, max_value=600), max_size=15))
def test_the_routine_ping_lane_gives_what_the_handlers_give(cfg: MonitorConfig, seq: list,
                                                             history: list[float]) -> None:
    now = datetime(2026, 3, 28, 12, tzinfo=timezone.utc)
    state = new_state(now)
    for kind, rid, exit_status, metadata, gap in seq:
        now += timedelta(seconds=gap)
        event = Tick() if kind == "tick" else Ping(kind, rid, exit_status if kind is PingKind.SUCCESS else None,
                                                    metadata)
        full = _by_handlers(cfg, state, event, now, False, history, None)
        if kind != "tick" and state.incident is None and not state.paused:
            routine = routine_ping(cfg, state, event, now, history)
            assert routine is None or routine == full
        state = full.state
