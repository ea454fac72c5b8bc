"""``type: discord``: a Discord webhook.

API: https://discord.com/developers/docs/resources/webhook#execute-webhook --
POST JSON ``{"content", "embeds": [embed], "allowed_mentions": {"parse": []}}``
to the webhook URL (``url_env`` or ``url``). ``content`` is the title (what a
phone notification shows); the embed carries the summary, the links, the
output tail in a code block and one inline field per context line (job,
host, event, severity, expected, last success, duration, exit status). A
digest's embed lists one line per alert.

Limits: content 2000 characters; embed title 256, description 4096, 25
fields of name 256 and value 1024, and 6000 characters for all embed text
together. ``allowed_mentions: {"parse": []}`` means nothing pings anyone;
markdown characters in text are backslash-escaped and backtick runs in the
output are broken up so it cannot close its code block. Discord answers 204
(200 with ``?wait=true``); 400 (bad embed), 401/403/404 (deleted webhook) are
permanent, 429 carries ``Retry-After``.
"""

from __future__ import annotations

import re
from typing import Any

from ..config import ChannelConfig
from . import SendContext, post, render, url_secrets, webhook_url

CONTENT = 2000
EMBED_TITLE = 256
DESCRIPTION = 4096
FIELD_NAME = 256
FIELD_VALUE = 1024
EMBED_TOTAL = 6000
COLORS = {"critical": 0xD0021B, "warning": 0xF5A623, "info": 0x4A90E2}
RECOVERED_COLOR = 0x2EA043
_MARKDOWN = re.compile(r"([\\*_~`|>#\-\[\]()<])")


def escape(text: str) -> str:
    """Defuse mentions and backslash-escape Discord markdown (and <@id> / <#id> syntax)."""
    return _MARKDOWN.sub(r"\\\1", render.defuse(text))


head = render.head
fit = render.fit
fit_lines = render.fit_lines


def code(text: str) -> str:
    """Text for a ``` block: defused, no two backticks in a row."""
    return render.defuse(text).replace("`", "`\u200b")


def build(payload: dict[str, Any]) -> dict[str, Any]:
    title = render.title(payload)
    color = RECOVERED_COLOR if payload.get("event") == "recovered" else COLORS.get(payload.get("severity"), 0)
    embed: dict[str, Any] = {"title": fit(title, EMBED_TITLE, escape), "color": color}
    if render.is_digest(payload):
        lines = [f"• {fit(str(a.get('summary', '')), 300, escape)}" for a in payload["alerts"]]
        embed["description"] = fit_lines(lines, min(DESCRIPTION, EMBED_TOTAL - len(embed["title"])))
    else:
        fields = [{"name": label, "value": fit(value, 200, escape), "inline": True}
                  for label, value in render.context_lines(payload)][:25]
        embed["fields"] = fields
        footer = f"cronwarden · incident {payload['incident']}" if payload.get("incident") else "cronwarden"
        embed["footer"] = {"text": footer}
        used = len(embed["title"]) + len(footer) + sum(len(f["name"]) + len(f["value"]) for f in fields)
        room = min(DESCRIPTION, EMBED_TOTAL - used)
        parts = [fit(str(payload.get("summary") or "-"), min(1000, room), escape)]
        links = " · ".join(f"[{label}]({url.replace(')', '%29')})" for label, url in render.links(payload))
        if links and len(parts[0]) + len(links) + 2 <= room:
            parts.append(links)
        log = (payload.get("log") or "").rstrip("\n")
        if log:
            prefix, suffix = "**Output (tail)**\n```\n", "\n```"
            left = room - sum(len(p) + 2 for p in parts) - len(prefix) - len(suffix)
            if left > 20:
                parts.append(prefix + fit(log, left, code, keep_end=True) + suffix)
        embed["description"] = "\n\n".join(parts)
        dashboard = (payload.get("links") or {}).get("dashboard")
        if dashboard and dashboard.startswith(("http://", "https://")):
            embed["url"] = dashboard
        if payload.get("occurred_at"):
            embed["timestamp"] = payload["occurred_at"]
    return {"content": fit(title, CONTENT, escape), "embeds": [embed], "allowed_mentions": {"parse": []}}


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> int:
    url = webhook_url(channel)
    return await post(channel, ctx, url, json=build(payload), secrets=url_secrets(url))
