"""End to end: the real daemon in a subprocess, a real webhook receiver, real SQLite.

Timing assertions are about the daemon's own contract (an alert within 1 s of
its deadline), measured from the deadline the payload itself reports.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

import pytest
from conftest import DaemonFactory, Receiver, ts

LATENESS_BOUND = 1.0


def config(receiver: Receiver, monitors: str, server: str = "", extra_channels: str = "",
           group_window: str = "0") -> str:
    """A config alerting to `receiver`; digests off unless a test turns them on."""
    return f"""
server:
  listen: 127.0.0.1:0
  base_url: http://cw.example
  database: ./cw.db
{server}
defaults:
  channels: [hook]
channels:
  hook:
    type: webhook
    url: {receiver.url}
    timeout: 5s
    group_window: {group_window}
{extra_channels}
monitors:
{monitors}
"""


async def test_a_monitor_that_never_pings_is_missed_within_a_second_of_its_deadline(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  silent: {every: 2s, grace: 1s, severity: critical}"))
    got = await receiver.wait_for(lambda b: b["event"] == "missed")
    body = got.body
    deadline = ts(body["expected_at"]) + 1
    assert 0 <= got.at - deadline < LATENESS_BOUND
    assert body["monitor"] == "silent" and body["severity"] == "critical" and body["status"] == "down"
    assert body["incident"] == 1
    assert body["links"]["dashboard"] == "http://cw.example/monitors/silent"
    assert set(body) >= {"event", "monitor", "status", "severity", "summary", "occurred_at", "incident",
                         "run", "log", "links"}
    assert got.headers["webhook-id"].startswith("cw-")
    status = await d.api("monitors/silent")
    assert status["status"] == "down" and status["incident"]["event"] == "missed"


async def test_a_fail_ping_alerts_with_the_output_tail_and_a_success_recovers(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  backup: {every: 1h, runbook: 'https://wiki/rb'}"))
    assert await d.ping("backup/start") == (200, "OK")
    sent = time.time()
    assert await d.ping("backup/3", method="POST", data=b"line one\nERROR disk full\n") == (200, "OK")
    got = await receiver.wait_for(lambda b: b["event"] == "failed")
    assert got.at - sent < LATENESS_BOUND
    assert got.body["run"]["exit_status"] == 3
    assert got.body["run"]["duration_s"] is not None
    assert "ERROR disk full" in got.body["log"]
    assert got.body["links"]["runbook"] == "https://wiki/rb"
    assert await d.ping("backup") == (200, "OK")
    rec = await receiver.wait_for(lambda b: b["event"] == "recovered")
    assert rec.body["incident"] == got.body["incident"] and rec.body["status"] == "up"
    assert receiver.events() == ["failed", "recovered"]


async def test_alert_after_three_sends_exactly_one_failed(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  flaky: {every: 1h, alert_after: 3}"))
    for _ in range(2):
        assert (await d.ping("flaky/fail"))[0] == 200
    await asyncio.sleep(0.3)
    assert receiver.events() == []
    for _ in range(3):
        assert (await d.ping("flaky/fail"))[0] == 200
    await receiver.wait_for(lambda b: b["event"] == "failed")
    await asyncio.sleep(0.3)
    assert receiver.events() == ["failed"]


async def test_a_run_past_max_runtime_is_hung_within_a_second(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  etl: {every: 1h, max_runtime: 2s}"))
    await d.ping("etl/start?rid=r1")
    started = (await d.api("monitors/etl"))["running"][0]["started_at"]
    got = await receiver.wait_for(lambda b: b["event"] == "hung")
    assert 0 <= got.at - (ts(started) + 2) < LATENESS_BOUND
    assert got.body["run"]["started_at"] == started


async def test_a_second_start_while_running_is_an_overlap(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  sync: {every: 1h}"))
    await d.ping("sync/start?rid=a")
    await d.ping("sync/start?rid=b")
    got = await receiver.wait_for(lambda b: b["event"] == "overlap")
    assert "still going" in got.body["summary"]
    await d.ping("sync/0?rid=a")
    await d.ping("sync/0?rid=b")
    detail = await d.api("monitors/sync")
    assert [r["rid"] for r in detail["runs"]] == ["b", "a"]


async def test_a_success_whose_metadata_matches_a_rule_raises_rule(daemon: DaemonFactory,
                                                                   receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  export:\n    every: 1h\n    rules: ['records_processed == 0']"))
    assert await d.ping("export", method="POST", json={"records_processed": 12}) == (200, "OK")
    assert await d.ping("export", method="POST", json={"records_processed": 0}) == (200, "OK")
    got = await receiver.wait_for(lambda b: b["event"] == "rule")
    assert got.body["run"]["metadata"] == {"records_processed": 0}
    assert "records_processed == 0" in got.body["summary"]
    assert receiver.events() == ["rule"]


async def test_nan_in_a_jobs_json_metadata_becomes_null(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  load: {every: 1h}"))
    body = '{"rows": NaN, "rate": Infinity, "ok": 1}'  # what Python's json.dumps writes for floats it has
    assert await d.ping("load/fail", method="POST", data=body,
                        headers={"Content-Type": "application/json"}) == (200, "OK")
    got = await receiver.wait_for(lambda b: b["event"] == "failed")
    assert got.body["run"]["metadata"] == {"rows": None, "rate": None, "ok": 1}


async def test_reminders_repeat_while_down(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  down: {every: 1h, repeat: 2s}"))
    await d.ping("down/fail")
    first = await receiver.wait_for(lambda b: b["event"] == "failed")
    reminder = await receiver.wait_for(lambda b: b.get("reminder") is True)
    # The reminder is due 2 s after the incident opened; the first alert was received a
    # few ms after that, so measure from its occurred_at.
    assert 2 <= reminder.at - ts(first.body["occurred_at"]) < 2 + LATENESS_BOUND
    assert reminder.body["incident"] == first.body["incident"]


async def test_every_ping_form_answers_as_documented(daemon: DaemonFactory, receiver: Receiver) -> None:
    key = "4f1c5b6e-8a2d-4c3b-9e7f-0a1b2c3d4e5f"
    d = await daemon(config(receiver, f"  job: {{every: 1h, key: {key}}}",
                            server="  ping_key: pk-secret\n  max_body: 1KiB"))
    assert await d.ping("job") == (200, "OK")
    assert await d.ping("job", method="HEAD") == (200, "")
    assert await d.ping("job/start", method="POST") == (200, "OK")
    assert await d.ping("job/0") == (200, "OK")
    assert await d.ping("job/log", data=b"progress 50%", method="POST") == (200, "OK")
    assert await d.ping(f"{key}/start") == (200, "OK")
    assert await d.ping(f"{key.upper()}") == (200, "OK")
    assert await d.ping("pk-secret/job/start") == (200, "OK")
    assert await d.ping("pk-secret/job") == (200, "OK")
    status, text = await d.ping("nope")
    assert status == 404 and "unknown monitor 'nope'" in text
    status, text = await d.ping("job/256")
    assert status == 400 and "exit status 0-255" in text
    status, text = await d.ping("job/bogus")
    assert status == 400 and "unknown ping action" in text
    # Output labelled JSON that is not a JSON object is kept as output (as Healthchecks does).
    assert await d.ping("job", method="POST", data=b"{not json",
                        headers={"Content-Type": "application/json"}) == (200, "OK")
    status, _ = await d.request("PUT", "/ping/job")
    assert status == 405
    # A body past max_body is kept by its tail, not refused.
    big = b"x" * 5000 + b"THE END"
    assert await d.ping("job", method="POST", data=big) == (200, "OK")
    detail = await d.api("monitors/job")
    assert detail["runs"][0]["output"].endswith("THE END") and len(detail["runs"][0]["output"]) == 1024
    assert detail["pings"] == 11
    assert receiver.events() == []


async def test_kill_9_then_restart_loses_no_ping_and_alerts_what_fell_due(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  hb: {every: 3s, grace: 1s}\n  busy: {every: 1h}"))
    answered = 0
    for i in range(50):
        status, _ = await d.ping(f"busy?rid=r{i}")
        answered += status == 200
    await d.ping("hb")
    await d.kill9()
    db = sqlite3.connect(d.config_path.parent / "cw.db")
    assert db.execute("SELECT COUNT(*) FROM pings WHERE monitor = 'busy'").fetchone()[0] == answered == 50
    db.close()
    await asyncio.sleep(5)  # hb falls due while the daemon is down
    before = time.time()
    await d.start()
    got = await receiver.wait_for(lambda b: b["event"] == "missed" and b["monitor"] == "hb")
    assert got.at - before < 5  # at once after start-up, not a full period later
    assert ts(got.body["expected_at"]) + 1 < before
    assert (await d.api("monitors/busy"))["pings"] == 50
    assert receiver.events() == ["missed"]


async def test_sighup_with_a_bad_file_keeps_the_old_config(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  one: {every: 1h}"))
    d.config_path.write_text(config(receiver, "  one: {every: 1h, grace: never}\n  two: {every: 1h}"))
    d.signal(signal.SIGHUP)
    line = await d.wait_for_log(r"grace: bad duration 'never'")
    assert f"{d.config_path}:" in line
    await d.wait_for_log("reload refused")
    assert await d.ping("one") == (200, "OK")
    assert (await d.ping("two"))[0] == 404
    # A good file is applied; history of monitors that stay is kept.
    d.config_path.write_text(config(receiver, "  one: {every: 1h}\n  two: {every: 1h}"))
    d.signal(signal.SIGHUP)
    await d.wait_for_log("configuration reloaded")
    assert await d.ping("two") == (200, "OK")
    assert (await d.api("monitors/one"))["pings"] == 1


async def test_sigterm_stops_cleanly(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  one: {every: 1h}"))
    assert await d.ping("one") == (200, "OK")
    d.signal(signal.SIGTERM)
    assert await d.wait() == 0
    assert any("cronwarden stopped" in line for line in d.lines)


async def test_a_dead_webhook_receiver_does_not_slow_pings(daemon: DaemonFactory, receiver: Receiver) -> None:
    receiver.status = 500
    d = await daemon(config(receiver, "  a: {every: 1h}\n  b: {every: 1h, channels: [console]}",
                            extra_channels="  console: {type: log}"))
    await d.ping("a/fail")
    await receiver.wait_for(lambda b: b["event"] == "failed")
    started = time.monotonic()
    for _ in range(20):
        assert (await d.ping("a"))[0] == 200
    assert time.monotonic() - started < 5
    # Another channel is unaffected; its alert appears in the log at once.
    await d.ping("b/fail")
    await d.wait_for_log(r"ALERT \[warning\] failed monitor=b")
    # Delivery is retried until the receiver recovers, in order.
    receiver.status = 200
    await receiver.wait_for(lambda b: b["event"] == "recovered", timeout=20)
    health = await d.api("../../healthz")
    assert health["status"] == "ok"


async def test_the_monitor_api_lists_status_next_due_and_runs(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  nightly: {cron: '0 2 * * *', timezone: Europe/Riga}\n"
                                      "  hb: {every: 5m}"))
    await d.ping("hb/start")
    await d.ping("hb", method="POST", data=b"done")
    listing = await d.api("monitors")
    by_name = {m["name"]: m for m in listing["monitors"]}
    assert by_name["nightly"]["status"] == "new"
    assert by_name["nightly"]["next_due"].endswith(":00:00Z")
    assert by_name["hb"]["status"] == "up"
    detail = await d.api("monitors/hb")
    assert detail["runs"][0]["output"] == "done"
    assert detail["runs"][0]["duration_s"] is not None
    assert detail["last_duration_s"] is not None
    status, _ = await d.request("GET", "/api/v1/monitors/nope")
    assert status == 404


async def test_the_dashboard_link_of_an_alert_opens_a_page_that_escapes_output(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  web: {every: 1h}"))
    await d.ping("web/1", method="POST", data=b"<script>alert(1)</script>")
    got = await receiver.wait_for(lambda b: b["event"] == "failed")
    path = got.body["links"]["dashboard"].replace("http://cw.example", "")
    status, html = await d.request("GET", path)
    assert status == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    status, html = await d.request("GET", "/")
    assert status == 200 and "/monitors/web" in html


async def test_alerts_of_a_monitor_whose_dependency_is_down_are_recorded_not_sent(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  db: {every: 1h}\n  report: {every: 1h, depends_on: [db]}"))
    await d.ping("db/fail")
    await receiver.wait_for(lambda b: b["event"] == "failed" and b["monitor"] == "db")
    await d.ping("report/fail")
    assert (await d.api("monitors/report"))["status"] == "down"
    await asyncio.sleep(0.5)
    assert receiver.events() == ["failed"]
    # db's alerts list report as down too; when db recovers, report (still failing) pages on its own.
    await d.ping("db")
    recovered = await receiver.wait_for(lambda b: b["event"] == "recovered" and b["monitor"] == "db")
    assert recovered.body["suppressed"] == ["report"]
    got = await receiver.wait_for(lambda b: b["monitor"] == "report")
    assert got.body["event"] == "failed" and "now that what it depends on is up" in got.body["summary"]


async def test_a_monitor_removed_and_added_back_is_due_from_its_return_and_keeps_history(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  a: {every: 1h}\n  b: {every: 1h}"))
    await d.ping("b/fail")
    first = await receiver.wait_for(lambda b: b["event"] == "failed")
    d.config_path.write_text(config(receiver, "  a: {every: 1h}"))
    d.signal(signal.SIGHUP)
    await d.wait_for_log("configuration reloaded")
    assert (await d.ping("b"))[0] == 404
    d.config_path.write_text(config(receiver, "  a: {every: 1h}\n  b: {every: 1h}"))
    d.signal(signal.SIGHUP)
    await d.wait_for_log("configuration reloaded: 2 monitors")
    detail = await d.api("monitors/b")
    assert detail["status"] == "new" and detail["pings"] == 1
    await d.ping("b/fail")
    second = await receiver.wait_for(lambda b: b["event"] == "failed" and b["incident"] != first.body["incident"])
    assert second.body["incident"] > first.body["incident"]


async def test_a_sighup_storm_with_the_file_rewritten_meanwhile_ends_on_the_final_file(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  one: {every: 1h}"))
    full = config(receiver, "  one: {every: 1h}\n  two: {every: 1h}\n  three: {every: 1h}")
    for i in range(15):
        # Alternate a half-written file (cut mid-line) and a complete one.
        d.config_path.write_text(full[: len(full) * (i % 3 + 1) // 4] if i % 2 else full)
        d.signal(signal.SIGHUP)
        await asyncio.sleep(0.01)
    d.config_path.write_text(full)
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, _ = await d.ping("three")
        if status == 200 and (await d.ping("two"))[0] == 200:
            break
        await asyncio.sleep(0.2)
    assert await d.ping("one") == (200, "OK")
    assert await d.ping("three") == (200, "OK")
    listing = await d.api("monitors")
    assert sorted(m["name"] for m in listing["monitors"]) == ["one", "three", "two"]
    assert d.proc is not None and d.proc.returncode is None


@pytest.mark.parametrize("loop", ["asyncio", "default"])
async def test_serve_runs_on_uvloop_when_installed_and_on_the_standard_loop_when_asked(
        daemon: DaemonFactory, loop: str) -> None:
    uvloop = pytest.importorskip("uvloop") if loop == "default" else None
    proc = await daemon("""
        server: {listen: 127.0.0.1:0, database: ./cw.db}
        monitors: {job: {every: 1h}}
    """, env={"CRONWARDEN_LOOP": loop})
    line = await proc.wait_for_log("event loop")
    assert ("uvloop event loop" if uvloop else "asyncio event loop") in line
    assert await proc.ping("job/start") == (200, "OK")
    assert await proc.ping("job/0") == (200, "OK")
    assert (await proc.api("monitors/job"))["status"] == "up"


async def test_a_ping_with_expect_100_continue_is_told_to_continue_and_recorded(daemon: DaemonFactory) -> None:
    proc = await daemon("""
        server: {listen: 127.0.0.1:0, database: ./cw.db}
        monitors: {job: {every: 1h}}
    """)
    body = b"x" * 100_000
    assert await asyncio.wait_for(proc.ping("job", method="POST", data=body, expect100=True), 5) == (200, "OK")
    status, _ = await proc.ping("job", method="POST", data=b"x", headers={"Expect": "something-else"})
    assert status == 417
    assert (await proc.api("monitors/job"))["status"] == "up"
