"""``type: slack``: a Slack incoming webhook.

API: https://api.slack.com/messaging/webhooks -- POST JSON ``{"text": ...,
"blocks": [...]}`` to the webhook URL (``url_env``, since the URL is the
secret, or ``url``). ``text`` is the notification fallback; the blocks carry
the summary, the context (job, host, event, severity, expected, last success,
duration, exit status), the links and the output tail in a code block. A
digest lists one line per alert.

Limits: a section block's text is at most 3000 characters, a message at most
50 blocks and 40 000 characters of ``text``. Text is mrkdwn: ``&``, ``<`` and
``>`` are escaped so job output cannot write links or ``<!channel>``
mentions, and backtick runs are broken up so output cannot open or close a
code block. Slack answers 200 ``ok``; 400/403/404 with a reason
(``invalid_payload``, ``no_service``...) are permanent, 429 carries
``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from ..config import ChannelConfig
from . import SendContext, post, render, url_secrets, webhook_url

BLOCK_TEXT = 3000  # characters in one section block
FALLBACK_TEXT = 1000  # the notification text; far below the 40 000 limit on purpose


def escape(text: str) -> str:
    """mrkdwn: defuse mentions, break backtick runs (no code block can open or
    close), then escape the three control characters."""
    text = render.defuse(text).replace("`", "`\u200b")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


head = render.head
fit = render.fit
fit_lines = render.fit_lines


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def build(payload: dict[str, Any]) -> dict[str, Any]:
    title = render.title(payload)
    blocks = [section(fit(title, 500, lambda t: f"*{escape(t)}*"))]
    if render.is_digest(payload):
        lines = [f"• {fit(str(a.get('summary', '')), 300, escape)}" for a in payload["alerts"]]
        blocks.append(section(fit_lines(lines, BLOCK_TEXT)))
    else:
        blocks.append(section(fit(str(payload.get("summary") or "-"), BLOCK_TEXT, escape)))
        facts = [f"*{label}:* {fit(value, 300, escape)}" for label, value in render.context_lines(payload)]
        if facts:
            blocks.append(section(fit_lines(facts, BLOCK_TEXT)))
        links = [f"<{escape(url)}|{label}>" for label, url in render.links(payload)]
        if links:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
        log = (payload.get("log") or "").rstrip("\n")
        if log:
            prefix, suffix = "*Output (tail):*\n```", "```"
            body = fit(log, BLOCK_TEXT - len(prefix) - len(suffix), escape, keep_end=True)
            blocks.append(section(prefix + body + suffix))
    text = fit(f"{title}: {payload.get('summary', '')}", FALLBACK_TEXT, escape)
    return {"text": text, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> int:
    url = webhook_url(channel)
    return await post(channel, ctx, url, json=build(payload), secrets=url_secrets(url))
