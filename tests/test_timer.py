"""The daemon's timer task in-process, with a clock whose wall time can jump.

Deadlines are wall-clock times; the timer sleeps on the monotonic clock. A
step of the wall clock must neither fire deadlines early (clock set back)
nor leave them late (clock set forward): the timer re-checks on waking.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

import pytest

from cronwarden import timer
from cronwarden.config import parse_config
from cronwarden.daemon import Daemon
from cronwarden.timer import MAX_SLEEP
from cronwarden.wheel import RESOLUTION, Clock


class JumpingClock(Clock):
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset)

    def time(self) -> float:
        return time.time() + self.offset


def make_config(tmp_path: Path, monitors: str):  # type: ignore[no-untyped-def]
    text = f"server: {{listen: '127.0.0.1:0', database: cw.db}}\nmonitors:\n{monitors}\n"
    return parse_config(text, tmp_path / "cronwarden.yaml")


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Daemon, JumpingClock]]:
    clock = JumpingClock()
    daemon = Daemon(make_config(tmp_path, "  hourly: {every: 1h, grace: 0}\n  quick: {every: 3s, grace: 0}"),
                    clock)
    await daemon.start()
    yield daemon, clock
    await daemon.stop()


async def wait_until(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_clock_set_forward_fires_what_is_now_due_without_waiting_the_old_delay(
        running: tuple[Daemon, JumpingClock]) -> None:
    daemon, clock = running
    clock.offset = 2 * 3600.0  # NTP steps the clock two hours forward
    waited = await wait_until(lambda: daemon.states["hourly"].incident is not None, MAX_SLEEP + 2)
    assert waited <= MAX_SLEEP + 1
    assert daemon.stats.clock_jumps >= 1


async def test_a_clock_set_back_fires_nothing_early(running: tuple[Daemon, JumpingClock]) -> None:
    daemon, clock = running
    clock.offset = -3600.0  # the clock steps an hour back: "quick" is now due in an hour
    await asyncio.sleep(4.5)  # past quick's original deadline in real time
    assert daemon.states["quick"].incident is None
    clock.offset = 0.0
    await wait_until(lambda: daemon.states["quick"].incident is not None, MAX_SLEEP + 2)


async def test_a_ping_waits_for_a_failing_commit_of_the_same_monitor_and_builds_on_the_truth(
        tmp_path: Path) -> None:
    from cronwarden.monitor import PingKind
    from cronwarden.store import StoreError

    daemon = Daemon(make_config(tmp_path, "  job: {every: 1h}"))
    await daemon.start()
    try:
        real_write = daemon.store.write
        calls = 0

        async def flaky_write(statements, **kw):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 1:
                await asyncio.sleep(0.05)
                raise StoreError("database write failed: disk I/O error (injected)")
            return await real_write(statements, **kw)

        daemon.store.write = flaky_write  # type: ignore[method-assign]
        first, second = await asyncio.gather(daemon.ping("job", PingKind.FAIL), daemon.ping("job", PingKind.FAIL),
                                             return_exceptions=True)
        assert isinstance(first, StoreError) and second is None
        state = daemon.states["job"]
        assert state.incident is not None
        rows = await daemon.store.fetchall("SELECT id FROM incidents WHERE monitor = 'job'")

        assert len(rows) == 1 and daemon.incident_ids[("job", state.incident.seq)] == rows[0]["id"]
        assert state.failures == 1  # the failed ping is not counted: it was answered 503
    finally:
        await daemon.stop()


async def test_a_reload_reschedules_the_monitors_it_changes_and_leaves_the_others(
        running: tuple[Daemon, JumpingClock], tmp_path: Path) -> None:
    from cronwarden.reload import apply_config

    daemon, _ = running
    before = daemon.wheel._where.copy()
    new = make_config(tmp_path, "  hourly: {every: 2h, grace: 0}\n  quick: {every: 3s, grace: 0}\n"
                                "  added: {every: 1m, grace: 0}")
    await apply_config(daemon, new)
    after = daemon.wheel._where
    assert after["quick"] == before["quick"]
    assert after["hourly"] > before["hourly"]  # every 1h -> 2h: its deadline moved
    assert "added" in after
    created = daemon.states["added"].created_at.timestamp()
    assert abs(after["added"] * RESOLUTION - (created + 60)) <= RESOLUTION


# ---------------------------------------------------------------- Ticks planned ahead
# The timer plans a Tick up to LEAD before its deadline and commits it at the deadline,
# if nothing the step read has changed by then.


def plan(name: str, at: float) -> timer.Planned:
    """A plan with only what Ahead reads: the monitor and its deadline."""
    return timer.Planned(name, at, None, None, (name,), (), {}, None, None, None)  # type: ignore[arg-type]


def test_plans_come_out_by_deadline_and_the_latest_plan_of_a_monitor_counts() -> None:
    ahead = timer.Ahead()
    a1, b, c, a2, d = plan("a", 20.0), plan("b", 10.0), plan("c", 20.0), plan("a", 10.0), plan("d", 30.0)
    for p in (a1, b, c, a2, d):
        ahead.add(p)
    assert len(ahead) == 4 and ahead.next_time() == 10.0
    assert ahead.pop_due(9.9) == []
    assert ahead.pop_due(20.0) == [b, a2, c]  # a1 was replaced by a2; same deadline: order made
    assert len(ahead) == 1 and ahead.next_time() == 30.0
    ahead.add(plan("d", 40.0))  # every plan of 30.0 replaced: it no longer counts
    assert ahead.next_time() == 40.0 and ahead.pop_due(35.0) == []
    assert ahead.drain() == ["d"] and ahead.next_time() is None and ahead.pop_due(1e9) == []


@contextlib.asynccontextmanager
async def started(tmp_path: Path, monitors: str) -> AsyncIterator[tuple[Daemon, list[str]]]:
    """A started daemon whose timer.plan_ahead() calls are recorded (names); stopped after."""
    daemon = Daemon(make_config(tmp_path, monitors))
    planned: list[str] = []
    plan_ahead = timer.plan_ahead

    def recorded(d, name, deadline):  # type: ignore[no-untyped-def]
        if d is daemon:
            planned.append(name)
        return plan_ahead(d, name, deadline)

    timer.plan_ahead = recorded
    try:
        await daemon.start()
        try:
            yield daemon, planned
        finally:
            await daemon.stop()
    finally:
        timer.plan_ahead = plan_ahead


async def test_a_tick_planned_ahead_lands_at_its_deadline_with_the_deadline_as_its_time(tmp_path: Path) -> None:
    async with started(tmp_path, "  job: {every: 2s, grace: 0}") as (daemon, planned):
        deadline = daemon.states["job"].created_at.timestamp() + 2
        await wait_until(lambda: "job" in planned, 3)
        assert daemon.states["job"].incident is None  # planned, not applied
        await wait_until(lambda: daemon.states["job"].incident is not None, 3)
        assert time.time() >= deadline
        incident = daemon.states["job"].incident
        assert incident.opened_at.timestamp() == pytest.approx(deadline, abs=RESOLUTION)
        await wait_until(lambda: "job" not in daemon._inflight, 3)  # held from adoption to its commit
        rows = await daemon.store.fetchall("SELECT opened_at FROM incidents WHERE monitor = 'job'")
        assert [r["opened_at"] for r in rows] == [pytest.approx(deadline, abs=RESOLUTION)]


async def test_the_commit_of_a_tick_and_of_a_failing_ping_does_not_wait_for_company(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Their alerts are sent after their commit: it goes at once, with whatever is queued.
    Here the writer waits for company for ever, unless a write hurries it."""
    from cronwarden.monitor import PingKind
    from cronwarden.store import Store

    released = asyncio.Event()

    async def gather_for_ever(store: Store) -> None:
        while not store._hurry and not released.is_set():
            await asyncio.sleep(0.01)

    async with started(tmp_path, "  job: {every: 4s, grace: 0}\n  other: {every: 1h}\n  third: {every: 1h}") as (
            daemon, _):
        monkeypatch.setattr(Store, "_gather", gather_for_ever)  # after start-up's own writes
        try:
            routine = asyncio.ensure_future(daemon.ping("third", PingKind.SUCCESS))
            await asyncio.sleep(0.3)
            assert not routine.done()  # waiting for company
            await asyncio.wait_for(daemon.ping("other", PingKind.FAIL), 2)  # before job's Tick (4 s)
            assert routine.done()  # it went with the failing ping's commit
            deadline = daemon.states["job"].created_at.timestamp() + 4
            await asyncio.sleep(max(0.0, deadline - time.time()))
            await wait_until(lambda: daemon.states["job"].incident is not None and "job" not in daemon._inflight, 5)
            rows = await daemon.store.fetchall("SELECT monitor FROM incidents ORDER BY id")
            assert [r["monitor"] for r in rows] == ["other", "job"]
        finally:
            released.set()


async def test_a_ping_after_the_tick_was_planned_drops_the_plan(tmp_path: Path) -> None:
    from cronwarden.monitor import PingKind
    from cronwarden.timer import LEAD

    async with started(tmp_path, "  job: {every: 2s, grace: 0}") as (daemon, planned):
        deadline = daemon.states["job"].created_at.timestamp() + 2
        await wait_until(lambda: "job" in planned, 3)
        assert time.time() > deadline - LEAD
        await daemon.ping("job", PingKind.SUCCESS)
        await asyncio.sleep(max(0.0, deadline - time.time()) + 0.3)
        assert daemon.states["job"].incident is None
        assert daemon.stats.alerts == 0
        # and the next deadline is kept: missed 2 s after the ping
        await wait_until(lambda: daemon.states["job"].incident is not None, 3)


async def test_a_reload_after_the_tick_was_planned_is_what_counts_at_the_deadline(tmp_path: Path) -> None:
    from cronwarden.reload import apply_config

    async with started(tmp_path, "  job: {every: 2s, grace: 0}") as (daemon, planned):
        deadline = daemon.states["job"].created_at.timestamp() + 2
        await wait_until(lambda: "job" in planned, 3)
        await apply_config(daemon, make_config(tmp_path, "  job: {every: 2s, grace: 1h}"))
        await asyncio.sleep(max(0.0, deadline - time.time()) + 0.3)
        assert daemon.states["job"].incident is None
        assert daemon.stats.alerts == 0


async def test_a_dependency_falling_due_at_the_same_instant_silences_the_planned_dependent(
        tmp_path: Path) -> None:
    async with started(
        tmp_path, "  db: {every: 2s, grace: 0}\n  report: {every: 2s, grace: 0, depends_on: [db]}") as (daemon, planned):
        await wait_until(lambda: {"db", "report"} <= set(planned), 3)
        await wait_until(lambda: all(daemon.states[n].incident is not None for n in ("db", "report")), 3)
        assert daemon.states["db"].incident.notified
        assert not daemon.states["report"].incident.notified  # recorded, not sent: db is down


def test_dependencies_come_before_their_dependents_and_a_cycle_is_cut(tmp_path: Path) -> None:
    config = make_config(tmp_path, "  a: {every: 1h}\n  b: {every: 1h, depends_on: [a]}\n"
                                   "  c: {every: 1h, depends_on: [b, a]}\n"
                                   "  x: {every: 1h, depends_on: [y]}\n  y: {every: 1h, depends_on: [x]}")
    depth = config.depends_depth()
    assert depth["b"] == 1 and depth["c"] == 2 and "a" not in depth
    assert {depth["x"], depth["y"]} == {1, 2}


def test_a_long_dependency_chain_in_any_order_is_ordered(tmp_path: Path) -> None:
    chain = "".join(f"  m{i}: {{every: 1h, depends_on: [m{i - 1}]}}\n" for i in range(2000, 0, -1))
    depth = make_config(tmp_path, chain + "  m0: {every: 1h}").depends_depth()
    assert depth["m1"] == 1 and depth["m2000"] == 2000


async def test_a_plan_falling_due_is_committed_while_a_big_burst_is_still_being_planned(tmp_path: Path) -> None:
    """20,000 monitors fall due at t0 + 3 s, and take longer than the second of LEAD to
    plan; `crit`, due at t0 + 2.6 s, was planned before them. Its plan is committed on its
    own when it falls due, not held (and then redone) until the burst is planned."""
    from cronwarden.monitor import PingKind

    bulk = "".join(f"  b{i}: {{every: 3s, grace: 0}}\n" for i in range(20_000))
    daemon = Daemon(make_config(tmp_path, "  crit: {every: 2s, grace: 0}\n" + bulk))
    committed: dict[str, float] = {}
    commit = daemon.commit

    async def recorded(outcomes, **kw):  # type: ignore[no-untyped-def]
        await commit(outcomes, **kw)
        for outcome in outcomes:
            if outcome.alerts:
                committed.setdefault(outcome.monitor, time.monotonic())

    daemon.commit = recorded  # type: ignore[method-assign]
    await daemon.start()
    try:
        t0 = daemon.states["b0"].created_at.timestamp()
        await asyncio.sleep(max(0.0, t0 + 0.6 - time.time()))
        await daemon.ping("crit", PingKind.SUCCESS)
        deadline = daemon.states["crit"].last_end.timestamp() + 2
        await wait_until(lambda: len(committed) == 20_001, 60)
        assert committed["crit"] < min(at for name, at in committed.items() if name != "crit")
        assert daemon.states["crit"].incident.opened_at.timestamp() == pytest.approx(deadline, abs=RESOLUTION)
    finally:
        await daemon.stop()


async def test_an_alert_planned_while_a_reload_removes_its_channel_is_given_up_not_left_pending(
        tmp_path: Path) -> None:
    """A ping whose alert is planned under the old config while a reload that removes
    the alert's channel is under way: the row is given up with the channel's other
    pending rows, not left pending for a worker that no longer exists (which /healthz
    would report, after OUTBOX_STALE, as an alert waiting for ever)."""
    from cronwarden.monitor import PingKind
    from cronwarden.reload import apply_config

    server = "server: {listen: '127.0.0.1:0', database: cw.db}\nmonitors:\n  job: {every: 1h}\n"
    daemon = Daemon(parse_config(server + "defaults: {channels: [ops]}\n"
                                 "channels:\n  ops: {type: webhook, url: 'http://127.0.0.1:9/'}\n",
                                 tmp_path / "cronwarden.yaml"))
    await daemon.start()
    try:
        load_monitors = daemon.store.load_monitors
        pings = []

        async def ping_meanwhile(names):  # type: ignore[no-untyped-def]
            pings.append(asyncio.create_task(daemon.ping("job", PingKind.FAIL)))
            await asyncio.sleep(0)  # the ping is planned under the config still in force
            return await load_monitors(names)

        daemon.store.load_monitors = ping_meanwhile  # type: ignore[method-assign]
        await apply_config(daemon, parse_config(server + "defaults: {channels: [spare]}\n"
                                                "channels:\n  spare: {type: log}\n", tmp_path / "cronwarden.yaml"))
        await asyncio.gather(*pings)
        rows = await daemon.store.fetchall("SELECT state, last_error FROM outbox WHERE channel = 'ops'")
        assert [tuple(r) for r in rows] == [("dead", "channel removed")]
        events = await daemon.store.fetchall("SELECT kind FROM incident_events ORDER BY id")
        assert [e["kind"] for e in events][-1] == "delivery_failed"
        assert await daemon.store.oldest_pending_outbox() is None
    finally:
        await daemon.stop()
