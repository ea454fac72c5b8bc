"""``type: email``: the alert as a plain-text + HTML mail through aiosmtplib.

The subject is :func:`.render.title` so a person can triage from the inbox
list; the body carries the same context as every other channel. Job output is
untrusted: in the HTML part every character of it goes through
:func:`html.escape` inside ``<pre>``. ``Message-ID`` is built from the
delivery id, so a retry of the same alert carries the same id and a mail
system (or a person) can drop the repeat.

Failures are classified the way SMTP means them: a 5xx reply (recipient
unknown, message rejected, login refused) is permanent; a 4xx reply
(greylisting, mailbox full, try later), a refused or dropped connection and a
timeout are transient. The password never appears in an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib

from ..config import ChannelConfig
from . import MAX_ANSWER, DeliveryError, SendContext, redact, render, require

log = logging.getLogger("cronwarden.delivery")

LOG_LIMIT = 10_000  # characters of job output in a mail
QUIT_TIMEOUT = 5.0  # the message is accepted by then: a slow goodbye is not worth waiting for


def subject(payload: dict[str, Any]) -> str:
    return " ".join(render.title(payload).split())  # no CR/LF can reach the header


def _link(label: str, url: str) -> str:
    if url.lower().startswith(("http://", "https://")):
        return f'<a href="{html.escape(url)}">{html.escape(label)}</a>'
    return f"{html.escape(label)}: {html.escape(url)}"


def _alert_html(payload: dict[str, Any]) -> list[str]:
    rows = "".join(f'<tr><th align="left" style="padding:1px 12px 1px 0;font-weight:normal;color:#555">'
                   f"{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
                   for label, value in render.context_lines(payload))
    parts = [f"<p><b>{html.escape(str(payload.get('summary', '')))}</b></p>",
             f'<table style="border-collapse:collapse;font-size:small">{rows}</table>']
    links = render.links(payload)
    if links:
        parts.append("<p>" + " &middot; ".join(_link(label, url) for label, url in links) + "</p>")
    output = payload.get("log") or ""
    if output:
        parts += ["<p>Output (tail):</p>",
                  '<pre style="background:#f4f4f4;padding:8px;white-space:pre-wrap">'
                  f"{html.escape(render.cut(output, LOG_LIMIT))}</pre>"]
    return parts


def _digest_html(payload: dict[str, Any]) -> list[str]:
    rows = []
    for alert in payload["alerts"]:
        dashboard = (alert.get("links") or {}).get("dashboard")
        job = html.escape(str(alert.get("monitor")))
        if dashboard:
            job = _link(str(alert.get("monitor")), dashboard)
        cells = [html.escape(str(alert.get("severity", "")).upper()), job,
                 html.escape(str(alert.get("event", ""))), html.escape(str(alert.get("occurred_at") or "")),
                 html.escape(str(alert.get("summary", "")))]
        rows.append("<tr>" + "".join(f'<td style="padding:1px 12px 1px 0">{c}</td>' for c in cells) + "</tr>")
    return [f"<p><b>{html.escape(str(payload['summary']))}</b></p>",
            f'<table style="border-collapse:collapse;font-size:small">{"".join(rows)}</table>']


def render_html(payload: dict[str, Any]) -> str:
    body = _digest_html(payload) if render.is_digest(payload) else _alert_html(payload)
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>'
            '<body style="font-family:sans-serif">\n' + "\n".join(body) + "\n</body></html>\n")


def build_message(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, now: float) -> EmailMessage:
    message = EmailMessage()
    message["From"] = channel.sender or "cronwarden@localhost"
    message["To"] = ", ".join(channel.to)
    message["Subject"] = subject(payload)
    message["Date"] = formatdate(now, usegmt=True)
    message["Message-ID"] = f"<{delivery_id}@cronwarden>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the sender
    message.set_content(render.plain_text(payload, LOG_LIMIT))
    message.add_alternative(render_html(payload), subtype="html")
    return message


def _error(channel: ChannelConfig, exc: BaseException, password: str | None) -> tuple[DeliveryError, str]:
    """Classify what aiosmtplib raised: the error (naming the server, never the
    password) and the server's reply when there was one."""
    where = f"SMTP {channel.smtp_host}:{channel.smtp_port}"
    permanent, answer = False, ""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        answer = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        # All were refused; if any refusal is temporary (greylisting, full mailbox) a retry can help.
        permanent = bool(exc.recipients) and all(500 <= r.code < 600 for r in exc.recipients)
        text = f"{where}: recipients refused: {answer}"
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        answer = f"{exc.code} {exc.message}"
        permanent = 500 <= exc.code < 600
        text = f"{where}: {answer}"
    elif isinstance(exc, TimeoutError):  # SMTPTimeoutError and the per-attempt limit
        text = f"no answer from {where} within {channel.timeout}s"
    elif isinstance(exc, OSError):
        # Refused or dropped connections and TLS failures (an expired certificate can
        # be renewed). Checked before ValueError: a failed certificate check is both.
        text = f"cannot reach {where}: {exc}"
    else:  # SMTPNotSupported (tls: starttls, no STARTTLS offered), an address it cannot take
        permanent = True
        text = f"{where}: {exc}"
    secrets = [password]
    return DeliveryError(redact(text, secrets), permanent=permanent), redact(answer, secrets)[:MAX_ANSWER]


async def _deliver(channel: ChannelConfig, message: EmailMessage,
                   password: str | None) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    client = aiosmtplib.SMTP(
        hostname=channel.smtp_host, port=channel.smtp_port, timeout=channel.timeout,
        use_tls=channel.smtp_tls == "implicit", start_tls=channel.smtp_tls == "starttls",
        username=channel.smtp_username, password=password if channel.smtp_username else None,
        cert_bundle=channel.smtp_ca_file,
    )
    try:
        async with asyncio.timeout(channel.timeout):  # the whole attempt, not each command
            await client.connect()  # connects, upgrades with STARTTLS and logs in as configured
            result = await client.send_message(message, sender=message["From"], recipients=list(channel.to))
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            async with asyncio.timeout(min(QUIT_TIMEOUT, channel.timeout)):
                await client.quit()
        return result
    finally:
        client.close()


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> None:
    password = require(channel, "smtp_password_env") if channel.smtp_password_env else None
    message = build_message(channel, payload, delivery_id, ctx.now)
    try:
        refused, reply = await _deliver(channel, message, password)
    except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
        error, answer = _error(channel, exc, password)
        ctx.answer = answer or str(error)
        raise error from None
    ctx.answer = redact(f"250 {reply}", [password])[:MAX_ANSWER]  # aiosmtplib accepts only 250 after DATA
    if refused:
        # Accepted for some recipients: a retry would repeat it to them, so this
        # counts as delivered and the refusals are reported.
        detail = "; ".join(f"{rcpt} ({r.code} {r.message})" for rcpt, r in refused.items())
        ctx.answer = f"{ctx.answer}; refused: {detail}"[:MAX_ANSWER]
        log.warning("channel %s: alert %s not accepted for: %s", channel.name, delivery_id, detail)
    return None
