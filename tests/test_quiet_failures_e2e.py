"""End to end: the quiet failures (issue: jobs that succeed but do nothing,
hang quietly, or slow down) against the real daemon."""

from __future__ import annotations

import asyncio
import sys

from conftest import DaemonFactory, Receiver
from test_daemon_e2e import config, ts

LATENESS_BOUND = 1.0


async def test_a_run_much_longer_than_its_history_raises_slow_and_stays_up(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  etl: {every: 1h}"))
    for i in range(10):
        await d.ping(f"etl/start?rid=h{i}")
        await asyncio.sleep(0.05)
        await d.ping(f"etl/0?rid=h{i}")
    await d.ping("etl/start?rid=slow")
    await asyncio.sleep(1.5)
    await d.ping("etl/0?rid=slow")
    got = await receiver.wait_for(lambda b: b["event"] == "slow")
    assert "p95 of the last 10 runs" in got.body["summary"]
    assert got.body["run"]["duration_s"] >= 1.5
    assert got.body["status"] == "up"
    assert (await d.api("monitors/etl"))["status"] == "up"


async def test_slow_after_raises_slow(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  rep: {every: 1h, slow_after: 1s}"))
    await d.ping("rep/start")
    await asyncio.sleep(1.2)
    await d.ping("rep")
    got = await receiver.wait_for(lambda b: b["event"] == "slow")
    assert "slow_after 1s" in got.body["summary"]


async def test_a_silent_running_job_is_hung_after_max_silence(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  sync: {every: 1d, max_silence: 2s, max_runtime: 1h}"))
    await d.ping("sync/start")
    await asyncio.sleep(1.0)
    await d.ping("sync/log", method="POST", data=b"50% done")
    last = (await d.api("monitors/sync"))["last_ping"]
    got = await receiver.wait_for(lambda b: b["event"] == "hung")
    assert 0 <= got.at - (ts(last) + 2) < LATENESS_BOUND
    assert "silent for 2s" in got.body["summary"]


async def test_recover_after_needs_consecutive_successes(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  flap: {every: 1h, recover_after: 2}"))
    await d.ping("flap/1")
    await receiver.wait_for(lambda b: b["event"] == "failed")
    await d.ping("flap/0")
    await asyncio.sleep(0.3)
    assert receiver.events() == ["failed"]
    await d.ping("flap/0")
    await receiver.wait_for(lambda b: b["event"] == "recovered")


async def test_status_prints_duration_percentiles_and_a_suggested_max_runtime(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  job: {every: 1h, max_runtime: 5h}"))
    for i in range(5):
        await d.ping(f"job/start?rid={i}")
        await d.ping(f"job/0?rid={i}", method="POST", data=f"run {i} ok".encode())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronwarden", "status", "job", "--config", str(d.config_path), "--url", d.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "durations of the last 5 runs: p50" in text
    assert "suggested max_runtime: 1s (3 x p95; now 5h)" in text
    assert "run 4 ok" in text
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronwarden", "status", "--config", str(d.config_path), "--url", d.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert out.decode().splitlines()[0].split() == ["MONITOR", "STATE", "LAST", "SUCCESS", "NEXT", "DUE", "LAST",
                                                    "DURATION"]
    assert "\033[" not in out.decode()  # plain when piped
