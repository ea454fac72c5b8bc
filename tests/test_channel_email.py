"""The email channel against a real SMTP server (aiosmtpd) on a loopback port.

Certificates come from ``trustme``; the client verifies them: the test CA is
made trusted through ``SSL_CERT_FILE``, which the default TLS context reads
(the config has no CA-file key yet).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from cronwarden.channels import DeliveryError, SendContext
from cronwarden.channels.email import send
from cronwarden.channels.render import make_digest
from cronwarden.config import ChannelConfig

PASSWORD = "correct horse battery staple"


@dataclass
class Inbox:
    """aiosmtpd handler: keeps what it accepts; `refuse` maps a recipient to a reply."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued as 4F2A"
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply.startswith("250"):
            self.envelopes.append(envelope)
            assert isinstance(envelope.original_content, bytes)
            self.messages.append(email.message_from_bytes(envelope.original_content,
                                                          policy=email.policy.default))  # type: ignore[arg-type]
        return self.data_reply

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        ok = auth_data.login == b"alerts" and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535


@dataclass
class Mailserver:
    inbox: Inbox
    port: int


Start = Callable[..., Awaitable[Mailserver]]


@pytest.fixture
async def mailserver() -> AsyncIterator[Start]:
    """`await mailserver(**smtp_options, implicit_tls=ctx)` starts aiosmtpd on 127.0.0.1:<free port>."""
    servers: list[asyncio.Server] = []
    loop = asyncio.get_running_loop()

    async def start(implicit_tls: ssl.SSLContext | None = None, **options: Any) -> Mailserver:
        inbox = Inbox()
        if options.pop("authenticate", False):
            options.update(authenticator=inbox.authenticate, auth_required=True)
        server = await loop.create_server(
            lambda: SMTP(inbox, hostname="mx.test", loop=loop, **options), "127.0.0.1", 0, ssl=implicit_tls)
        servers.append(server)
        return Mailserver(inbox, server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def trust_test_ca(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:  # SendContext wants one; SMTP does not use it
        yield client


def channel(port: int, **kw: Any) -> ChannelConfig:
    options: dict[str, Any] = {"to": ("ops@example.com",), "sender": "cronwarden@example.com",
                               "smtp_host": "127.0.0.1", "smtp_port": port, "timeout": 5}
    options.update(kw)
    return ChannelConfig(name="mail", type="email", **options)


def alert(**kw: Any) -> dict[str, Any]:
    payload = {
        "event": "failed", "monitor": "nightly-backup", "status": "down", "severity": "critical",
        "summary": "nightly-backup failed with exit status 2", "occurred_at": "2024-05-01T02:03:04Z",
        "expected_at": None, "last_success": "2024-04-30T02:04:00Z", "incident": 7, "host": "db1",
        "run": {"started_at": "2024-05-01T02:00:00Z", "ended_at": "2024-05-01T02:03:04Z",
                "duration_s": 184.0, "exit_status": 2, "metadata": {}},
        "log": "copying /data\n<script>alert('x')</script> & \"quoted\" <b>bold</b>\nERROR: disk full\n",
        "links": {"dashboard": "http://cw.example/monitors/nightly-backup?a=1&b=2",
                  "runbook": "https://wiki.example/runbooks/backup"},
    }
    payload.update(kw)
    return payload


async def deliver(session: aiohttp.ClientSession, chan: ChannelConfig, payload: dict[str, Any],
                  delivery_id: str = "cw-7") -> SendContext:
    ctx = SendContext(session, time.time())
    assert await send(chan, payload, delivery_id, ctx) is None
    return ctx


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None and rich is not None
    return plain.get_content().replace("\r\n", "\n"), rich.get_content().replace("\r\n", "\n")


async def test_an_alert_arrives_as_plain_text_and_escaped_html(mailserver, session):
    server = await mailserver()
    ctx = await deliver(session, channel(server.port), alert(), "cw-7")

    [message] = server.inbox.messages
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "[CRITICAL] nightly-backup: failed"
    assert message["Message-ID"] == "<cw-7@cronwarden>"
    assert message["From"] == "cronwarden@example.com" and message["To"] == "ops@example.com"
    assert abs(parsedate_to_datetime(message["Date"]).timestamp() - ctx.now) < 2
    assert server.inbox.envelopes[0].rcpt_tos == ["ops@example.com"]
    assert ctx.answer == "250 2.0.0 Ok: queued as 4F2A"

    plain, rich = parts(message)
    assert "ERROR: disk full" in plain and "Last success: 2024-04-30T02:04:00Z" in plain
    assert "<script" not in rich.lower() and "<b>bold" not in rich
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;" in rich
    assert "<pre" in rich and "ERROR: disk full\n</pre>" in rich
    assert "<th" in rich and "Exit status" in rich and "<td>2</td>" in rich
    assert '<a href="http://cw.example/monitors/nightly-backup?a=1&amp;b=2">Dashboard</a>' in rich
    assert '<a href="https://wiki.example/runbooks/backup">Runbook</a>' in rich


async def test_a_digest_subject_counts_the_alerts(mailserver, session):
    server = await mailserver()
    digest = make_digest([alert(), alert(monitor="queue-worker", event="missed", severity="warning",
                                         summary="queue-worker <missed> its ping")])
    await deliver(session, channel(server.port), digest)

    [message] = server.inbox.messages
    assert message["Subject"] == "[CRITICAL] 2 alerts on 2 monitors: 1 failed, 1 missed"
    plain, rich = parts(message)
    assert "- queue-worker <missed> its ping" in plain
    assert "queue-worker &lt;missed&gt; its ping" in rich and "<missed>" not in rich


async def test_a_retry_carries_the_same_message_id(mailserver, session):
    server = await mailserver()
    await deliver(session, channel(server.port), alert(), "cw-12")
    await deliver(session, channel(server.port), alert(), "cw-12")
    assert [m["Message-ID"] for m in server.inbox.messages] == ["<cw-12@cronwarden>"] * 2


async def test_starttls_verifies_the_server_certificate(mailserver, session, server_tls, trust_test_ca):
    server = await mailserver(tls_context=server_tls, require_starttls=True)
    await deliver(session, channel(server.port, smtp_tls="starttls"), alert())
    assert len(server.inbox.messages) == 1


async def test_smtp_ca_file_names_the_ca_that_signs_the_server_certificate(mailserver, session, server_tls, ca,
                                                                             tmp_path):
    path = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    server = await mailserver(tls_context=server_tls, require_starttls=True)
    await deliver(session, channel(server.port, smtp_tls="starttls", smtp_ca_file=str(path)), alert())
    assert len(server.inbox.messages) == 1


async def test_starttls_with_an_untrusted_certificate_is_refused(mailserver, session, server_tls):
    server = await mailserver(tls_context=server_tls, require_starttls=True)
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED") as info:
        await deliver(session, channel(server.port, smtp_tls="starttls"), alert())
    assert not info.value.permanent  # a certificate can be renewed; the alert should then go out
    assert server.inbox.messages == []


async def test_implicit_tls_verifies_the_server_certificate(mailserver, session, server_tls, trust_test_ca):
    server = await mailserver(implicit_tls=server_tls)
    await deliver(session, channel(server.port, smtp_tls="implicit"), alert())
    assert len(server.inbox.messages) == 1


async def test_login_uses_the_password_from_the_environment(mailserver, session, server_tls, trust_test_ca,
                                                             monkeypatch):
    monkeypatch.setenv("CW_TEST_SMTP_PASSWORD", PASSWORD)
    server = await mailserver(tls_context=server_tls, require_starttls=True, authenticate=True)
    await deliver(session, channel(server.port, smtp_tls="starttls", smtp_username="alerts",
                                   smtp_password_env="CW_TEST_SMTP_PASSWORD"), alert())
    assert server.inbox.logins == [(b"alerts", PASSWORD.encode())]
    assert len(server.inbox.messages) == 1


async def test_a_wrong_password_is_permanent_and_not_repeated_in_the_error(mailserver, session, server_tls,
                                                                         trust_test_ca, monkeypatch):
    monkeypatch.setenv("CW_TEST_SMTP_PASSWORD", "wrong-password-123")
    server = await mailserver(tls_context=server_tls, require_starttls=True, authenticate=True)
    with pytest.raises(DeliveryError, match="535") as info:
        await deliver(session, channel(server.port, smtp_tls="starttls", smtp_username="alerts",
                                       smtp_password_env="CW_TEST_SMTP_PASSWORD"), alert())
    assert info.value.permanent
    assert "wrong-password-123" not in str(info.value)
    assert server.inbox.messages == []


async def test_an_unset_password_variable_is_transient(mailserver, session, monkeypatch):
    monkeypatch.delenv("CW_TEST_SMTP_PASSWORD", raising=False)
    server = await mailserver()
    with pytest.raises(DeliveryError, match="CW_TEST_SMTP_PASSWORD") as info:
        await deliver(session, channel(server.port, smtp_username="alerts",
                                       smtp_password_env="CW_TEST_SMTP_PASSWORD"), alert())
    assert not info.value.permanent


async def test_a_server_that_is_down_is_transient(session, monkeypatch):
    monkeypatch.setenv("CW_TEST_SMTP_PASSWORD", PASSWORD)
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeliveryError, match=f"cannot reach SMTP 127.0.0.1:{port}") as info:
        await deliver(session, channel(port, smtp_username="alerts", smtp_password_env="CW_TEST_SMTP_PASSWORD"),
                      alert())
    assert not info.value.permanent
    assert PASSWORD not in str(info.value)


async def test_a_server_that_never_greets_times_out_as_transient(session):
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="within 1s") as info:
            await deliver(session, channel(server.sockets[0].getsockname()[1], timeout=1), alert())
        assert not info.value.permanent
        assert time.monotonic() - started < 2.0
    finally:
        release.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)  # let the connection handler finish closing


async def test_a_refused_recipient_is_permanent_and_recorded(mailserver, session):
    server = await mailserver()
    server.inbox.refuse["nobody@example.com"] = "550 5.1.1 <nobody@example.com>: No such user"
    with pytest.raises(DeliveryError, match="550 5.1.1") as info:
        ctx = SendContext(session, time.time())
        await send(channel(server.port, to=("nobody@example.com",)), alert(), "cw-7", ctx)
    assert info.value.permanent
    assert "nobody@example.com" in str(info.value)
    assert "550 5.1.1" in ctx.answer
    assert server.inbox.messages == []


async def test_a_greylisted_recipient_is_transient(mailserver, session):
    server = await mailserver()
    server.inbox.refuse["ops@example.com"] = "450 4.2.0 Greylisted, try again later"
    with pytest.raises(DeliveryError, match="450 4.2.0") as info:
        await deliver(session, channel(server.port), alert())
    assert not info.value.permanent


async def test_a_partly_refused_mail_counts_as_delivered_and_says_who_was_refused(mailserver, session):
    server = await mailserver()
    server.inbox.refuse["gone@example.com"] = "550 5.1.1 No such user"
    ctx = await deliver(session, channel(server.port, to=("ops@example.com", "gone@example.com")), alert())
    assert server.inbox.envelopes[0].rcpt_tos == ["ops@example.com"]
    assert "refused: gone@example.com (550 5.1.1 No such user)" in ctx.answer


@pytest.mark.parametrize("reply, permanent", [("554 5.7.1 Message rejected as spam", True),
                                              ("451 4.3.0 Local error, try later", False)])
async def test_a_rejected_message_is_classified_by_the_reply_code(mailserver, session, reply, permanent):
    server = await mailserver()
    server.inbox.data_reply = reply
    with pytest.raises(DeliveryError, match=reply.split()[0]) as info:
        await deliver(session, channel(server.port), alert())
    assert info.value.permanent is permanent


async def test_starttls_against_a_server_without_it_is_permanent(mailserver, session):
    server = await mailserver()  # no certificate: STARTTLS is not offered
    with pytest.raises(DeliveryError, match="(?i)starttls") as info:
        await deliver(session, channel(server.port, smtp_tls="starttls"), alert())
    assert info.value.permanent
    assert server.inbox.messages == []
