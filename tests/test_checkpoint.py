"""Routine pings' states written behind them, and put back after a crash
(cronwarden.checkpoint), with a real database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cronwarden import checkpoint, reload
from cronwarden.config import parse_config
from cronwarden.daemon import Daemon
from cronwarden.monitor import PingKind
from cronwarden.store import StoreError
from cronwarden.wheel import Clock

CONFIG = ("server: {listen: '127.0.0.1:0', database: cw.db}\n"
          "monitors: {beat: {every: 1h}, job: {every: 1h}, other: {every: 1h}}\n")


def rows(path: Path) -> tuple[dict[str, dict], int | None]:
    db = sqlite3.connect(path / "cw.db")
    states = {name: json.loads(text) for name, text in db.execute("SELECT name, state FROM monitors")}
    mark = db.execute("SELECT value FROM meta WHERE key = 'state_mark'").fetchone()
    db.close()
    return states, None if mark is None else int(mark[0])


async def mark_reaches(path: Path, mark: int) -> None:
    """Wait up to 5 s for the stored mark to be `mark` (the loop looks once a second)."""
    for _ in range(50):
        if rows(path)[1] == mark:
            return
        await asyncio.sleep(0.1)


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
    db = sqlite3.connect(tmp_path / "cw.db")  # as schema 3 left it: no mark, each row holds its pings
    db.execute("DELETE FROM meta WHERE key = 'state_mark'")
    db.execute("INSERT INTO pings (id, monitor, at, kind) VALUES (2, 'job', 1.0, 'start')")  # held by its row
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    states = rows(tmp_path)[0]
    d = await started(tmp_path)
    try:
        assert rows(tmp_path) == (states, 2) and not d.states["job"].open_runs
    finally:
        await d.stop()


# ---------------------------------------------------------------- races and reloads


def crash_copy(path: Path, into: Path) -> None:
    """What a kill -9 at this instant leaves: the committed database, copied."""
    into.mkdir()
    src, dst = sqlite3.connect(path / "cw.db"), sqlite3.connect(into / "cw.db")
    src.backup(dst)
    src.close()
    dst.close()


def gate_writes(d: Daemon, gates: dict[str, asyncio.Event], fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Writes whose statements name a monitor in `gates` wait for its event (for those in
    `fail`: its pings' writes, which then raise StoreError, as a failed group commit does)."""
    write = d.store.write

    async def gated(statements, **kw):  # type: ignore[no-untyped-def]
        for sql_text, params in statements:
            for name, gate in gates.items():
                if name in params and (name not in fail or sql_text.startswith("INSERT INTO pings")):
                    await gate.wait()
                    if name in fail:
                        raise StoreError("database write failed: disk I/O error")
        return await write(statements, **kw)

    d.store.write = gated  # type: ignore[method-assign]


async def checkpoint_held_at_job(path: Path) -> tuple[Daemon, asyncio.Event, asyncio.Future[None]]:
    """A daemon with beat and job unsaved, and a checkpoint (one row per chunk) running,
    held at job's row until the event is set."""
    d = await started(path)
    await d.ping("beat", PingKind.SUCCESS)
    await d.ping("job", PingKind.START)
    gate = asyncio.Event()
    gate_writes(d, {"job": gate})
    running = asyncio.ensure_future(checkpoint.checkpoint(d))
    for _ in range(20):
        await asyncio.sleep(0)
    return d, gate, running


async def states_at_start(path: Path) -> dict:
    """The monitors' states of a daemon started on `path`'s database (then stopped)."""
    d = await started(path)
    try:
        return dict(d.states)
    finally:
        await d.stop()


async def test_a_stop_during_a_checkpoint_loses_no_state(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(checkpoint, "CHUNK", 1)
    d, gate, running = await checkpoint_held_at_job(tmp_path)  # the loop's (or retention's) checkpoint
    await d.ping("other", PingKind.SUCCESS)  # a ping meanwhile
    expected = dict(d.states)
    running.cancel()  # stop() cancels the task that runs it
    await asyncio.gather(running, return_exceptions=True)
    gate.set()
    await d.stop()  # a clean stop: it checkpoints
    assert await states_at_start(tmp_path) == expected


async def test_two_checkpoints_at_once_never_move_the_mark_past_a_state_not_written(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(checkpoint, "CHUNK", 1)
    d, gate, first = await checkpoint_held_at_job(tmp_path)  # the loop's, writing job's row slowly
    await d.ping("other", PingKind.SUCCESS)
    second = asyncio.ensure_future(checkpoint.checkpoint(d))  # retention's, meanwhile
    for _ in range(200):
        await asyncio.sleep(0.005)
        if second.done():
            break
    expected = dict(d.states)
    crash_copy(tmp_path, tmp_path / "crashed")  # kill -9 now
    gate.set()
    await asyncio.gather(first, second)
    await d.stop()
    assert await states_at_start(tmp_path / "crashed") == expected


async def test_a_checkpoint_never_writes_a_change_whose_commit_may_yet_fail(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(checkpoint, "CHUNK", 1)
    d = await started(tmp_path)
    await d.ping("beat", PingKind.SUCCESS)
    await d.ping("job", PingKind.START)
    committed = d.states["job"]
    beat_gate, job_gate = asyncio.Event(), asyncio.Event()
    gate_writes(d, {"beat": beat_gate, "job": job_gate}, fail={"job"})
    running = asyncio.ensure_future(checkpoint.checkpoint(d))  # held at beat's chunk
    for _ in range(20):
        await asyncio.sleep(0)
    pinged = asyncio.ensure_future(d.ping("job", PingKind.SUCCESS))  # planned; its commit will fail
    for _ in range(20):
        await asyncio.sleep(0)
    assert "job" in d._inflight
    beat_gate.set()  # beat's chunk lands; job's comes next, while job's ping is not committed
    for _ in range(50):
        await asyncio.sleep(0.005)
        if running.done():
            break
    job_gate.set()  # job's ping fails
    await asyncio.gather(pinged, running, return_exceptions=True)
    del d.store.write  # writes go through again
    try:
        assert rows(tmp_path)[0]["job"].get("ping_id", 0) < 3  # no row holds the failed ping
        assert d.states["job"] == committed  # nor does memory
        await checkpoint.checkpoint(d)  # job was left to the next checkpoint
        assert rows(tmp_path)[0]["job"]["open_runs"] and rows(tmp_path)[1] == d.last_ping_id
    finally:
        await d.stop()


async def test_a_monitor_removed_and_added_back_is_new_after_a_crash(tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = await started(tmp_path)
    await d.ping("job", PingKind.START)  # routine: its row is left to the checkpoint
    without = CONFIG.replace(" job: {every: 1h},", "")
    await reload.apply_config(d, parse_config(without, tmp_path / "c.yaml"))
    await reload.apply_config(d, parse_config(CONFIG, tmp_path / "c.yaml"))  # back: new again
    assert not d.states["job"].open_runs
    expected = dict(d.states)
    d.unsaved.clear()  # kill -9
    await d.stop()
    d = await started(tmp_path)
    try:
        assert d.states == expected
    finally:
        await d.stop()


async def test_a_monitor_removed_then_back_in_the_config_at_the_next_start_is_new(tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = await started(tmp_path)
    await d.ping("job", PingKind.START)
    without = CONFIG.replace(" job: {every: 1h},", "")
    await reload.apply_config(d, parse_config(without, tmp_path / "c.yaml"))
    d.unsaved.clear()  # kill -9; the file gets job back before the next start
    await d.stop()
    d = await started(tmp_path)
    try:
        assert not d.states["job"].open_runs
    finally:
        await d.stop()


async def test_the_loop_checkpoints_after_enough_pings(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(checkpoint, "CHECKPOINT_PINGS", 3)
    d = await started(tmp_path)
    try:
        for _ in range(3):
            await d.ping("beat", PingKind.SUCCESS)
        await mark_reaches(tmp_path, 3)
        stored, mark = rows(tmp_path)
        assert mark == 3 and stored["beat"]["ping_id"] == 3 and not d.unsaved
    finally:
        await d.stop()


async def test_an_idle_loop_waits_for_a_ping_then_checkpoints_it_in_time(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.5)
    d = await started(tmp_path)
    try:
        await asyncio.sleep(1.5)  # nothing unsaved: the loop waits for a ping, not for the clock
        assert not d.unsaved_wake.is_set() and rows(tmp_path)[1] == 0
        await d.ping("beat", PingKind.SUCCESS)
        assert d.unsaved_wake.is_set()
        await mark_reaches(tmp_path, 1)
        assert rows(tmp_path)[1] == 1 and not d.unsaved
    finally:
        await d.stop()


async def test_a_checkpoint_failed_outside_the_loop_wakes_the_loop_for_what_it_kept(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A checkpoint of retention's empties `unsaved` while it writes: the loop, looking
    then, goes to wait; when that write fails, what it puts back must wake the loop."""
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.3)
    d = await started(tmp_path)
    try:
        write, release = d.store.write, asyncio.Event()

        async def held_then_failed(statements, **options):  # type: ignore[no-untyped-def]
            if statements and statements[0][0].startswith("INSERT INTO monitors") and not release.is_set():
                await release.wait()
                raise StoreError("database write failed: disk I/O error (injected)")
            return await write(statements, **options)

        monkeypatch.setattr(d.store, "write", held_then_failed)
        await d.ping("beat", PingKind.SUCCESS)
        outside = asyncio.create_task(checkpoint.checkpoint(d))  # as retention's pass runs it
        await asyncio.sleep(1.5)  # the loop finds nothing unsaved, and waits
        assert not d.unsaved and not d.unsaved_wake.is_set()
        release.set()
        assert isinstance((await asyncio.gather(outside, return_exceptions=True))[0], StoreError)
        assert d.unsaved == {"beat": 1}
        await mark_reaches(tmp_path, 1)
        assert rows(tmp_path)[1] == 1 and not d.unsaved
    finally:
        await d.stop()


class SetClock(Clock):
    """The instant the test sets (the timer's own reads included)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def time(self) -> float:
        return self.at.timestamp()


async def test_the_daemons_routine_lane_stores_what_plan_stores(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Daemon.plan_routine (most pings) and plan() (every event) give the same rows,
    states, run histories and deadlines: the same pings through a daemon with the lane
    and one without it."""
    pings = [("beat", PingKind.SUCCESS, None, None, None), ("job", PingKind.START, None, None, None),
             ("job", PingKind.SUCCESS, 0, None, None), ("job", PingKind.START, None, "r1", None),
             ("job", PingKind.SUCCESS, 0, "r1", {"rows": 3}), ("beat", PingKind.LOG, None, None, None),
             ("other", PingKind.FAIL, 2, None, None), ("other", PingKind.SUCCESS, None, None, None),
             ("other", PingKind.SUCCESS, 0, None, None), ("beat", PingKind.SUCCESS, None, None, None),
             ("bounded", PingKind.START, None, None, None)]  # a start that brings its deadline nearer
    config = CONFIG.replace("monitors: {", "monitors: {bounded: {every: 1h, max_runtime: 30s}, ")
    results = []
    for lane in (True, False):
        path = tmp_path / str(lane)
        path.mkdir()
        clock = SetClock(datetime(2026, 1, 1, tzinfo=timezone.utc))
        d = Daemon(parse_config(config, path / "c.yaml"), clock)
        plan_routine = d.plan_routine
        taken = []

        def counted(*args):  # type: ignore[no-untyped-def]
            rows = plan_routine(*args) if lane else None
            taken.append(rows is not None)
            return rows

        monkeypatch.setattr(d, "plan_routine", counted)
        await d.start()
        try:
            for k, (name, kind, code, rid, metadata) in enumerate(pings):
                clock.at += timedelta(seconds=10 + k)
                await d.ping(name, kind, exit_status=code, rid=rid, metadata=metadata, remote="127.0.0.1")
            await asyncio.sleep(0.1)  # the run histories' loads from the database
            states, unsaved = dict(d.states), dict(d.unsaved)
            history = {name: list(h) for name, h in d.history.items()}
            deadlines = {name: d.wheel.when(name) for name in d.states}
            await checkpoint.checkpoint(d)
        finally:
            await d.stop()
        db = sqlite3.connect(path / "cw.db")
        results.append((states, unsaved, history, deadlines,
                        *(db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                          for table in ("pings", "runs", "monitors", "incidents"))))
        db.close()
        if lane:  # the lane took the routine pings: all but the log ping, the failure and the recovery
            assert taken == [True, True, True, True, True, False, False, False, True, True, True]
    with_lane, without = results
    assert with_lane == without
    assert with_lane[1] == {"beat": 1, "job": 2, "other": 9, "bounded": 11}  # written behind, by the checkpoint
    assert with_lane[3]["bounded"] < with_lane[3]["beat"]  # its run's limit, not its schedule
    assert with_lane[2]["job"] == [12.0, 14.0]  # the two runs' durations, for the slow rule


async def test_the_history_read_after_a_restart_counts_the_run_that_started_it_once(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The first run end after start-up reads the stored durations for the slow rule in the
    background, and that end's own run goes into the history in memory: a read that comes
    after the end's commit must not count it a second time."""
    d = await started(tmp_path)
    for _ in range(3):
        await d.ping("job", PingKind.START)
        await d.ping("job", PingKind.SUCCESS, exit_status=0)
    await d.stop()
    d = await started(tmp_path)
    try:
        read = d.store.recent_durations

        async def late_read(*args):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.3)  # after the end's commit
            return await read(*args)

        monkeypatch.setattr(d.store, "recent_durations", late_read)
        await d.ping("job", PingKind.START)
        await d.ping("job", PingKind.SUCCESS, exit_status=0)
        for _ in range(50):
            if len(d.history["job"]) > 1:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        assert len(d.history["job"]) == 4  # three stored, and this one
    finally:
        await d.stop()
