"""The chat, push and paging channels against real HTTP servers on loopback
that speak each service's request shape, and the command channel against
small scripts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web

from cronwarden.channels import (DeliveryError, SendContext, command, discord, gotify, ntfy, pagerduty, pushover,
                                 render, slack, teams, telegram)
from cronwarden.config import ChannelConfig

TOKEN = "123456789:AAF-secret-token-xyz"
USER_KEY = "u-secret-user-key-42"
HOSTILE = "@everyone <!channel> <script>alert(1)</script> <@123456> ``` **bold** [x](http://evil)"


def alert(**over: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event": "failed", "monitor": "backup_db", "status": "down", "severity": "critical",
        "summary": "backup_db failed with exit status 2", "occurred_at": "2024-05-01T03:00:05Z",
        "incident": 7, "reminder": False, "expected_at": "2024-05-01T03:00:00Z",
        "last_success": "2024-04-30T03:00:04Z", "schedule": "cron '0 3 * * *' (UTC)", "host": "db1",
        "run": {"started_at": "2024-05-01T03:00:00Z", "ended_at": "2024-05-01T03:00:05Z", "duration_s": 5.1,
                "exit_status": 2, "metadata": {}},
        "log": "dumping...\npg_dump: error: connection refused\n",
        "links": {"dashboard": "http://cw.example/monitors/backup_db", "ack": "http://cw.example/ack/7?t=a&u=b",
                  "runbook": "https://wiki.example/backup"},
    }
    payload.update(over)
    return payload


def big_log() -> str:
    lines, size = [], 0
    while size < 100_000:
        line = f"{len(lines):05d} résumé ✓ step ok <fine> & `done`\n"
        lines.append(line)
        size += len(line.encode())
    return "".join(lines) + "THE-END of output\n"


def digest(n: int = 200) -> dict[str, Any]:
    return render.make_digest([alert(monitor=f"job{i:03d}", incident=i, summary=f"job{i:03d} missed its 03:00 run")
                               for i in range(n)])


# --------------------------------------------------------------------------
# A fake service: records each request, answers as told, or never.

@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.raw.decode(), keep_blank_values=True))


class Service:
    def __init__(self) -> None:
        self.url = ""
        self.seen: list[Seen] = []
        self.answer: tuple[int, dict[str, str], str] = (200, {}, "ok")
        self.hang = False
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.seen.append(Seen(request.method, request.path, dict(request.query), dict(request.headers), raw))
        if self.hang:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.release.wait(), 10)
            return web.Response(status=200)
        status, headers, body = self.answer
        if status >= 400 and not body:  # echo what we got, the way some services do
            body = (f"bad request to {request.path_qs} auth={request.headers.get('Authorization')} "
                    f"key={request.headers.get('X-Gotify-Key')} body={raw[:300].decode(errors='replace')}")
        return web.Response(status=status, headers=headers, text=body)

    @property
    def last(self) -> Seen:
        assert self.seen, "the service received nothing"
        return self.seen[-1]


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    svc = Service()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", svc.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    svc.url = f"http://127.0.0.1:{port}"
    yield svc
    svc.release.set()
    await runner.cleanup()


@pytest.fixture
async def ctx() -> AsyncIterator[SendContext]:
    async with aiohttp.ClientSession() as session:
        yield SendContext(session, time.time())


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CW_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("CW_TEST_USER", USER_KEY)


# --------------------------------------------------------------------------
# What each service requires, and where its people-facing text is.

def _walk_textruns(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["text"]] if node.get("type") in ("TextRun", "TextBlock") else []
        return found + [t for v in node.values() for t in _walk_textruns(v)]
    if isinstance(node, list):
        return [t for v in node for t in _walk_textruns(v)]
    return []


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Spec:
    name: str
    send: Callable[..., Any]
    channel: Callable[[str], tuple[ChannelConfig, dict[str, str]]]  # base URL -> config, env
    ok: int
    check: Callable[[Seen], None]  # the request shape for alert()
    text: Callable[[Seen], str]  # everything a person reads
    limits: Callable[[Seen], None]
    throttle: tuple[int, dict[str, str], str] = (429, {"Retry-After": "7"}, "slow down")

    def __str__(self) -> str:
        return self.name


# Slack -----------------------------------------------------------------------

def slack_channel(base: str) -> tuple[ChannelConfig, dict[str, str]]:
    return (ChannelConfig(name="chat", type="slack", url_env="CW_TEST_SLACK_URL", timeout=1),
            {"CW_TEST_SLACK_URL": f"{base}/services/T000/B000/{TOKEN}"})


def slack_check(seen: Seen) -> None:
    assert seen.method == "POST" and seen.path == f"/services/T000/B000/{TOKEN}"
    assert seen.headers["Content-Type"].startswith("application/json")
    body = seen.json()
    assert "backup_db" in body["text"]
    assert all(b["type"] in ("section", "context") for b in body["blocks"])
    text = slack_text(seen)
    for needed in ("db1", "failed", "critical", "2024-05-01T03:00:00Z", "2024-04-30T03:00:04Z", "5.1 s",
                   "*Exit status:* 2", "pg_dump: error", "<http://cw.example/monitors/backup_db|Dashboard>",
                   "<http://cw.example/ack/7?t=a&amp;u=b|Ack>", "Runbook>", "```"):
        assert needed in text


def slack_text(seen: Seen) -> str:
    body = seen.json()
    parts = [body["text"]]
    for block in body["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts += [e["text"] for e in block.get("elements", [])]
    return "\n".join(parts)


def slack_limits(seen: Seen) -> None:
    body = seen.json()
    assert len(body["text"]) <= 40_000 and len(body["blocks"]) <= 50
    for block in body["blocks"]:
        assert len(block.get("text", {}).get("text", "")) <= 3000
        assert all(len(e["text"]) <= 3000 for e in block.get("elements", []))


# Discord ---------------------------------------------------------------------

def discord_channel(base: str) -> tuple[ChannelConfig, dict[str, str]]:
    return (ChannelConfig(name="chat", type="discord", url_env="CW_TEST_DISCORD_URL", timeout=1),
            {"CW_TEST_DISCORD_URL": f"{base}/api/webhooks/1234/{TOKEN}"})


def discord_check(seen: Seen) -> None:
    assert seen.method == "POST" and seen.path == f"/api/webhooks/1234/{TOKEN}"
    body = seen.json()
    assert body["allowed_mentions"] == {"parse": []}
    embed = body["embeds"][0]
    assert "backup" in embed["title"] and embed["url"] == "http://cw.example/monitors/backup_db"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Host"] == "db1" and fields["Exit status"] == "2" and fields["Duration"] == "5.1 s"
    assert "Expected by" in fields and "Last success" in fields
    assert "pg_dump: error" in embed["description"] and "[Ack](http://cw.example/ack/7?t=a&u=b)" in embed["description"]


def discord_text(seen: Seen) -> str:
    body = seen.json()
    embed = body["embeds"][0]
    return "\n".join([body.get("content", ""), embed["title"], embed.get("description", ""),
                      *(f["value"] for f in embed.get("fields", []))])


def discord_limits(seen: Seen) -> None:
    body = seen.json()
    assert len(body.get("content", "")) <= 2000 and len(body["embeds"]) <= 10
    embed = body["embeds"][0]
    fields = embed.get("fields", [])
    assert len(embed["title"]) <= 256 and len(embed.get("description", "")) <= 4096 and len(fields) <= 25
    assert all(len(f["name"]) <= 256 and 0 < len(f["value"]) <= 1024 for f in fields)
    total = (len(embed["title"]) + len(embed.get("description", "")) + len(embed.get("footer", {}).get("text", ""))
             + sum(len(f["name"]) + len(f["value"]) for f in fields))
    assert total <= 6000


# Teams -----------------------------------------------------------------------

def teams_channel(base: str) -> tuple[ChannelConfig, dict[str, str]]:
    return (ChannelConfig(name="chat", type="teams", url_env="CW_TEST_TEAMS_URL", timeout=1),
            {"CW_TEST_TEAMS_URL": f"{base}/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig={TOKEN}"})


def teams_check(seen: Seen) -> None:
    assert seen.method == "POST" and seen.path == "/workflows/abc/triggers/manual/paths/invoke"
    assert seen.query["sig"] == TOKEN
    assert seen.headers["Content-Type"].startswith("application/json")
    body = seen.json()
    assert body["type"] == "message"
    attachment = body["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert {a["title"]: a["url"] for a in card["actions"]} == {
        "Dashboard": "http://cw.example/monitors/backup_db", "Ack": "http://cw.example/ack/7?t=a&u=b",
        "Runbook": "https://wiki.example/backup"}
    text = teams_text(seen)
    for needed in ("backup_db", "db1", "Expected by", "Last success", "5.1 s", "Exit status", "pg_dump: error"):
        assert needed in text
    # untrusted text only in TextRuns, which Teams does not read as markdown
    assert all(b["type"] == "RichTextBlock" for b in card["body"])


def teams_text(seen: Seen) -> str:
    return "\n".join(_walk_textruns(seen.json()))


def teams_limits(seen: Seen) -> None:
    assert len(seen.raw) <= 28_000


# Telegram --------------------------------------------------------------------

def telegram_channel(base: str) -> tuple[ChannelConfig, dict[str, str]]:
    return ChannelConfig(name="tg", type="telegram", url=base, token_env="CW_TEST_TOKEN", chat_id="-1001234",
                         timeout=1), {}


def telegram_check(seen: Seen) -> None:
    assert seen.method == "POST" and seen.path == f"/bot{TOKEN}/sendMessage"
    body = seen.json()
    assert body["chat_id"] == "-1001234" and body["parse_mode"] == "HTML"
    assert body["disable_web_page_preview"] is True
    for needed in ("<b>[CRITICAL] backup_db: failed</b>", "<b>Host:</b> db1", "<b>Expected by:</b>",
                   "<b>Last success:</b>", "5.1 s", "<b>Exit status:</b> 2", "<pre>dumping...",
                   '<a href="http://cw.example/ack/7?t=a&amp;u=b">Ack</a>'):
        assert needed in body["text"]


def telegram_limits(seen: Seen) -> None:
    assert 1 <= utf16(seen.json()["text"]) <= 4096


# ntfy ------------------------------------------------------------------------

def ntfy_channel(base: str) -> tuple[ChannelConfig, dict[str, str]]:
    return ChannelConfig(name="push", type="ntfy", url=base, topic="cron-alerts", token_env="CW_TEST_TOKEN",
                         timeout=1), {}


def ntfy_check(seen: Seen) -> None:
    assert seen.method == "POST" and seen.path == "/"
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    body = seen.json()
    assert body["topic"] == "cron-alerts" and body["priority"] == 5
    assert body["title"] == "[CRITICAL] backup_db: failed" and "rotating_light" in body["tags"]
    assert body["click"] == "http://cw.example/monitors/backup_db"
    assert [a["label"] for a in body["actions"]] == ["Dashboard", "Ack", "Runbook"]
    for needed in ("Host:", "db1", "Expected by:", "Last success:", "5.1 s", "Exit status:", "pg_dump: error"):
        assert needed in body["message"]


def ntfy_text(seen: Seen) -> str:
    body = seen.json()
    return body["title"] + "\n" + body["message"]


def ntfy_limits(seen: Seen) -> None:
    assert len(seen.json()["message"].encode()) <= 4096


# Pushover --------------------------------------------------------------------

def pushover_channel(base: str) -> tuple[ChannelConfig, dict[str, str]]:
    return ChannelConfig(name="push", type="pushover", url=base, token_env="CW_TEST_TOKEN",
                         user_key_env="CW_TEST_USER", timeout=1), {}


def pushover_check(seen: Seen) -> None:
    assert seen.method == "POST" and seen.path == "/1/messages.json"
    assert seen.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    form = seen.form()
    assert form["token"] == TOKEN and form["user"] == USER_KEY
    assert form["priority"] == "1" and form["html"] == "1"
    assert form["url"] == "http://cw.example/monitors/backup_db" and form["url_title"]
    assert form["title"] == "[CRITICAL] backup_db: failed"
    assert int(form["timestamp"]) == 1714532405
    for needed in ("<b>Host:</b> db1", "Expected by", "Last success", "5.1 s", "<b>Exit status:</b> 2",
                   "pg_dump: error", "Runbook</a>"):
        assert needed in form["message"]


def pushover_text(seen: Seen) -> str:
    form = seen.form()
    return form["title"] + "\n" + form["message"]


def pushover_limits(seen: Seen) -> None:
    form = seen.form()
    assert len(form["message"]) <= 1024 and len(form["title"]) <= 250
    assert len(form.get("url", "")) <= 512 and len(form.get("url_title", "")) <= 100


# Gotify ----------------------------------------------------------------------

def gotify_channel(base: str) -> tuple[ChannelConfig, dict[str, str]]:
    return ChannelConfig(name="push", type="gotify", url=base + "/gotify/", token_env="CW_TEST_TOKEN",
                         timeout=1), {}


def gotify_check(seen: Seen) -> None:
    assert seen.method == "POST" and seen.path == "/gotify/message"
    assert seen.headers["X-Gotify-Key"] == TOKEN
    body = seen.json()
    assert body["priority"] == 8 and body["title"] == "[CRITICAL] backup_db: failed"
    assert body["extras"]["client::display"] == {"contentType": "text/markdown"}
    assert body["extras"]["client::notification"]["click"]["url"] == "http://cw.example/monitors/backup_db"
    for needed in ("**Host:** db1", "**Expected by:**", "**Last success:**", "5\\.1 s", "**Exit status:** 2",
                   "```\ndumping...\npg_dump: error: connection refused\n```",
                   "[Ack](<http://cw.example/ack/7?t=a&u=b>)"):
        assert needed in body["message"]


def gotify_text(seen: Seen) -> str:
    body = seen.json()
    return body["title"] + "\n" + body["message"]


def gotify_limits(seen: Seen) -> None:
    assert len(seen.json()["message"]) <= gotify.MESSAGE


# PagerDuty -------------------------------------------------------------------

def pagerduty_channel(base: str) -> tuple[ChannelConfig, dict[str, str]]:
    return ChannelConfig(name="pager", type="pagerduty", url=base, routing_key_env="CW_TEST_TOKEN",
                         timeout=1), {}


def pagerduty_check(seen: Seen) -> None:
    assert seen.method == "POST" and seen.path == "/v2/enqueue"
    body = seen.json()
    assert body["routing_key"] == TOKEN and body["event_action"] == "trigger"
    assert body["dedup_key"] == "cronwarden-7"
    p = body["payload"]
    assert p["summary"] == "backup_db failed with exit status 2" and p["source"] == "db1"
    assert p["severity"] == "critical" and p["component"] == "backup_db" and p["class"] == "failed"
    assert p["timestamp"] == "2024-05-01T03:00:05Z"
    details = p["custom_details"]
    assert details["run"]["exit_status"] == 2 and details["expected_at"] == "2024-05-01T03:00:00Z"
    assert details["last_success"] == "2024-04-30T03:00:04Z" and "pg_dump: error" in details["log"]
    assert {"href": "http://cw.example/ack/7?t=a&u=b", "text": "Ack"} in body["links"]
    assert body["client"] == "cronwarden" and body["client_url"] == "http://cw.example/monitors/backup_db"


def pagerduty_text(seen: Seen) -> str:
    p = seen.json()["payload"]
    return p["summary"] + "\n" + p["custom_details"].get("log", "")


def pagerduty_limits(seen: Seen) -> None:
    assert len(seen.json()["payload"]["summary"]) <= 1024 and len(seen.raw) <= 512 * 1024


SPECS = [
    Spec("slack", slack.send, slack_channel, 200, slack_check, slack_text, slack_limits),
    Spec("discord", discord.send, discord_channel, 204, discord_check, discord_text, discord_limits,
         throttle=(429, {"Retry-After": "7"}, '{"message": "You are being rate limited.", "retry_after": 7.0}')),
    Spec("teams", teams.send, teams_channel, 202, teams_check, teams_text, teams_limits),
    Spec("telegram", telegram.send, telegram_channel, 200, telegram_check, lambda s: s.json()["text"],
         telegram_limits,
         throttle=(429, {}, '{"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7",'
                            ' "parameters": {"retry_after": 7}}')),
    Spec("ntfy", ntfy.send, ntfy_channel, 200, ntfy_check, ntfy_text, ntfy_limits),
    Spec("pushover", pushover.send, pushover_channel, 200, pushover_check, pushover_text, pushover_limits),
    Spec("gotify", gotify.send, gotify_channel, 200, gotify_check, gotify_text, gotify_limits),
    Spec("pagerduty", pagerduty.send, pagerduty_channel, 202, pagerduty_check, pagerduty_text, pagerduty_limits),
]
by_spec = pytest.mark.parametrize("spec", SPECS, ids=str)


async def deliver(spec: Spec, service: Service, ctx: SendContext, payload: dict[str, Any],
                  monkeypatch: pytest.MonkeyPatch) -> int | None:
    channel, env = spec.channel(service.url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return await spec.send(channel, payload, "dlv-1", ctx)


async def failure(spec: Spec, service: Service, ctx: SendContext, payload: dict[str, Any],
                  monkeypatch: pytest.MonkeyPatch) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await deliver(spec, service, ctx, payload, monkeypatch)
    assert TOKEN not in str(info.value) and USER_KEY not in str(info.value)
    assert TOKEN not in ctx.answer and USER_KEY not in ctx.answer
    return info.value


# --------------------------------------------------------------------------

@by_spec
async def test_delivers_in_the_service_request_shape(spec: Spec, service: Service, ctx: SendContext,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    service.answer = (spec.ok, {}, "" if spec.ok == 204 else '{"ok": true}')
    assert await deliver(spec, service, ctx, alert(), monkeypatch) == spec.ok
    assert len(service.seen) == 1
    spec.check(service.last)
    spec.limits(service.last)


@by_spec
async def test_throttled_is_transient_with_the_wait_asked(spec: Spec, service: Service, ctx: SendContext,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    service.answer = spec.throttle
    error = await failure(spec, service, ctx, alert(), monkeypatch)
    assert error.status == 429 and error.permanent is False and error.retry_after == 7


@by_spec
async def test_server_error_is_transient(spec: Spec, service: Service, ctx: SendContext,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    service.answer = (500, {}, "")
    error = await failure(spec, service, ctx, alert(), monkeypatch)
    assert error.status == 500 and error.permanent is False


@by_spec
@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_permanent_and_never_show_the_secret(
        spec: Spec, status: int, service: Service, ctx: SendContext, monkeypatch: pytest.MonkeyPatch) -> None:
    service.answer = (status, {}, "")  # the fake echoes the request, secrets included
    error = await failure(spec, service, ctx, alert(), monkeypatch)
    assert error.status == status and error.permanent is True
    assert "***" in str(error)  # the echo held the secret, now redacted


async def test_no_answer_is_transient_for_every_service(service: Service, ctx: SendContext,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    service.hang = True
    started = time.monotonic()
    results = await asyncio.gather(*(deliver(spec, service, ctx, alert(), monkeypatch) for spec in SPECS),
                                   return_exceptions=True)
    assert time.monotonic() - started < 4
    assert len(service.seen) == len(SPECS)
    for spec, result in zip(SPECS, results):
        assert isinstance(result, DeliveryError), (spec.name, result)
        assert result.permanent is False and "within 1s" in str(result), spec.name
        assert TOKEN not in str(result)


@by_spec
async def test_job_output_is_defused_and_escaped(spec: Spec, service: Service, ctx: SendContext,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    service.answer = (spec.ok, {}, "")
    await deliver(spec, service, ctx, alert(log=f"step 1\n{HOSTILE}\n", summary=f"failed: {HOSTILE}"), monkeypatch)
    text = spec.text(service.last)
    assert "@everyone" not in text and "<!channel>" not in text and "<@123456>" not in text
    assert "@\u200beveryone" in text  # defused, not dropped
    if spec.name in ("slack", "telegram", "pushover"):  # markup where < starts a tag or link: escaped
        assert "<script>" not in text and "&lt;script&gt;" in text
    if spec.name == "slack":
        code = slack_text(service.last).split("```")
        assert len(code) == 3 and "`\u200b`\u200b`" in code[1]  # the output cannot close its code block
    if spec.name == "discord":
        body = service.last.json()
        assert body["allowed_mentions"] == {"parse": []}
        assert "\\*\\*bold\\*\\*" in body["embeds"][0]["description"]  # in the summary: escaped
        assert "\\[x\\]\\(http://evil\\)" in body["embeds"][0]["description"]
        assert body["embeds"][0]["description"].count("```") == 2
    if spec.name == "gotify":
        message = service.last.json()["message"]
        assert "\\*\\*bold\\*\\*" in message and "\\[x\\]\\(http\\:" in message  # summary escaped
        assert "\n````\nstep 1\n" in message and message.endswith("\n````")  # output fenced past its ```
    if spec.name == "teams":
        card = service.last.json()["attachments"][0]["content"]
        blocks = [b for b in card["body"] if b["type"] != "RichTextBlock"]
        assert not blocks  # no markdown TextBlock holds untrusted text


@by_spec
async def test_100kb_of_output_is_cut_to_the_service_limit(spec: Spec, service: Service, ctx: SendContext,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    service.answer = (spec.ok, {}, "")
    await deliver(spec, service, ctx, alert(log=big_log(), summary="x" * 5000), monkeypatch)
    spec.limits(service.last)
    text = spec.text(service.last)
    assert "THE-END of output" in text  # the tail is what is kept
    assert "00000 résumé" not in text


@by_spec
async def test_digest_of_200_alerts_fits_and_counts_what_is_left_out(
        spec: Spec, service: Service, ctx: SendContext, monkeypatch: pytest.MonkeyPatch) -> None:
    service.answer = (spec.ok, {}, "")
    if spec.name == "pagerduty":
        error = await failure(spec, service, ctx, digest(), monkeypatch)
        assert error.permanent is True and not service.seen
        return
    await deliver(spec, service, ctx, digest(), monkeypatch)
    spec.limits(service.last)
    text = spec.text(service.last)
    shown = set(re.findall(r"job\d{3} missed", text))
    more = re.search(r"and (\d+) more", text)
    left_out = int(more.group(1)) if more else 0
    assert "job000 missed" in text and len(shown) >= 5
    assert len(shown) + left_out == 200


# --------------------------------------------------------------------------
# Service specifics

async def test_pagerduty_reminder_triggers_and_recovery_resolves_the_same_incident(
        service: Service, ctx: SendContext, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SPECS[-1]
    service.answer = (202, {}, '{"status": "success", "dedup_key": "cronwarden-7"}')
    await deliver(spec, service, ctx, alert(reminder=True, severity="warning"), monkeypatch)
    reminder = service.last.json()
    assert reminder["event_action"] == "trigger" and reminder["dedup_key"] == "cronwarden-7"
    assert reminder["payload"]["severity"] == "warning"
    await deliver(spec, service, ctx, alert(severity="info", event="missed"), monkeypatch)
    assert service.last.json()["payload"]["severity"] == "info"
    await deliver(spec, service, ctx, alert(event="recovered", status="up", severity="info"), monkeypatch)
    resolve = service.last.json()
    assert resolve == {"routing_key": TOKEN, "dedup_key": "cronwarden-7", "event_action": "resolve"}


@pytest.mark.parametrize("severity,event,priority", [("critical", "failed", 5), ("warning", "missed", 4),
                                                     ("info", "slow", 3), ("critical", "recovered", 3)])
async def test_ntfy_priority(severity: str, event: str, priority: int, service: Service, ctx: SendContext,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    channel = ChannelConfig(name="push", type="ntfy", url=service.url, topic="t", timeout=1)
    await ntfy.send(channel, alert(severity=severity, event=event), "d", ctx)
    body = service.last.json()
    assert body["priority"] == priority and "Authorization" not in service.last.headers
    assert ("white_check_mark" in body["tags"]) == (event == "recovered")


@pytest.mark.parametrize("severity,gotify_priority,pushover_priority",
                         [("critical", 8, "1"), ("warning", 5, "0"), ("info", 2, "-1")])
async def test_gotify_and_pushover_priorities(severity: str, gotify_priority: int, pushover_priority: str,
                                              service: Service, ctx: SendContext,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    await deliver(SPECS[6], service, ctx, alert(severity=severity), monkeypatch)
    assert service.last.json()["priority"] == gotify_priority
    await deliver(SPECS[5], service, ctx, alert(severity=severity), monkeypatch)
    assert service.last.form()["priority"] == pushover_priority


async def test_missing_secret_is_transient_and_sends_nothing(service: Service, ctx: SendContext,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CW_TEST_TOKEN")
    for spec in (SPECS[3], SPECS[5], SPECS[6], SPECS[7]):
        with pytest.raises(DeliveryError, match="CW_TEST_TOKEN") as info:
            await deliver(spec, service, ctx, alert(), monkeypatch)
        assert info.value.permanent is False
    assert not service.seen


# --------------------------------------------------------------------------
# command

def script(tmp_path: Path, name: str, body: str, executable: bool = True) -> Path:
    path = tmp_path / name
    path.write_text(body)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def cmd_channel(*argv: str | Path, timeout: int = 5) -> ChannelConfig:
    return ChannelConfig(name="run", type="command", command=tuple(str(a) for a in argv), timeout=timeout)


async def test_command_gets_the_alert_json_and_environment(tmp_path: Path, ctx: SendContext) -> None:
    prog = script(tmp_path, "notify.sh", '#!/bin/sh\ncat > "$1"\nenv | grep "^CRONWARDEN_" | sort > "$1.env"\n')
    out = tmp_path / "got.json"
    payload = alert(log=HOSTILE)
    assert await command.send(cmd_channel(prog, out), payload, "dlv-42", ctx) is None
    assert json.loads(out.read_text()) == payload
    env = dict(line.split("=", 1) for line in (tmp_path / "got.json.env").read_text().splitlines())
    assert env["CRONWARDEN_EVENT"] == "failed" and env["CRONWARDEN_MONITOR"] == "backup_db"
    assert env["CRONWARDEN_DELIVERY_ID"] == "dlv-42"


async def test_command_that_ignores_a_large_stdin_still_succeeds(tmp_path: Path, ctx: SendContext) -> None:
    prog = script(tmp_path, "quiet.sh", "#!/bin/sh\nexit 0\n")
    assert await command.send(cmd_channel(prog), alert(log=big_log()), "d", ctx) is None


async def test_command_failure_is_transient_with_its_last_stderr_lines(tmp_path: Path, ctx: SendContext) -> None:
    prog = script(tmp_path, "fail.py", "#!/usr/bin/env python3\nimport sys\nsys.stdin.read()\n"
                                       "for i in range(50): print(f'noise {i}', file=sys.stderr)\n"
                                       "print('boom: disk full', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(DeliveryError) as info:
        await command.send(cmd_channel(prog), alert(), "d", ctx)
    error = info.value
    assert error.permanent is False and "status 3" in str(error)
    assert "boom: disk full" in str(error) and "noise 49" in str(error) and "noise 1 " not in str(error)


async def test_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path, ctx: SendContext) -> None:
    pids = tmp_path / "pids"
    prog = script(tmp_path, "hang.sh", f'#!/bin/sh\nsleep 30 &\necho $! > "{pids}"\nwait\n')
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="within 1s") as info:
        await command.send(cmd_channel(prog, timeout=1), alert(), "d", ctx)
    assert info.value.permanent is False
    assert time.monotonic() - started < 4
    child = int(pids.read_text())
    for _ in range(50):  # the backgrounded sleep went with the group (gone, or a zombie awaiting init)
        stat_file = Path(f"/proc/{child}/stat")
        if not stat_file.exists() or stat_file.read_text().split(")")[1].split()[0] == "Z":
            break
        await asyncio.sleep(0.02)
    else:
        os.kill(child, 9)
        pytest.fail("the command's child survived the timeout")


async def test_command_that_cannot_start_is_permanent(tmp_path: Path, ctx: SendContext) -> None:
    with pytest.raises(DeliveryError, match="not found") as info:
        await command.send(cmd_channel(tmp_path / "nope"), alert(), "d", ctx)
    assert info.value.permanent is True
    prog = script(tmp_path, "notexec.sh", "#!/bin/sh\nexit 0\n", executable=False)
    with pytest.raises(DeliveryError, match="not executable") as info:
        await command.send(cmd_channel(prog), alert(), "d", ctx)
    assert info.value.permanent is True
