"""The webhook channel against a real aiohttp receiver on a loopback port.

Signatures are checked with ``standardwebhooks``, the reference
implementation of the scheme, not with our own code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from cronwarden.channels import DeliveryError, SendContext
from cronwarden.channels.render import make_digest
from cronwarden.channels.webhook import send
from cronwarden.config import ChannelConfig

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Hit:
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """Records raw requests; `answer` decides the response (200 "ok" by default)."""

    base: str = ""
    hits: list[Hit] = field(default_factory=list)
    answer: Handler | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)  # frees handlers that hang

    @property
    def url(self) -> str:
        return self.base + "/hook"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(Hit(request.path, await request.read(), dict(request.headers)))
        if self.answer is not None:
            return await self.answer(request)
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.base = f"http://127.0.0.1:{port}"
    yield rec
    rec.release.set()
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CW_TEST_HOOK_SECRET", SECRET)
    return SECRET


def channel(url: str, **kw: Any) -> ChannelConfig:
    return ChannelConfig(name="hook", type="webhook", url=url, **kw)


def alert(**kw: Any) -> dict[str, Any]:
    payload = {
        "event": "failed", "monitor": "nightly-backup", "status": "down", "severity": "critical",
        "summary": "nightly-backup failed with exit status 2", "occurred_at": "2024-05-01T02:03:04Z",
        "incident": 7, "run": {"started_at": "2024-05-01T02:00:00Z", "ended_at": "2024-05-01T02:03:04Z",
                               "duration_s": 184.0, "exit_status": 2, "metadata": {}},
        "log": "tar: /data: Cannot open: Permission denied\n", "host": "db1",
        "links": {"dashboard": "http://cw.example/monitors/nightly-backup"},
    }
    payload.update(kw)
    return payload


async def deliver(session: aiohttp.ClientSession, chan: ChannelConfig, payload: dict[str, Any],
                  delivery_id: str = "cw-1", now: float | None = None) -> tuple[int, SendContext]:
    ctx = SendContext(session, time.time() if now is None else now)
    return await send(chan, payload, delivery_id, ctx), ctx


async def test_signature_verifies_with_the_reference_implementation(receiver, session, secret):
    status, ctx = await deliver(session, channel(receiver.url, secret_env="CW_TEST_HOOK_SECRET"), alert(), "cw-41")

    assert status == 200 and ctx.answer == "200 ok"
    [hit] = receiver.hits
    assert hit.headers["webhook-id"] == "cw-41"
    assert hit.headers["Content-Type"] == "application/json"
    assert Webhook(secret).verify(hit.body, hit.headers) == alert()


async def test_a_tampered_body_or_another_secret_fails_verification(receiver, session, secret):
    await deliver(session, channel(receiver.url, secret_env="CW_TEST_HOOK_SECRET"), alert())
    [hit] = receiver.hits

    tampered = hit.body.replace(b"exit status 2", b"exit status 0")
    assert tampered != hit.body
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, hit.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another secret").decode()).verify(hit.body, hit.headers)


async def test_a_secret_without_whsec_prefix_is_used_as_raw_bytes(receiver, session, monkeypatch):
    monkeypatch.setenv("CW_TEST_HOOK_SECRET", "plain-shared-secret")
    await deliver(session, channel(receiver.url, secret_env="CW_TEST_HOOK_SECRET"), alert())
    [hit] = receiver.hits
    assert Webhook(b"plain-shared-secret").verify(hit.body, hit.headers) == alert()


async def test_a_retry_carries_the_same_webhook_id_and_a_fresh_signature(receiver, session, secret):
    chan = channel(receiver.url, secret_env="CW_TEST_HOOK_SECRET")
    now = time.time()
    await deliver(session, chan, alert(), "cw-9", now - 60)
    await deliver(session, chan, alert(), "cw-9", now)

    first, second = receiver.hits
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "cw-9"
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 60
    for hit in (first, second):
        Webhook(secret).verify(hit.body, hit.headers)


async def test_without_secret_env_no_signature_is_sent(receiver, session):
    await deliver(session, channel(receiver.url), alert())
    [hit] = receiver.hits
    assert "webhook-signature" not in hit.headers
    assert hit.headers["webhook-id"] == "cw-1"
    assert json.loads(hit.body) == alert()


async def test_an_unset_secret_variable_is_transient_and_sends_nothing(receiver, session, monkeypatch):
    monkeypatch.delenv("CW_TEST_HOOK_SECRET", raising=False)
    with pytest.raises(DeliveryError, match="CW_TEST_HOOK_SECRET") as info:
        await deliver(session, channel(receiver.url, secret_env="CW_TEST_HOOK_SECRET"), alert())
    assert not info.value.permanent
    assert receiver.hits == []


async def test_a_digest_is_sent_as_is(receiver, session, secret):
    digest = make_digest([alert(), alert(monitor="queue-worker", event="missed", severity="warning")])
    await deliver(session, channel(receiver.url, secret_env="CW_TEST_HOOK_SECRET"), digest)
    [hit] = receiver.hits
    body = Webhook(secret).verify(hit.body, hit.headers)
    assert body == digest
    assert body["event"] == "digest" and len(body["alerts"]) == 2


@pytest.mark.parametrize("retry_after, expected", [("120", 120.0), ("date+90", 90.0)])
async def test_429_with_retry_after_is_transient_and_says_how_long(receiver, session, retry_after, expected):
    now = float(int(time.time()))
    header = formatdate(now + 90, usegmt=True) if retry_after == "date+90" else retry_after

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=429, text="slow down", headers={"Retry-After": header})

    receiver.answer = busy
    with pytest.raises(DeliveryError) as info:
        await deliver(session, channel(receiver.url), alert(), now=now)
    assert not info.value.permanent
    assert info.value.status == 429
    assert info.value.retry_after == pytest.approx(expected, abs=1)


@pytest.mark.parametrize("status, permanent", [(500, False), (503, False), (404, True), (410, True)])
async def test_server_errors_are_transient_and_gone_endpoints_permanent(receiver, session, status, permanent):
    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=status, text="nope")

    receiver.answer = fail
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as info:
        await deliver(session, channel(receiver.url), alert())
    assert info.value.permanent is permanent
    assert info.value.status == status
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [301, 302])
async def test_a_redirect_is_not_followed_and_names_the_location(receiver, session, status):
    async def moved(request: web.Request) -> web.Response:
        if request.path == "/moved":
            return web.Response(text="should not be reached")
        return web.Response(status=status, headers={"Location": receiver.base + "/moved"})

    receiver.answer = moved
    with pytest.raises(DeliveryError) as info:
        await deliver(session, channel(receiver.url), alert())
    assert info.value.permanent and info.value.status == status
    assert receiver.base + "/moved" in str(info.value)
    assert [hit.path for hit in receiver.hits] == ["/hook"]


async def test_a_receiver_that_never_answers_times_out_as_transient(receiver, session):
    async def hang(request: web.Request) -> web.Response:
        await receiver.release.wait()
        return web.Response(text="too late")

    receiver.answer = hang
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="within 1s") as info:
        await deliver(session, channel(receiver.url, timeout=1), alert())
    elapsed = time.monotonic() - started
    assert not info.value.permanent
    assert 0.9 <= elapsed < 2.0


async def test_a_secret_url_from_url_env_is_used_and_kept_out_of_errors(receiver, session, monkeypatch):
    secret_url = receiver.base + "/hooks/T0KEN-s3cr3t-path"
    monkeypatch.setenv("CW_TEST_HOOK_URL", secret_url)

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=410, text="gone")

    receiver.answer = gone
    with pytest.raises(DeliveryError) as info:
        await deliver(session, ChannelConfig(name="hook", type="webhook", url_env="CW_TEST_HOOK_URL"), alert())
    assert receiver.hits[0].path == "/hooks/T0KEN-s3cr3t-path"
    assert info.value.permanent
    assert "T0KEN" not in str(info.value)


async def test_a_malformed_whsec_secret_is_reported_without_its_value(receiver, session, monkeypatch):
    monkeypatch.setenv("CW_TEST_HOOK_SECRET", "whsec_not*base64!")
    with pytest.raises(DeliveryError, match="CW_TEST_HOOK_SECRET") as info:
        await deliver(session, channel(receiver.url, secret_env="CW_TEST_HOOK_SECRET"), alert())
    assert "not*base64" not in str(info.value)
    assert receiver.hits == []
