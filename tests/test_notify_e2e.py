"""End to end: routing, escalation, storm control, outages and test-alert, with
the real daemon and real receivers on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from conftest import DaemonFactory, Receiver, ts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hooks(receiver: Receiver, *names: str, window: str = "0") -> str:
    return "".join(f"  {n}: {{type: webhook, url: '{receiver.url}?ch={n}', timeout: 3s, group_window: {window}}}\n"
                   for n in names)


def base(channels: str, monitors: str, extra: str = "") -> str:
    return (f"server: {{listen: '127.0.0.1:0', database: ./cw.db}}\n{extra}"
            f"channels:\n{channels}monitors:\n{monitors}")


async def test_monitors_without_channels_follow_the_route_for_their_severity(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(base(hooks(receiver, "ops", "pager"),
                          "  a: {every: 1h, severity: critical}\n  b: {every: 1h}\n"
                          "  c: {every: 1h, severity: critical, channels: [ops]}\n",
                          extra="defaults: {channels: [ops]}\nroutes: {critical: [pager]}\n"))
    for name in ("a", "b", "c"):
        await d.ping(f"{name}/fail")
    await receiver.wait_for(lambda b: b["monitor"] == "c")
    await receiver.wait_for(lambda b: b["monitor"] == "a")
    await receiver.wait_for(lambda b: b["monitor"] == "b")
    await asyncio.sleep(0.3)
    routed = sorted((g.body["monitor"], g.headers["webhook-id"]) for g in receiver.got)
    assert len(routed) == 3
    channels = {}
    for g in receiver.got:
        channels[g.body["monitor"]] = g.url_channel
    assert channels == {"a": "pager", "b": "ops", "c": "ops"}



async def test_an_unacknowledged_incident_escalates_and_the_recovery_reaches_everyone_told(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(base(hooks(receiver, "ops", "pager"),
                          "  db: {every: 1h, repeat: 0, channels: [ops], escalate: [{after: 2s, channels: [pager]}]}\n"))
    await d.ping("db/fail")
    first = await receiver.wait_for(lambda b: b["event"] == "failed")
    escalated = await receiver.wait_for(lambda b: b.get("escalation") == 1)
    assert escalated.url_channel == "pager"
    # Sent at the step's time (opened_at + 2 s; the first alert's receipt can trail its
    # opened_at by more than the escalation's trails its time), and not much later.
    opened = ts(first.body["occurred_at"])
    assert ts(escalated.body["occurred_at"]) == pytest.approx(opened + 2, abs=0.01)
    assert 2 <= escalated.at - opened < 3.5
    await d.ping("db")
    await receiver.wait_for(lambda b: b["event"] == "recovered")
    await asyncio.sleep(0.5)
    recovered = sorted(g.url_channel for g in receiver.got if g.body["event"] == "recovered")
    assert recovered == ["ops", "pager"]


async def test_a_storm_of_200_failures_reaches_each_channel_as_a_handful_of_digests(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    monitors = "".join(f"  job{i:03d}: {{every: 1h}}\n" for i in range(200))
    d = await daemon(base(hooks(receiver, "ops", "team", window="2s"), monitors,
                          extra="defaults: {channels: [ops, team]}\n"))
    started = time.time()
    await asyncio.gather(*(d.ping(f"job{i:03d}/fail") for i in range(200)))

    def listed(channel: str) -> set[str]:
        names = set()
        for g in receiver.got:
            if g.url_channel == channel:
                alerts = g.body["alerts"] if g.body["event"] == "digest" else [g.body]
                names |= {a["monitor"] for a in alerts}
        return names

    deadline = time.monotonic() + 30
    while (len(listed("ops")) < 200 or len(listed("team")) < 200) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    for channel in ("ops", "team"):
        messages = [g for g in receiver.got if g.url_channel == channel]
        assert len(listed(channel)) == 200, channel
        assert 2 <= len(messages) <= 6, [m.body["event"] for m in messages]
        # What is due when a burst starts goes out at once (alone, or as a digest if
        # several alerts were committed together); the rest waits at most one window.
        assert messages[0].at - started < 1.5
        assert messages[-1].at - started < 2 + 3
        assert any(m.body["event"] == "digest" for m in messages)


async def test_alerts_queued_during_an_outage_survive_kill_9_and_arrive_exactly_once(
        daemon: DaemonFactory, tmp_path: Path) -> None:
    """A webhook receiver and an SMTP server are both down; the daemon is killed
    meanwhile; when both come back every alert arrives once on each."""
    import email
    import email.policy

    from aiosmtpd.smtp import SMTP

    hook_port, smtp_port = free_port(), free_port()
    got: list[dict] = []  # type: ignore[type-arg]
    ids: list[str] = []
    mails: list[email.message.EmailMessage] = []

    async def handle(request: web.Request) -> web.Response:
        got.append(await request.json())
        ids.append(request.headers["webhook-id"])
        return web.Response(text="ok")

    class Inbox:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            mails.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
            return "250 OK"

    channels = (f"  hook: {{type: webhook, url: 'http://127.0.0.1:{hook_port}/h', timeout: 2s, group_window: 0}}\n"
                f"  mail: {{type: email, to: [ops@example.com], from: cw@example.com, timeout: 2s, group_window: 0,"
                f" smtp: {{host: 127.0.0.1, port: {smtp_port}}}}}\n")
    d = await daemon(base(channels, "".join(f"  m{i}: {{every: 1h, channels: [hook, mail]}}\n" for i in range(5))))
    for i in range(5):
        await d.ping(f"m{i}/fail")  # both targets are down: every delivery is refused
    await d.wait_for_log("to channel hook failed .*retry in")
    await d.wait_for_log("to channel mail failed .*retry in")
    await d.kill9()
    await d.start()
    app = web.Application()
    app.router.add_post("/h", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(lambda: SMTP(Inbox(), hostname="mx.test", loop=loop), "127.0.0.1", smtp_port)
    try:
        deadline = time.monotonic() + 45
        while (len(got) < 5 or len(mails) < 5) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        assert sorted(b["monitor"] for b in got) == [f"m{i}" for i in range(5)]
        assert len(set(ids)) == len(ids) == 5
        assert sorted(str(m["Subject"]).split()[1].rstrip(":") for m in mails) == [f"m{i}" for i in range(5)]
        assert len({m["Message-ID"] for m in mails}) == 5
    finally:
        smtp.close()
        await smtp.wait_closed()
        await runner.cleanup()


async def test_test_alert_sends_through_the_real_path_and_prints_the_answer(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    d = await daemon(base(hooks(receiver, "ops") + "  dead: {type: webhook, url: 'http://127.0.0.1:9/x', timeout: 1s}\n",
                          "  a: {every: 1h}\n"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronwarden", "test-alert", "ops", "--config", str(d.config_path), "--url", d.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "delivered" in out.decode() and "200" in out.decode()
    got = await receiver.wait_for(lambda b: b["event"] == "test")
    assert "if you can read this" in got.body["summary"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronwarden", "test-alert", "dead", "--config", str(d.config_path), "--url", d.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 1
    assert "cannot reach" in (out + err).decode()


async def test_the_incident_api_shows_the_timeline_and_every_delivery_attempt(
        daemon: DaemonFactory, receiver: Receiver) -> None:
    receiver.status = 503
    d = await daemon(base(hooks(receiver, "ops"), "  a: {every: 1h, channels: [ops]}\n"))
    await d.ping("a/2", method="POST", data=b"boom")
    await receiver.wait_for(lambda b: b["event"] == "failed")
    receiver.status = 200
    await d.ping("a")
    await receiver.wait_for(lambda b: b["event"] == "recovered", timeout=20)
    await asyncio.sleep(0.3)
    listing = await d.api("incidents?monitor=a")
    assert [i["event"] for i in listing["incidents"]] == ["failed"]
    incident = await d.api(f"incidents/{listing['incidents'][0]['id']}")
    assert [e["kind"] for e in incident["timeline"]] == ["failed", "recovered"]
    assert not incident["open"]
    first = incident["deliveries"][0]
    assert first["event"] == "failed" and first["state"] == "sent"
    assert [a["status"] for a in first["attempts"]] == [503, 200]
    assert json.dumps(incident)  # plain JSON
