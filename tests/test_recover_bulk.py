"""Start-up puts on the wheel what next_deadline says, for every monitor, whatever its state:
new, stored, shared, with an incident, paused, removed and back."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from cronwarden import monitor
from cronwarden import store as sql
from cronwarden.adopt import recover
from cronwarden.config import parse_config
from cronwarden.daemon import Daemon
from cronwarden.fastjson import dumps
from cronwarden.monitor import AlertKind, Incident, OpenRun
from cronwarden.wheel import RESOLUTION

MONITORS = "\n".join([
    "  a: {every: 1h}", "  b: {every: 1h}", "  c: {every: 2h, grace: 10m}",
    "  d: {cron: '30 3 * * *', timezone: Europe/Riga}", "  e: {cron: '30 3 * * *', timezone: Europe/Riga}",
    "  f: {cron: '30 3 * * *', timezone: UTC}", "  g: {every: 1h, max_runtime: 5m}", "  h: {every: 1h}",
    "  i: {every: 1h, repeat: 0}", "  j: {every: 1h}", "  k: {cron: '@daily'}",
])


def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    text = f"server: {{listen: '127.0.0.1:0', database: cw.db}}\nmonitors:\n{MONITORS}\n"
    return parse_config(text, tmp_path / "cronwarden.yaml")


async def check(daemon: Daemon) -> None:
    await recover(daemon)
    expected = {}
    for name in daemon.config.monitors:
        deadline = daemon._deadline(name)
        if deadline is not None:
            expected[name] = math.ceil(deadline.timestamp() / RESOLUTION)
    assert daemon.wheel._where == expected


async def test_a_fresh_start_schedules_what_next_deadline_says(tmp_path: Path) -> None:
    daemon = Daemon(config(tmp_path))
    await daemon.store.open()
    try:
        await check(daemon)
    finally:
        await daemon.store.close()


async def test_a_restart_with_varied_states_schedules_what_next_deadline_says(tmp_path: Path) -> None:
    daemon = Daemon(config(tmp_path))
    now = daemon.clock.now()
    old = now - timedelta(days=3)
    base = monitor.new_state(old)
    states = {
        "a": base, "b": base, "c": replace(base, last_end=now - timedelta(minutes=30)),
        "d": base, "e": replace(base, last_end=old + timedelta(hours=5)),
        "g": replace(base, open_runs=(OpenRun(now - timedelta(minutes=1)),)),
        "h": replace(base, incident=Incident(1, AlertKind.MISSED, old, True), incident_count=1),
        "i": replace(base, paused=True, paused_until=now + timedelta(hours=2)),
        "j": replace(base, paused=True), "k": base, "gone": base,
    }
    await daemon.store.open()
    try:
        await daemon.store.write([sql.upsert_monitor(name, old.timestamp(), state.to_json())
                                  for name, state in states.items()] + [sql.mark_removed("k", old.timestamp())])
        await check(daemon)
        assert daemon.states["a"] is daemon.states["b"]
        assert daemon.states["f"].created_at >= now  # new
        assert "gone" not in daemon.states
    finally:
        await daemon.store.close()


def test_adopt_all_is_adopt_in_turn() -> None:
    from datetime import datetime, timezone

    from cronwarden.adopt import Adopter

    now = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    old = monitor.new_state(now - timedelta(days=1))
    text = sql.upsert_monitor("x", 0, old.to_json())[1][2]
    other = sql.upsert_monitor("x", 0, replace(old, failures=2).to_json())[1][2]
    stored = {"a": (text, None), "b": (text, None), "c": (other, None), "d": (text, 5.0), "gone": (text, None)}
    names = ["n1", "a", "b", "c", "d", "n2"]
    one: list = []
    bulk: list = []
    by_one = Adopter(now, one)
    expected = {name: by_one.adopt(name, stored.get(name)) for name in names}
    by_one.finish()
    adopter = Adopter(now, bulk)
    got = adopter.adopt_all(names, stored)
    assert list(got) == names and got == expected
    assert bulk == one
    assert [params[2] for sql_text, params in bulk if "json_each" in sql_text] == ['["n1","n2"]']
    assert got["a"] is got["b"] and got["n1"] is got["n2"]
    # the states more than one monitor has: start-up shares their deadlines
    assert adopter.shared == {id(got["a"]), id(got["n1"])}


async def test_new_monitors_rows_are_written_in_one_statement_and_read_back(tmp_path: Path) -> None:
    first = Daemon(config(tmp_path))
    await first.store.open()
    try:
        await recover(first)
        created = {name: state.created_at for name, state in first.states.items()}
        # a row already there is kept as it is
        kept = replace(monitor.new_state(first.clock.now() - timedelta(days=1)), failures=2)
        await first.store.write([sql.upsert_monitor("a", 1.0, kept.to_json()),
                                 sql.insert_new_monitors(["a", "new"], 2.0, dumps(first.states["b"].to_json()))])
    finally:
        await first.store.close()
    again = Daemon(config(tmp_path))
    await again.store.open()
    try:
        stored = await again.store.load_monitors()
        await recover(again)
    finally:
        await again.store.close()
    assert set(stored) == set(created) | {"new"}
    assert again.states["a"] == kept
    assert {name: state.created_at for name, state in again.states.items() if name != "a"} == \
        {name: at for name, at in created.items() if name != "a"}
