"""``type: ntfy``: a push notification through ntfy (ntfy.sh or self-hosted).

API: https://docs.ntfy.sh/publish/#publish-as-json -- POST JSON ``{topic,
title, message, priority, tags, click, actions}`` to the server's root URL
(``url``, default https://ntfy.sh), with ``Authorization: Bearer {token}``
when ``token_env`` is set (access tokens; the token is redacted from errors).
JSON publishing avoids putting non-ASCII titles into HTTP headers.

Priority: critical -> 5 (urgent), warning -> 4 (high), info -> 3 (default),
a recovery always 3. ``click`` opens the dashboard; up to three ``view``
actions open dashboard, ack and runbook. The message is plain text (ntfy
renders no markup unless asked): summary, context lines (job, host, event,
severity, expected, last success, duration, exit status), links and the
output tail, defused; a digest lists one line per alert.

Limits: the server's message-size-limit is 4096 bytes by default (a longer
message would become an attachment or be refused), so the message is kept
to 4096 UTF-8 bytes. ntfy answers 200 with the message JSON; 400/401/403/
404 are permanent, 429 (visitor rate limit) is transient.
"""

from __future__ import annotations

import functools

from typing import Any

from ..config import ChannelConfig
from . import DeliveryError, SendContext, post, render, require

SERVER = "https://ntfy.sh"
MESSAGE_BYTES = 4096
PRIORITY = {"critical": 5, "warning": 4, "info": 3}
TAGS = {"critical": "rotating_light", "warning": "warning", "info": "information_source"}


size = render.utf8_size


head = render.head
fit = functools.partial(render.fit, size=size)
fit_lines = functools.partial(render.fit_lines, size=size)


def build_message(payload: dict[str, Any]) -> str:
    if render.is_digest(payload):
        lines = [render.defuse(head(str(payload.get("summary", "")), 500)), ""]
        lines += [f"- {fit(str(a.get('summary', '')), 300, render.defuse)}" for a in payload["alerts"]]
        return fit_lines(lines, MESSAGE_BYTES)
    log = payload.get("log") or ""
    text = render.plain_text({**payload, "summary": head(str(payload.get("summary") or ""), 500), "log": ""})
    text = fit(text, MESSAGE_BYTES - (1024 if log else 0), lambda t: t)
    prefix = "\nOutput (tail):\n"
    left = MESSAGE_BYTES - size(text) - size(prefix)
    if log and left > 20:
        text += prefix + fit(log, left, render.defuse, keep_end=True)
    return text


def build(channel: ChannelConfig, payload: dict[str, Any]) -> dict[str, Any]:
    severity = payload.get("severity", "info")
    recovered = payload.get("event") == "recovered"
    body: dict[str, Any] = {
        "topic": channel.topic,
        "title": head(render.defuse(render.title(payload)), 250),
        "message": build_message(payload),
        "priority": 3 if recovered else PRIORITY.get(severity, 3),
        "tags": ["white_check_mark" if recovered else TAGS.get(severity, "bell"),
                 str(payload.get("event", "alert"))],
    }
    links = payload.get("links") or {}
    if links.get("dashboard"):
        body["click"] = links["dashboard"]
    actions = [{"action": "view", "label": label, "url": url} for label, url in render.links(payload)
               if url.startswith(("http://", "https://"))][:3]
    if actions:
        body["actions"] = actions
    return body


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> int:
    if not channel.topic:
        raise DeliveryError(f"channel {channel.name}: topic is not set", permanent=True)
    headers: dict[str, str] = {}
    token = None
    if channel.token_env:
        token = require(channel, "token_env")
        headers["Authorization"] = f"Bearer {token}"
    url = (channel.target_url() or SERVER).rstrip("/") + "/"
    return await post(channel, ctx, url, json=build(channel, payload), headers=headers, secrets=[token])
