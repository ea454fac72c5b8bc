"""MonitorState.from_json reads what to_json writes, and older, shorter rows, as before."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from cronwarden import fastjson
from cronwarden.monitor import AlertKind, Incident, MonitorState, OpenRun


def reference(data: dict[str, Any]) -> MonitorState:
    """from_json as it was written first (keyword arguments, a closure, dict.get per key)."""
    def dt(value: float | None) -> datetime | None:
        return None if value is None else datetime.fromtimestamp(value, timezone.utc)

    inc = data.get("incident")
    return MonitorState(
        created_at=dt(data["created_at"]),  # type: ignore[arg-type]
        last_ping=dt(data.get("last_ping")),
        last_success=dt(data.get("last_success")),
        last_end=dt(data.get("last_end")),
        failures=int(data.get("failures", 0)),
        successes=int(data.get("successes", 0)),
        open_runs=tuple(OpenRun(dt(s), rid, bool(h)) for s, rid, h in data.get("open_runs", ())),  # type: ignore[arg-type]
        incident=None if inc is None else Incident(
            inc[0], AlertKind(inc[1]), dt(inc[2]), bool(inc[3]), dt(inc[4]), bool(inc[5]),  # type: ignore[arg-type]
            int(inc[6]) if len(inc) > 6 else 0, bool(inc[7]) if len(inc) > 7 else False,
            bool(inc[8]) if len(inc) > 8 else False,
        ),
        incident_count=int(data.get("incident_count", 0)),
        last_duration=data.get("last_duration"),
        paused=bool(data.get("paused", False)),
        paused_until=dt(data.get("paused_until")),
        pause_reason=data.get("pause_reason"),
        clock_from=dt(data.get("clock_from")),
    )


NOW = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone.utc)
STATES = [
    MonitorState(created_at=NOW),
    MonitorState(created_at=NOW, last_ping=NOW, last_success=NOW, last_end=NOW, last_duration=12.5, successes=1),
    MonitorState(created_at=NOW, last_ping=NOW + timedelta(seconds=1), failures=3,
                 open_runs=(OpenRun(NOW, "r1"), OpenRun(NOW + timedelta(minutes=1), None, True)),
                 incident=Incident(4, AlertKind.FAILED, NOW, True, NOW + timedelta(hours=1), True, 2, True, True),
                 incident_count=4, clock_from=NOW),
    MonitorState(created_at=NOW, paused=True, paused_until=NOW + timedelta(days=1), pause_reason="upgrade",
                 incident=Incident(1, AlertKind.MISSED, NOW, False), incident_count=1),
    MonitorState(created_at=datetime.fromtimestamp(0, timezone.utc), last_end=datetime.fromtimestamp(0, timezone.utc)),
]


@pytest.mark.parametrize("state", STATES)
def test_a_state_comes_back_from_its_json(state: MonitorState) -> None:
    data = fastjson.loads(fastjson.dumps(state.to_json()))
    assert MonitorState.from_json(data) == state == reference(data)


@pytest.mark.parametrize("data", [
    {"created_at": 1.5},
    {"created_at": 1.5, "incident": [1, "hung", 2.0, 1, None, 0]},
    {"created_at": 1.5, "incident": [1, "rule", 2.0, 0, 3.0, 1, 1], "open_runs": [[2.0, "x", 0]]},
    {"created_at": 1.5, "failures": 2.0, "paused": 1, "last_duration": 3, "open_runs": []},
    {"created_at": None, "last_ping": 0, "clock_from": 7.25},
])
def test_older_and_shorter_rows_read_as_before(data: dict[str, Any]) -> None:
    got, want = MonitorState.from_json(data), reference(data)
    assert got == want
    assert [type(getattr(got, f)) for f in MonitorState.__slots__] == \
        [type(getattr(want, f)) for f in MonitorState.__slots__]


def test_a_row_without_created_at_is_refused_as_before() -> None:
    with pytest.raises(KeyError):
        MonitorState.from_json({"last_ping": 1.0})


def test_the_stored_form_leaves_out_fields_at_their_defaults_and_reads_back_the_same() -> None:
    from cronwarden.monitor import new_state

    created = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    fresh = new_state(created)
    assert fresh.to_json() == {"created_at": created.timestamp()}
    assert MonitorState.from_json(fresh.to_json()) == fresh
    busy = replace(fresh, last_duration=0.0, failures=2, paused=True, pause_reason="deploy")
    assert MonitorState.from_json(busy.to_json()) == busy


@pytest.mark.parametrize("data", [
    {"created_at": 1.5, "last_ping": 9.0, "last_success": 9.0, "last_end": 9.0, "last_duration": 2.5},
    {"created_at": 1.5, "last_ping": 12.0, "last_success": 9.0, "last_end": 9.0},
    {"created_at": 1.5, "last_ping": 12.0, "last_success": 9.0, "last_end": 11.0},
    {"created_at": 1.5, "last_ping": 11.0, "last_success": 9.0, "last_end": 11.0},
    {"created_at": 1.5, "last_ping": 9, "last_success": 9.0},
    {"created_at": 1.5, "last_end": 3.0},
])
def test_instants_a_ping_set_alike_read_back_as_they_were_written(data: dict[str, Any]) -> None:
    assert MonitorState.from_json(data) == reference(data)


def test_a_decoded_state_is_a_frozen_monitor_state_like_a_constructed_one() -> None:
    import dataclasses

    for state in STATES:
        got = MonitorState.from_json(state.to_json())
        assert type(got) is MonitorState and got == state and hash(got) == hash(state)
        assert repr(got) == repr(state) and dataclasses.replace(got, failures=9) == replace(state, failures=9)
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.failures = 1  # type: ignore[misc]
        assert {got: 1}[state] == 1


def test_every_key_but_the_instants_and_duration_is_one_the_quick_path_of_from_json_looks_for() -> None:
    """from_json builds a state that has none of _RARE_KEYS with those fields at their
    defaults: a field added to to_json must be added there too, or it would be dropped."""
    from cronwarden.monitor import _RARE_KEYS

    full = MonitorState(created_at=NOW, last_ping=NOW, last_success=NOW, last_end=NOW, failures=1, successes=1,
                        open_runs=(OpenRun(NOW),), incident=Incident(1, AlertKind.HUNG, NOW, True), incident_count=1,
                        last_duration=1.0, paused=True, paused_until=NOW, pause_reason="x", clock_from=NOW)
    assert all(getattr(full, f) != getattr(MonitorState(created_at=NOW), f) for f in MonitorState.__slots__
               if f != "created_at")
    written = set(full.to_json())
    assert written - {"created_at", "last_ping", "last_success", "last_end", "last_duration"} == _RARE_KEYS
    assert MonitorState.from_json(full.to_json()) == full


def test_what_a_step_builds_quickly_is_what_the_constructors_build() -> None:
    """step() builds its Ping, RunInfo, Decision, OpenRun and new state with frozen_builder and
    copies a state into its draft with generated code: the same objects as the
    dataclasses' own constructors, frozen alike."""
    import dataclasses

    from cronwarden.monitor import (
        Decision, Ping, PingKind, RunInfo, new_decision, new_open_run, new_ping, new_run_info,
    )
    from cronwarden.transitions import _Draft

    run = RunInfo(NOW, NOW, 1.5, 0, {"rows": 3}, "r1")
    pairs = [
        (new_ping(PingKind.FAIL, "r1", 3, {"a": 1}), Ping(PingKind.FAIL, rid="r1", exit_status=3, metadata={"a": 1})),
        (new_run_info(NOW, NOW, 1.5, 0, {"rows": 3}, "r1"), run),
        (new_decision(STATES[-1], (), run, ()), Decision(STATES[-1], (), run, ())),
        (new_open_run(NOW, "r1", False), OpenRun(NOW, "r1")),
    ]
    for built, constructed in pairs:
        assert type(built) is type(constructed) and built == constructed and repr(built) == repr(constructed)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(built, dataclasses.fields(built)[0].name, None)
    for state in STATES:
        draft = _Draft(state)
        assert all(getattr(draft, f) is getattr(state, f) for f in MonitorState.__slots__)
        assert draft.freeze() is state  # unchanged: the same object
        draft.failures = state.failures + 1
        changed = draft.freeze()
        assert type(changed) is MonitorState and changed == replace(state, failures=state.failures + 1)


def test_a_frozen_replacer_is_dataclasses_replace() -> None:
    """The routine lane's new states (transitions.routine_change) come from frozen_replacer."""
    import dataclasses

    from cronwarden.configtypes import frozen_replacer
    from cronwarden.monitor import _new_state

    changed = ("last_duration", "last_ping", "open_runs")  # not in the fields' order
    replacer = frozen_replacer(MonitorState, _new_state, changed)
    later = NOW + timedelta(hours=1)
    for state in STATES:
        built = replacer(state, 2.5, later, (OpenRun(later),))
        assert type(built) is MonitorState
        assert built == replace(state, last_ping=later, open_runs=(OpenRun(later),), last_duration=2.5)
        assert all(getattr(built, f) is getattr(state, f) for f in MonitorState.__slots__ if f not in changed)
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.failures = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="no_such_field"):
        frozen_replacer(MonitorState, _new_state, ("no_such_field",))
    with pytest.raises(ValueError, match="cannot build"):
        frozen_replacer(MonitorState, _new_state, ("failures", "failures"))


def test_the_timestamp_a_caller_passes_for_now_gives_the_same_stored_form() -> None:
    from cronwarden.monitor import new_state

    now = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=timezone.utc)
    equal = datetime.fromtimestamp(now.timestamp(), timezone.utc)  # equal, not the same object
    earlier = now - timedelta(minutes=5)
    base = new_state(now - timedelta(days=1))
    states = [
        base,
        replace(base, last_ping=now, last_success=now, last_end=now, last_duration=1.0),
        replace(base, last_ping=now, last_success=earlier, last_end=equal),
        replace(base, last_ping=equal, open_runs=(OpenRun(now, "a"), OpenRun(earlier, None), OpenRun(equal, "b"))),
        replace(base, last_ping=now, open_runs=(OpenRun(now, None),)),
    ]
    for state in states:
        assert state.to_json(now, now.timestamp()) == state.to_json()
    # without `now`, a run with no start is not taken for one that started at it
    with pytest.raises(AttributeError):
        replace(base, open_runs=(OpenRun(None, "r"),)).to_json()  # type: ignore[arg-type]
