"""``type: teams``: a Microsoft Teams Workflows (Power Automate) webhook.

API: the "When a Teams webhook request is received" trigger of Teams
Workflows (which replaced Office 365 connectors) takes POST JSON
``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <Adaptive Card>}]}``
(https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using);
the URL is a secret (``url_env``) or ``url``.

The card (schema 1.4) has the title, the summary, one line per context item
(job, host, event, severity, expected, last success, duration, exit status),
the output tail in monospace, and an ``Action.OpenUrl`` button per link; a
digest lists one line per alert. Untrusted text goes only into
``RichTextBlock``/``TextRun`` elements, which Teams renders as plain text (no
markdown, so job output cannot make links or lists); it is defused too.

Limits: a Teams message is at most about 28 KB; the JSON is sent as UTF-8
(not \\u-escaped) and kept under 27 000 bytes, the output tail and digest
list shrinking to fit. The Workflows trigger answers 202; 400/401/403/404
are permanent, 429 carries ``Retry-After``.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import ChannelConfig
from . import SendContext, post, render, url_secrets, webhook_url

MAX_BYTES = 27_000
LOG_CHARS = 8000  # the output tail we start from before shrinking to MAX_BYTES
COLORS = {"critical": "Attention", "warning": "Warning", "info": "Accent"}


head = render.head
fit = render.fit
fit_lines = render.fit_lines


def run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": render.defuse(text), **style}


def rich(*runs: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(runs), **props}


def card(payload: dict[str, Any], body: list[dict[str, Any]]) -> dict[str, Any]:
    color = "Good" if payload.get("event") == "recovered" else COLORS.get(payload.get("severity"), "Default")
    content = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [rich(run(head(render.title(payload), 300), weight="Bolder", size="Medium", color=color)), *body],
    }
    actions = [{"type": "Action.OpenUrl", "title": label, "url": url} for label, url in render.links(payload)
               if url.startswith(("http://", "https://"))]
    if actions:
        content["actions"] = actions
    return {"type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                             "content": content}]}


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def build_alert(payload: dict[str, Any], log_chars: int) -> dict[str, Any]:
    body = [rich(run(head(str(payload.get("summary") or "-"), 2000)), spacing="Small")]
    for label, value in render.context_lines(payload):
        body.append(rich(run(f"{label}: ", weight="Bolder"), run(head(value, 300)), spacing="None"))
    log = (payload.get("log") or "").rstrip("\n")
    if log and log_chars > 0:
        body.append(rich(run("Output (tail):", weight="Bolder"), spacing="Medium"))
        body.append(rich(run(render.cut(log, max(2, log_chars)), fontType="Monospace", size="Small"),
                         spacing="None"))
    return card(payload, body)


def build_digest(payload: dict[str, Any], shown: int) -> dict[str, Any]:
    alerts = payload["alerts"]
    lines = [f"• {head(str(a.get('summary', '')), 300)}" for a in alerts[:shown]]
    if shown < len(alerts):
        lines.append(f"… and {len(alerts) - shown} more")
    return card(payload, [rich(run("\n".join(lines)), spacing="Small")])


def build(payload: dict[str, Any]) -> bytes:
    """The message as UTF-8 JSON, at most MAX_BYTES (the output or list shrinks)."""
    if render.is_digest(payload):
        shown = len(payload["alerts"])
        data = encode(build_digest(payload, shown))
        while len(data) > MAX_BYTES and shown > 0:
            per_line = max(1, len(data) // shown)
            shown = max(0, shown - (len(data) - MAX_BYTES) // per_line - 1)
            data = encode(build_digest(payload, shown))
        return data
    n = LOG_CHARS
    data = encode(build_alert(payload, n))
    while len(data) > MAX_BYTES and n > 0:
        n -= len(data) - MAX_BYTES
        data = encode(build_alert(payload, n))
    return data


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> int:
    url = webhook_url(channel)
    return await post(channel, ctx, url, data=build(payload),
                      headers={"Content-Type": "application/json; charset=utf-8"}, secrets=url_secrets(url))
