"""``type: pushover``: a push notification through Pushover.

API: https://pushover.net/api -- POST a form to ``{url or
https://api.pushover.net}/1/messages.json`` with ``token`` (application
token, ``token_env``), ``user`` (user or group key, ``user_key_env``),
``title``, ``message``, ``html=1``, ``priority``, ``timestamp``, ``url`` (the
dashboard) and ``url_title``. Both keys are redacted from errors.

Priority: critical 1 (high, bypasses quiet hours), warning 0, info -1 (quiet).
The message is Pushover's HTML subset (``<b>``, ``<a href>``): the summary,
context lines (job, host, event, severity, expected, last success, duration,
exit status), ack/runbook links and as much of the output tail as fits, all
escaped with ``html.escape`` after defusing; a digest lists one line per
alert.

Limits: title 250 characters, message 1024, url 512, url_title 100.
Pushover answers 200 ``{"status": 1}``; 400 (invalid token/user, with an
``errors`` list) is permanent, 429 (monthly quota used up) and 5xx are
transient.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from ..config import ChannelConfig
from . import SendContext, post, render, require

API = "https://api.pushover.net"
TITLE = 250
MESSAGE = 1024
URL = 512
URL_TITLE = 100
PRIORITY = {"critical": 1, "warning": 0, "info": -1}


def escape(text: str) -> str:
    return html.escape(render.defuse(text), quote=False)


head = render.head
fit = render.fit
fit_lines = render.fit_lines


def build_message(payload: dict[str, Any]) -> str:
    if render.is_digest(payload):
        lines = [f"• {fit(str(a.get('summary', '')), 200, escape)}" for a in payload["alerts"]]
        return fit_lines(lines, MESSAGE)
    parts = [fit(str(payload.get("summary") or "-"), 300, escape)]
    facts = [f"<b>{label}:</b> {fit(value, 100, escape)}" for label, value in render.context_lines(payload)
             if label != "Job"]  # the job is in the title
    parts.append(fit_lines(facts, MESSAGE - len(parts[0]) - 2))
    links = " · ".join(f'<a href="{html.escape(url, quote=True)}">{label}</a>'
                       for label, url in render.links(payload) if label != "Dashboard")
    if links and sum(len(p) + 1 for p in parts) + len(links) <= MESSAGE:
        parts.append(links)
    log = payload.get("log") or ""
    if log:
        prefix = "<b>Output (tail):</b>\n"
        left = MESSAGE - sum(len(p) + 1 for p in parts) - len(prefix)
        if left > 20:
            parts.append(prefix + fit(log, left, escape, keep_end=True))
    return "\n".join(parts)


def epoch(value: Any) -> int | None:
    try:
        return int(datetime.fromisoformat(str(value)).timestamp())
    except ValueError:
        return None


def build(payload: dict[str, Any], token: str, user: str) -> dict[str, str]:
    form = {
        "token": token,
        "user": user,
        "title": head(render.defuse(render.title(payload)), TITLE),
        "message": build_message(payload),
        "html": "1",
        "priority": str(PRIORITY.get(payload.get("severity", "info"), 0)),
    }
    when = epoch(payload.get("occurred_at"))
    if when is not None:
        form["timestamp"] = str(when)
    dashboard = (payload.get("links") or {}).get("dashboard")
    if dashboard and len(dashboard) <= URL:
        form["url"] = dashboard
        form["url_title"] = head(f"{payload.get('monitor') or 'cronwarden'} dashboard", URL_TITLE)
    return form


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> int:
    token = require(channel, "token_env")
    user = require(channel, "user_key_env")
    return await post(channel, ctx, f"{(channel.target_url() or API).rstrip('/')}/1/messages.json",
                      data=urlencode(build(payload, token, user)),
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, secrets=[token, user])
