"""``type: telegram``: a message from a Telegram bot.

API: https://core.telegram.org/bots/api#sendmessage -- POST JSON ``{chat_id,
text, parse_mode: "HTML", disable_web_page_preview: true}`` to
``{url or https://api.telegram.org}/bot{token}/sendMessage``; the token
(``token_env``) is part of the URL path, so it is passed to :func:`post` as a
secret and never shows in an error or the recorded answer.

The text has the title, the summary, the context lines (job, host, event,
severity, expected, last success, duration, exit status), the links and the
output tail in ``<pre>``; a digest lists one line per alert. Every piece of
text goes through ``html.escape`` (after defusing mentions), so job output
cannot add tags or links.

Limits: ``text`` is 1-4096 characters (counted here in UTF-16 code units,
the stricter reading). Telegram answers 200 ``{"ok": true}``; 400 (``chat not
found``), 401 (bad token), 403 (bot blocked) and 404 are permanent; 429 says
how long to wait in the JSON body, ``parameters.retry_after``, which is
honoured.
"""

from __future__ import annotations

import functools

import html
import json
from typing import Any

from ..config import ChannelConfig
from . import DeliveryError, SendContext, post, render, require

API = "https://api.telegram.org"
TEXT_LIMIT = 4096


size = render.utf16_size


head = render.head
fit = functools.partial(render.fit, size=size)
fit_lines = functools.partial(render.fit_lines, size=size)


def escape(text: str) -> str:
    return html.escape(render.defuse(text), quote=False)


def build_text(payload: dict[str, Any]) -> str:
    parts = [fit(render.title(payload), 300, lambda t: f"<b>{escape(t)}</b>")]
    if render.is_digest(payload):
        lines = [f"• {fit(str(a.get('summary', '')), 300, escape)}" for a in payload["alerts"]]
        parts.append(fit_lines(lines, TEXT_LIMIT - size(parts[0]) - 2))
        return "\n\n".join(parts)
    parts.append(fit(str(payload.get("summary") or "-"), 1000, escape))
    facts = "\n".join(f"<b>{label}:</b> {fit(value, 200, escape)}" for label, value in render.context_lines(payload))
    if facts:
        parts.append(facts)
    links = " · ".join(f'<a href="{html.escape(url, quote=True)}">{label}</a>' for label, url in render.links(payload))
    if links:
        parts.append(links)
    log = (payload.get("log") or "").rstrip("\n")
    if log:
        prefix, suffix = "<b>Output (tail):</b>\n<pre>", "</pre>"
        left = TEXT_LIMIT - sum(size(p) + 2 for p in parts) - size(prefix) - size(suffix)
        if left > 20:
            parts.append(prefix + fit(log, left, escape, keep_end=True) + suffix)
    return "\n\n".join(parts)


def retry_after_from(answer: str) -> float | None:
    """``parameters.retry_after`` from the JSON body that post() kept in ctx.answer."""
    _, _, body = answer.partition(" ")
    try:
        value = json.loads(body).get("parameters", {}).get("retry_after")
        return max(0.0, float(value)) if value is not None else None
    except (ValueError, AttributeError, TypeError):
        return None


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> int:
    if not channel.chat_id:
        raise DeliveryError(f"channel {channel.name}: chat_id is not set", permanent=True)
    token = require(channel, "token_env")
    url = f"{(channel.target_url() or API).rstrip('/')}/bot{token}/sendMessage"
    message = {"chat_id": channel.chat_id, "text": build_text(payload), "parse_mode": "HTML",
               "disable_web_page_preview": True}
    try:
        return await post(channel, ctx, url, json=message, secrets=[token])
    except DeliveryError as exc:
        if exc.status == 429:
            asked = retry_after_from(ctx.answer)
            exc.retry_after = asked if asked is not None else exc.retry_after
        raise
