"""``type: email``: a plain-text alert through aiosmtplib."""

from __future__ import annotations

import os
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from ..config import ChannelConfig
from . import DeliveryError, SendContext


def render_text(payload: dict[str, Any]) -> str:
    run = payload.get("run") or {}
    links = payload.get("links") or {}
    lines = [
        payload.get("summary", ""),
        "",
        f"Job:          {payload.get('monitor')}",
        f"Host:         {payload.get('host')}",
        f"Event:        {payload.get('event')}{' (reminder)' if payload.get('reminder') else ''}",
        f"Severity:     {payload.get('severity')}",
        f"When:         {payload.get('occurred_at')}",
        f"Expected by:  {payload.get('expected_at') or '-'}",
        f"Last success: {payload.get('last_success') or 'never'}",
        f"Duration:     {run.get('duration_s') if run.get('duration_s') is not None else '-'} s",
        f"Exit status:  {run.get('exit_status') if run.get('exit_status') is not None else '-'}",
        f"Incident:     {payload.get('incident')}",
    ]
    for name, url in links.items():
        lines.append(f"{name.capitalize() + ':':<14}{url}")
    if payload.get("log"):
        lines += ["", "Output (tail):", payload["log"]]
    return "\n".join(lines) + "\n"


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> None:
    message = EmailMessage()
    message["From"] = channel.sender or "cronwarden@localhost"
    message["To"] = ", ".join(channel.to)
    message["Subject"] = (f"[{str(payload.get('severity')).upper()}] {payload.get('monitor')}: "
                          f"{payload.get('event')}{' (reminder)' if payload.get('reminder') else ''}")
    message["Message-ID"] = f"<{delivery_id}@cronwarden>"
    message.set_content(render_text(payload))
    password = os.environ.get(channel.smtp_password_env) if channel.smtp_password_env else None
    try:
        await aiosmtplib.send(
            message,
            hostname=channel.smtp_host,
            port=channel.smtp_port,
            use_tls=channel.smtp_tls == "implicit",
            start_tls=channel.smtp_tls == "starttls",
            username=channel.smtp_username,
            password=password,
            timeout=channel.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"recipients refused: {exc}", permanent=True) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {channel.smtp_host}:{channel.smtp_port}: {exc}") from None
    return None
