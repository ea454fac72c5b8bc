"""A channel worker between a real SQLite outbox and a real HTTP receiver.

The worker sends rows that commits hand it (``offer``) from memory while it
knows nothing else is pending; these tests hold it to the same promises as
reading the outbox: rows of one incident in order, a failed row holding back
the later rows of its incident, rows committed without an offer still sent.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from cronwarden import fastjson
from cronwarden import store as sql
from cronwarden.channels import sender_for
from cronwarden.config import ChannelConfig, parse_config
from cronwarden.daemon import Daemon
from cronwarden.delivery import ChannelWorker
from cronwarden.monitor import PingKind
from cronwarden.store import Store

from conftest import Receiver


class SteppedClock:
    """Wall-clock time the test moves by hand (retries fall due when it says so)."""

    def __init__(self) -> None:
        self.at = 1_800_000_000.0

    def time(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return time.monotonic()


class Outbox:
    """A store, a worker for one webhook channel, and what the receiver got."""

    def __init__(self, store: Store, worker: ChannelWorker, got: list[dict[str, Any]]) -> None:
        self.store = store
        self.worker = worker
        self.got = got
        self.fail_next = 0  # answer this many requests with a 500

    async def commit(self, rows: list[tuple[int | None, str]], offer: bool = True) -> list[int]:
        """Commit one outbox row per (incident, event); offer them as the daemon does."""
        at = self.worker.clock.time()
        statements, offered, ids = [], [], []
        for incident, event in rows:
            oid = self.store.next_id("outbox")
            payload = {"event": event, "monitor": "job", "incident": incident, "id": oid}
            statements.append(sql.insert_outbox(oid, "hook", "job", incident, event, fastjson.dumps(payload), at))
            offered.append({"id": oid, "channel": "hook", "monitor": "job", "incident_id": incident,
                            "event": event, "payload": payload, "created_at": at, "attempts": 0})
            ids.append(oid)
        await self.store.write(statements)
        for row in offered:
            if offer:
                self.worker.offer(row)
        if not offer:
            self.worker.poke()
        return ids

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; received {self.got}"
            await asyncio.sleep(0.01)

    async def states(self) -> dict[int, str]:
        rows = await self.store.fetchall("SELECT id, state FROM outbox")
        return {r["id"]: r["state"] for r in rows}


@asynccontextmanager
async def running_outbox(tmp_path: Path, group_window: int) -> AsyncIterator[Outbox]:
    got: list[dict[str, Any]] = []
    box: Outbox

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        got.append(body)
        if box.fail_next:
            box.fail_next -= 1
            return web.Response(status=500, text="down")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    store = Store(tmp_path / "cw.db")
    await store.open()
    channel = ChannelConfig(name="hook", type="webhook", url=f"http://127.0.0.1:{port}/hook",
                            group_window=group_window, timeout=5)
    async with aiohttp.ClientSession() as session:
        worker = ChannelWorker(store, channel, sender_for("webhook"), session, SteppedClock())  # type: ignore[arg-type]
        box = Outbox(store, worker, got)
        task = asyncio.create_task(worker.run())
        try:
            yield box
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await store.close()
            await runner.cleanup()


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    """One POST per alert (no storm control)."""
    async with running_outbox(tmp_path, group_window=0) as box:
        yield box


@pytest.fixture
async def digests(tmp_path: Path) -> AsyncIterator[Outbox]:
    """Storm control on: what is due together goes out as one digest."""
    async with running_outbox(tmp_path, group_window=5) as box:
        yield box


async def idle_in_memory(box: Outbox) -> None:
    """Wait until the worker has found the outbox empty (from then on it takes offers)."""
    await box.wait_for(lambda: box.worker._in_memory)


async def test_offered_rows_go_out_in_incident_order_and_are_recorded(outbox: Outbox) -> None:
    await idle_in_memory(outbox)
    trigger, resolve, other = await outbox.commit([(1, "missed"), (1, "recovered"), (2, "failed")])
    await outbox.wait_for(lambda: len(outbox.got) == 3)
    order = [alert["id"] for alert in outbox.got]
    assert order.index(trigger) < order.index(resolve)
    assert sorted(order) == [trigger, resolve, other]
    # The receiver has the last request before the worker has recorded its answer.
    deadline = time.monotonic() + 10
    while (states := await outbox.states()) != {trigger: "sent", resolve: "sent", other: "sent"}:
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.02)


async def test_a_failed_row_holds_back_the_later_rows_of_its_incident(outbox: Outbox) -> None:
    await idle_in_memory(outbox)
    outbox.fail_next = 1
    [trigger] = await outbox.commit([(1, "missed")])
    await outbox.wait_for(lambda: len(outbox.got) == 1)
    await outbox.wait_for(lambda: not outbox.worker._in_memory)  # a retry is pending: read the outbox
    [resolve] = await outbox.commit([(1, "recovered")])
    await asyncio.sleep(0.3)
    assert [a["id"] for a in outbox.got] == [trigger], "the resolve overtook its failed trigger"
    outbox.worker.clock.at += 3600  # the retry falls due
    outbox.worker.wake.set()
    await outbox.wait_for(lambda: len(outbox.got) == 3)
    assert [a["id"] for a in outbox.got] == [trigger, trigger, resolve]
    await outbox.wait_for(lambda: outbox.worker._in_memory)  # nothing pending: offers again
    assert await outbox.states() == {trigger: "sent", resolve: "sent"}


async def test_rows_committed_without_an_offer_are_read_from_the_outbox(outbox: Outbox) -> None:
    await idle_in_memory(outbox)
    [row] = await outbox.commit([(None, "test")], offer=False)
    await outbox.wait_for(lambda: len(outbox.got) == 1)
    assert outbox.got[0]["id"] == row
    await outbox.wait_for(lambda: outbox.worker._in_memory)
    assert await outbox.states() == {row: "sent"}


async def test_a_poke_during_the_idle_read_is_not_lost(outbox: Outbox) -> None:
    """The idle read finds nothing pending, but a row commits without an offer (and
    pokes) before the read returns: the worker must read the outbox again, not trust
    the stale answer and wait for offers only."""
    await idle_in_memory(outbox)
    real = outbox.store.next_outbox_time
    read_done, go_on = asyncio.Event(), asyncio.Event()
    hold = True

    async def held_read(channel: str) -> float | None:
        nonlocal hold
        result = await real(channel)  # the real query
        if hold and outbox.got:  # the idle read after the first row was sent
            hold = False
            read_done.set()
            await go_on.wait()
        return result

    outbox.store.next_outbox_time = held_read  # type: ignore[method-assign]
    [first] = await outbox.commit([(None, "test")], offer=False)
    await asyncio.wait_for(read_done.wait(), 10)
    [second] = await outbox.commit([(None, "test")], offer=False)  # lands while the read returns
    go_on.set()
    await outbox.wait_for(lambda: len(outbox.got) == 2)
    assert [a["id"] for a in outbox.got] == [first, second]


async def test_a_command_channel_gets_valid_json_for_metadata_with_nan(tmp_path: Path) -> None:
    """A job's metadata may hold NaN (JSON has none): every channel gets null, as stored,
    whether the alert is sent from memory or read back from the outbox."""
    seen = tmp_path / "seen.json"
    script = tmp_path / "strict.py"
    script.write_text("import json, sys\ntext = sys.stdin.read()\nopen(sys.argv[1], 'a').write(text)\n"
                      "json.loads(text, parse_constant=lambda c: sys.exit(3))\n")
    config = parse_config(
        "server: {listen: '127.0.0.1:0', database: cw.db}\n"
        f"channels: {{run: {{type: command, command: ['{sys.executable}', '{script}', '{seen}'], "
        "timeout: 10s, group_window: 0}}\n"
        "monitors: {a: {every: 1h, channels: [run]}}\n", tmp_path / "c.yaml")
    daemon = Daemon(config)
    await daemon.start()
    try:
        worker = daemon.workers["run"][0]
        deadline = time.monotonic() + 10
        while not worker._in_memory:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await daemon.ping("a", PingKind.FAIL, exit_status=1, metadata={"rows": float("nan")})
        deadline = time.monotonic() + 15
        while True:
            row = await daemon.store.fetchone("SELECT state, attempts FROM outbox ORDER BY id DESC LIMIT 1")
            if row is not None and row["attempts"] > 0:
                break
            assert time.monotonic() < deadline, "no delivery attempt"
            await asyncio.sleep(0.05)
        assert row["state"] == "sent"
        assert json.loads(seen.read_text())["run"]["metadata"] == {"rows": None}
    finally:
        await daemon.stop()


def hook_config(tmp_path: Path, url: str, monitors: list[str], **settings: object):  # type: ignore[no-untyped-def]
    """A config with one webhook channel `hook` (no storm control) for `monitors`."""
    extra = "".join(f", {key}: {value}" for key, value in settings.items())
    return parse_config(
        "server: {listen: '127.0.0.1:0', database: cw.db}\n"
        f"channels: {{hook: {{type: webhook, url: '{url}', group_window: 0{extra}}}}}\n"
        "monitors: {" + ", ".join(f"{n}: {{every: 1h, channels: [hook]}}" for n in monitors) + "}\n",
        tmp_path / "c.yaml")


async def wait_all_sent(daemon: Daemon, rows: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while [r["state"] for r in await daemon.store.fetchall("SELECT state FROM outbox")] != ["sent"] * rows:
        assert time.monotonic() < deadline, "not every alert was recorded as sent"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("timeouts, delay", [(["10s", "20s"], 1.0), (["5s", "1s", "2s"], 2.5)],
                         ids=["one reload", "two quick reloads"])
async def test_reloads_that_change_a_channel_mid_request_send_that_alert_once(
        tmp_path: Path, receiver: Receiver, monkeypatch, timeouts: list[str],  # type: ignore[no-untyped-def]
        delay: float) -> None:
    """The channel's worker is replaced by one with the new settings only once the
    request under way is answered and recorded: cancelled mid-request, the alert would
    stay pending and go out a second time from the new worker. After two quick reloads,
    the third worker waits by the longest timeout of the workers it replaces (5 s), not
    by the middle one's (1 s), which would cut off the request of the first settings."""
    from cronwarden import delivery
    from cronwarden.reload import apply_config

    monkeypatch.setattr(delivery, "FINISH_MARGIN", 0.5)

    def config(timeout: str):  # type: ignore[no-untyped-def]
        return hook_config(tmp_path, receiver.url, ["a"], timeout=timeout)

    receiver.delay = delay
    daemon = Daemon(config(timeouts[0]))
    await daemon.start()
    try:
        await daemon.ping("a", PingKind.FAIL)
        await receiver.wait_for(lambda body: body["event"] == "failed")  # received, not yet answered
        for timeout in timeouts[1:]:
            await apply_config(daemon, config(timeout))
            await asyncio.sleep(0.2)
        assert f"{daemon.workers['hook'][0].channel.timeout:.0f}s" == timeouts[-1]
        await wait_all_sent(daemon, 1)
        await asyncio.sleep(1.0)  # time for a second send, if there were one
        assert receiver.events("a") == ["failed"]
        assert (await daemon.store.fetchone("SELECT attempts FROM outbox"))["attempts"] == 1
        receiver.delay = 0.0
        await daemon.ping("a", PingKind.SUCCESS)  # the new worker sends what comes next
        await receiver.wait_for(lambda body: body["event"] == "recovered")
        assert receiver.events("a") == ["failed", "recovered"]
    finally:
        await daemon.stop()


async def test_a_retired_worker_finishes_the_alert_it_is_sending_and_leaves_the_rest_to_its_successor(
        tmp_path: Path, receiver: Receiver) -> None:
    """Several alerts due at once, sent one at a time: a reload that changes the channel
    lets the old worker finish the request under way, and the new worker sends the
    others; each arrives once. (The channel's URL carries which settings sent it.)"""
    from cronwarden.reload import apply_config

    names = [f"m{i}" for i in range(5)]

    def config(which: str):  # type: ignore[no-untyped-def]
        return hook_config(tmp_path, f"{receiver.url}?ch={which}", names, timeout=5, concurrency=1)

    receiver.delay = 0.5
    daemon = Daemon(config("old"))
    await daemon.start()
    try:
        await asyncio.gather(*(daemon.ping(n, PingKind.FAIL) for n in names))
        await receiver.wait_for(lambda body: body["event"] == "failed")  # the first one, not yet answered
        await apply_config(daemon, config("new"))
        await wait_all_sent(daemon, 5, timeout=20)
        assert sorted(g.body["monitor"] for g in receiver.got) == names  # each once
        assert [g.url_channel for g in receiver.got] == ["old"] + ["new"] * 4
    finally:
        await daemon.stop()


async def test_a_removed_channels_alert_answered_during_the_reload_is_recorded_sent(
        tmp_path: Path, receiver: Receiver) -> None:
    """The request under way when a reload removes its channel is let finish: answered
    200, the alert is sent, not given up."""
    from cronwarden.reload import apply_config

    base = "server: {listen: '127.0.0.1:0', database: cw.db}\nmonitors: {a: {every: 1h}}\n"
    daemon = Daemon(parse_config(
        base + "defaults: {channels: [ops]}\n"
        f"channels: {{ops: {{type: webhook, url: '{receiver.url}', group_window: 0}}}}\n", tmp_path / "c.yaml"))
    receiver.delay = 1.0
    await daemon.start()
    try:
        await daemon.ping("a", PingKind.FAIL)
        await receiver.wait_for(lambda body: body["event"] == "failed")  # in flight: answered 200 in 1 s
        await apply_config(daemon, parse_config(base + "channels: {spare: {type: log}}\n", tmp_path / "c.yaml"))
        rows = await daemon.store.fetchall("SELECT state FROM outbox WHERE channel = 'ops'")
        assert [r["state"] for r in rows] == ["sent"]
        events = await daemon.store.fetchall("SELECT kind FROM incident_events")
        assert "delivery_failed" not in [e["kind"] for e in events]
    finally:
        await daemon.stop()


async def test_a_removed_channels_failed_attempt_does_not_bring_its_given_up_alert_back(
        tmp_path: Path, receiver: Receiver) -> None:
    """A reload removes a channel while its alert is in flight and about to fail, and
    the give-up's commit is slow: the alert stays given up (dead), not pending again
    for a worker that no longer exists."""
    from cronwarden.reload import apply_config

    base = "server: {listen: '127.0.0.1:0', database: cw.db}\nmonitors: {a: {every: 1h}}\n"
    daemon = Daemon(parse_config(
        base + "defaults: {channels: [ops]}\n"
        f"channels: {{ops: {{type: webhook, url: '{receiver.url}', group_window: 0}}}}\n", tmp_path / "c.yaml"))
    receiver.status, receiver.delay = 500, 0.5
    await daemon.start()
    try:
        in_thread = daemon.store._in_thread

        async def slow_give_up_commit(fn, grouped, counted):  # type: ignore[no-untyped-def]
            if any("channel removed" in sql for sql in grouped):
                await asyncio.sleep(1.0)  # a commit taking a second (a slow disk, another writer)
            return await in_thread(fn, grouped, counted)

        daemon.store._in_thread = slow_give_up_commit  # type: ignore[method-assign]
        await daemon.ping("a", PingKind.FAIL)
        await receiver.wait_for(lambda body: body["event"] == "failed")  # in flight: answered 500 in 0.5 s
        await apply_config(daemon, parse_config(base + "channels: {spare: {type: log}}\n", tmp_path / "c.yaml"))
        await asyncio.sleep(1.0)
        rows = await daemon.store.fetchall("SELECT state FROM outbox WHERE channel = 'ops'")
        assert [r["state"] for r in rows] == ["dead"]
    finally:
        await daemon.stop()


async def test_a_failed_digest_is_retried_whole(digests: Outbox) -> None:
    """Every row of a digest that failed gets the same retry time, so the retry is the
    same digest (the same delivery id), not its rows one by one."""
    await idle_in_memory(digests)
    digests.fail_next = 1
    ids = await digests.commit([(1, "missed"), (2, "missed"), (3, "failed")])
    await digests.wait_for(lambda: len(digests.got) == 1 and not digests.worker._in_memory)
    assert digests.got[0]["event"] == "digest"
    rows = await digests.store.fetchall("SELECT id, state, attempts, next_attempt_at FROM outbox ORDER BY id")
    assert [r["id"] for r in rows] == ids
    assert {(r["state"], r["attempts"]) for r in rows} == {("pending", 1)}
    assert len({r["next_attempt_at"] for r in rows}) == 1
    digests.worker.clock.at += 3600
    digests.worker.wake.set()
    await digests.wait_for(lambda: len(digests.got) == 2)
    assert [a["id"] for a in digests.got[1]["alerts"]] == ids
