"""End to end: incident response with the real daemon: acknowledge (CLI and
signed link), notes, resolve, pause, maintenance windows, post-mortem."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

from markdown_it import MarkdownIt

from conftest import DaemonFactory, DaemonProcess, Receiver
from test_daemon_e2e import config

SECTIONS = ["Impact and scope", "Trigger", "Resolution", "Timeline", "Root cause", "What went well",
            "What did not go well", "Action items", "Data"]


async def cli(d: DaemonProcess, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronwarden", *args, "--config", str(d.config_path), "--url", d.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**d.env, "CRONWARDEN_USER": "alice"})
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_an_incident_timeline_shows_alert_delivery_ack_silenced_reminders_and_recovery(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  backup: {every: 1h, repeat: 2s}"))
    await d.ping("backup/1", method="POST", data=b"tar: disk full")
    first = await receiver.wait_for(lambda b: b["event"] == "failed")
    incident = first.body["incident"]
    assert first.body["links"]["ack"].startswith(f"http://cw.example/ack/{incident}/")
    await receiver.wait_for(lambda b: b.get("reminder") is True)  # reminders run until acknowledged
    code, out = await cli(d, "ack", "backup", "--note", "looking into it")
    assert code == 0, out
    assert f"incident {incident} acknowledged" in out
    sent = len(receiver.got)
    await asyncio.sleep(3)  # longer than repeat: no reminder after the ack
    assert len(receiver.got) == sent
    code, out = await cli(d, "note", str(incident), "freed", "space", "on", "/backup")
    assert code == 0, out
    await d.ping("backup")
    await receiver.wait_for(lambda b: b["event"] == "recovered")
    detail = await d.api(f"incidents/{incident}")
    kinds = [e["kind"] for e in detail["timeline"]]
    assert kinds[0] == "failed" and "reminder" in kinds and kinds[-1] == "recovered"
    ack = next(e for e in detail["timeline"] if e["kind"] == "acknowledged")
    assert (ack["by"], ack["via"], ack["note"]) == ("alice", "cli", "looking into it")
    assert any(e["kind"] == "note" and e["text"] == "freed space on /backup" for e in detail["timeline"])
    assert detail["deliveries"][0]["attempts"][0]["ok"] is True
    code, out = await cli(d, "incidents", "backup")
    assert code == 0 and f"{incident}  closed" in out


async def test_the_signed_ack_link_works_once_and_cannot_be_forged_or_reused(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  sync: {every: 1h}", server="  api_token_env: CW_TEST_TOKEN"),
                     env={"CW_TEST_TOKEN": "s3cret-token"})
    await d.ping("sync/fail")
    got = await receiver.wait_for(lambda b: b["event"] == "failed")
    path = got.body["links"]["ack"].replace("http://cw.example", "")
    # The API needs the token; the link does not.
    assert (await d.request("GET", "/api/v1/monitors"))[0] == 401
    status, page = await d.request("GET", path)
    assert status == 200 and "<form method=post" in page  # GET only shows the button
    forged = re.sub(r"/[^/]+$", "/AAAAAAAAAAAAAAAAAAAAAAAA", path)
    assert (await d.request("POST", forged))[0] == 403
    assert (await d.request("POST", path.replace(f"/ack/{got.body['incident']}/", "/ack/999/")))[0] == 403
    status, page = await d.request("POST", path)
    assert status == 200 and "Acknowledged" in page
    await d.ping("sync")
    await receiver.wait_for(lambda b: b["event"] == "recovered")
    status, page = await d.request("POST", path)
    assert status == 409 and "closed" in page  # replay after the incident closed


async def test_a_maintenance_window_holds_alerts_and_releases_those_still_failing(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    now = datetime.now(timezone.utc)
    start = now.replace(second=0, microsecond=0)
    duration = int((now - start).total_seconds()) + 8  # the window ends about 8 s from now
    window = (f"maintenance:\n  - {{monitors: [db, web], cron: '{start.minute} {start.hour} * * *', "
              f"duration: {duration}}}\n")
    d = await daemon(config(receiver, "  db: {every: 1h}\n  web: {every: 1h}") + window)
    d.signal(signal.SIGHUP)  # a reload keeps the windows
    await d.wait_for_log("configuration reloaded")
    await d.ping("db/fail")
    await d.ping("web/fail")
    await d.ping("web")  # web recovers inside the window: nothing is ever sent for it
    await asyncio.sleep(0.5)
    assert receiver.events() == []
    assert (await d.api("monitors/db"))["incident"]["held_for_maintenance"] is True
    got = await receiver.wait_for(lambda b: b["monitor"] == "db", timeout=15)
    assert "after its maintenance window" in got.body["summary"]
    window_end = start + timedelta(seconds=duration)
    assert got.at - window_end.timestamp() < 1.0
    await asyncio.sleep(0.5)
    assert receiver.events() == ["failed"]
    timeline = (await d.api("incidents?monitor=web"))["incidents"]
    assert len(timeline) == 1 and not timeline[0]["open"]  # recorded, closed, never sent


async def test_a_pause_raises_nothing_and_expires_on_its_own(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  etl: {every: 1h}"))
    code, out = await cli(d, "pause", "etl", "--for", "2s", "--reason", "migrating")
    assert code == 0 and "etl paused until" in out, out
    await d.ping("etl/fail")
    detail = await d.api("monitors/etl")
    assert detail["status"] == "paused" and detail["paused"]["reason"] == "migrating"
    await asyncio.sleep(3)
    assert (await d.api("monitors/etl"))["status"] != "paused"
    assert receiver.events() == []
    await d.ping("etl/fail")
    await receiver.wait_for(lambda b: b["event"] == "failed")
    code, out = await cli(d, "resume", "etl")
    assert code == 1 and "not paused" in out


async def test_resolve_closes_an_incident_by_hand(daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  gone: {every: 2s, grace: 0}"))
    await receiver.wait_for(lambda b: b["event"] == "missed")
    code, out = await cli(d, "resolve", "gone", "--note", "job retired")
    assert code == 0, out
    got = await receiver.wait_for(lambda b: b["event"] == "recovered")
    assert "resolved by hand by alice: job retired" in got.body["summary"]
    # The missed clock restarts from the resolve, not from the old deadline.
    detail = await d.api("monitors/gone")
    assert detail["incident"] is None


async def test_a_postmortem_of_a_real_incident_is_valid_markdown_with_every_section_and_a_chart(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  report: {every: 1h}"))
    for i in range(4):
        await d.ping(f"report/start?rid=ok{i}")
        await d.ping(f"report/0?rid=ok{i}", method="POST", data=f"rows: {100 + i}".encode())
    await d.ping("report/start?rid=bad")
    await d.ping("report/2?rid=bad", method="POST", data=b"psql: connection refused | <b>")
    got = await receiver.wait_for(lambda b: b["event"] == "failed")
    await cli(d, "ack", "report", "--note", "db restarting")
    await d.ping("report")
    await receiver.wait_for(lambda b: b["event"] == "recovered")
    code, text = await cli(d, "postmortem", str(got.body["incident"]))
    assert code == 0, text
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h2"]
    assert headings == SECTIONS
    assert any(t.type == "table_open" for t in tokens)
    svg = text[text.index("<svg"):text.index("</svg>") + len("</svg>")]
    chart = ET.fromstring(svg)  # well-formed XML
    assert len(chart.findall("{http://www.w3.org/2000/svg}rect")) == 5  # the runs with a start ping
    assert "psql: connection refused" in text and "acknowledged" in text and "db restarting" in text
    assert "\\| <b>" in text  # a pipe in job output does not break the runs table


async def test_a_monitor_named_with_digits_is_acknowledged_by_name(daemon: DaemonFactory,
                                                                  receiver: Receiver) -> None:
    d = await daemon(config(receiver, "  other: {every: 1h}\n  '2024': {every: 1h}"))
    await d.ping("other/fail")
    await d.ping("2024/fail")
    await receiver.wait_for(lambda b: b["monitor"] == "2024")
    code, out = await cli(d, "ack", "2024")
    assert code == 0, out
    assert (await d.api("monitors/2024"))["incident"]["acknowledged"] is True
    assert (await d.api("monitors/other"))["incident"]["acknowledged"] is False
    code, out = await cli(d, "ack", "1")  # no monitor '1': incident 1 (other's)
    assert code == 0 and (await d.api("monitors/other"))["incident"]["acknowledged"] is True
