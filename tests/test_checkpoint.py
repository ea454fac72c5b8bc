"""Routine pings' states written behind them, and put back after a crash
(cronwarden.checkpoint), with a real database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cronwarden import checkpoint
from cronwarden.config import parse_config
from cronwarden.daemon import Daemon
from cronwarden.monitor import PingKind

CONFIG = ("server: {listen: '127.0.0.1:0', database: cw.db}\n"
          "monitors: {beat: {every: 1h}, job: {every: 1h}, other: {every: 1h}}\n")


def rows(path: Path) -> tuple[dict[str, dict], int | None]:
    db = sqlite3.connect(path / "cw.db")
    states = {name: json.loads(text) for name, text in db.execute("SELECT name, state FROM monitors")}
    mark = db.execute("SELECT value FROM meta WHERE key = 'state_mark'").fetchone()
    db.close()
    return states, None if mark is None else int(mark[0])


async def started(path: Path) -> Daemon:
    d = Daemon(parse_config(CONFIG, path / "c.yaml"))
    await d.start()
    return d


async def test_routine_pings_leave_the_row_to_the_checkpoint_which_writes_it_and_moves_the_mark(tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = await started(tmp_path)
    try:
        before, mark = rows(tmp_path)
        assert mark == 0 and "last_ping" not in before["beat"]
        await d.ping("beat", PingKind.SUCCESS)
        await d.ping("job", PingKind.START)
        assert rows(tmp_path)[0] == before  # committed pings, rows as they were
        assert await d.store.ping_count("beat") == 1 and set(d.unsaved) == {"beat", "job"}
        await checkpoint.checkpoint(d)
        after, mark = rows(tmp_path)
        assert mark == d.last_ping_id == 2 and not d.unsaved
        assert after["beat"]["last_ping"] == d.states["beat"].last_ping.timestamp() and after["beat"]["ping_id"] == 1
        assert after["job"]["open_runs"] and after["other"] == before["other"]
        # A ping that raises something writes its row in its own transaction, as before.
        await d.ping("job", PingKind.FAIL, exit_status=3)
        assert rows(tmp_path)[0]["job"]["incident"] and rows(tmp_path)[0]["job"]["ping_id"] == 3
    finally:
        await d.stop()


async def test_a_crash_loses_no_ping_from_the_states_and_a_clean_stop_leaves_nothing_to_put_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = await started(tmp_path)
    await d.ping("beat", PingKind.SUCCESS)
    await d.ping("job", PingKind.START)
    await checkpoint.checkpoint(d)
    await d.ping("beat", PingKind.SUCCESS)  # past the mark, never written:
    await d.ping("job", PingKind.SUCCESS, exit_status=0)
    await d.ping("job", PingKind.START)
    await d.ping("other", PingKind.FAIL, exit_status=1)  # its row is written with its incident
    await d.ping("other", PingKind.SUCCESS)  # and this one closes it: written too
    await d.ping("other", PingKind.SUCCESS)  # routine again
    expected = dict(d.states)
    d.unsaved.clear()  # what a kill -9 leaves: stop() has nothing to checkpoint
    await d.stop()
    assert rows(tmp_path)[0]["beat"]["last_ping"] != expected["beat"].last_ping.timestamp()

    d = await started(tmp_path)
    try:
        assert d.states == expected
        stored, mark = rows(tmp_path)
        assert mark == d.last_ping_id == 8 and stored["job"]["open_runs"] and stored["job"]["last_duration"]
        assert stored["beat"]["last_ping"] == expected["beat"].last_ping.timestamp()
        await d.ping("beat", PingKind.SUCCESS)
        expected = dict(d.states)
    finally:
        await d.stop()  # a clean stop checkpoints

    assert rows(tmp_path)[1] == 9
    d = await started(tmp_path)
    try:
        assert d.states == expected and rows(tmp_path)[1] == 9
    finally:
        await d.stop()


async def test_a_database_from_before_checkpoints_gets_its_mark_and_keeps_its_states(tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = await started(tmp_path)
    await d.ping("beat", PingKind.SUCCESS)
    await d.stop()
    db = sqlite3.connect(tmp_path / "cw.db")
    db.execute("DELETE FROM meta WHERE key = 'state_mark'")
    db.execute("INSERT INTO pings (id, monitor, at, kind) VALUES (2, 'job', 1.0, 'start')")  # held by its row
    db.commit()
    db.close()
    states = rows(tmp_path)[0]
    d = await started(tmp_path)
    try:
        assert rows(tmp_path) == (states, 2) and not d.states["job"].open_runs
    finally:
        await d.stop()
