"""``type: gotify``: a message on a self-hosted Gotify server.

API: https://gotify.net/api-docs#/message/createMessage -- POST JSON
``{title, message, priority, extras}`` to ``{url}/message`` with the
application token (``token_env``) in the ``X-Gotify-Key`` header (redacted
from errors). ``extras`` asks clients to render markdown
(``client::display``) and to open the dashboard on a tap
(``client::notification.click``).

Priority: critical 8, warning 5, info 2 (Gotify's Android app alerts from 8,
makes a sound from 5 and stays silent below 4). The message is markdown:
the summary and context lines (job, host, event, severity, expected, last
success, duration, exit status) with every ASCII punctuation character
backslash-escaped, the links, and the output tail in a fenced code block
whose fence is longer than any backtick run in the output, so job output
cannot add links, HTML or close its block. A digest lists one line per
alert.

Limits: Gotify sets no message size limit; the message is kept to 8000
characters (output tail to 4000) so phones stay usable. Gotify answers 200;
400/401/403/404 are permanent, 5xx transient.
"""

from __future__ import annotations

import re
from typing import Any

from ..config import ChannelConfig
from . import DeliveryError, SendContext, post, render, require

MESSAGE = 8000
LOG = 4000
PRIORITY = {"critical": 8, "warning": 5, "info": 2}
_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")


def escape(text: str) -> str:
    """CommonMark: every ASCII punctuation character may be backslash-escaped."""
    return _PUNCT.sub(r"\\\1", render.defuse(text))


head = render.head
fit = render.fit
fit_lines = render.fit_lines


def fence(text: str) -> str:
    """A fenced code block that `text` cannot close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    bar = "`" * max(3, longest + 1)
    return f"{bar}\n{render.defuse(text)}\n{bar}"


def build_message(payload: dict[str, Any]) -> str:
    if render.is_digest(payload):
        lines = [f"- {fit(str(a.get('summary', '')), 300, escape)}" for a in payload["alerts"]]
        return fit_lines(lines, MESSAGE)
    parts = [fit(str(payload.get("summary") or "-"), 1000, escape)]
    facts = [f"- **{label}:** {fit(value, 300, escape)}" for label, value in render.context_lines(payload)]
    if facts:
        parts.append("\n".join(facts))
    links = " · ".join(f"[{label}](<{url.replace('>', '%3E')}>)" for label, url in render.links(payload))
    if links:
        parts.append(links)
    log = (payload.get("log") or "").rstrip("\n")
    if log:
        prefix = "**Output (tail):**\n\n"
        left = min(LOG, MESSAGE - sum(len(p) + 2 for p in parts) - len(prefix))
        if left > 20:
            parts.append(prefix + fit(log, left, fence, keep_end=True))
    return "\n\n".join(parts)


def build(payload: dict[str, Any]) -> dict[str, Any]:
    extras: dict[str, Any] = {"client::display": {"contentType": "text/markdown"}}
    dashboard = (payload.get("links") or {}).get("dashboard")
    if dashboard:
        extras["client::notification"] = {"click": {"url": dashboard}}
    return {
        "title": head(render.defuse(render.title(payload)), 250),
        "message": build_message(payload),
        "priority": PRIORITY.get(payload.get("severity", "info"), 5),
        "extras": extras,
    }


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> int:
    base = channel.target_url()
    if not base:
        raise DeliveryError(f"channel {channel.name}: no Gotify server URL (url, or url_env set)",
                            permanent=not channel.url_env)
    token = require(channel, "token_env")
    return await post(channel, ctx, base.rstrip("/") + "/message", json=build(payload),
                      headers={"X-Gotify-Key": token}, secrets=[token])
