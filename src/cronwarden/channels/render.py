"""Alert text for people: titles, context lines, output tails, digests.

Every channel renders from these, so an e-mail, a Slack message and a
Telegram message carry the same context. Job output is untrusted: it is cut
to what the service accepts and defused so it cannot mention everyone or
break the target's markup (each channel escapes for its own format).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable

SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}
_MENTIONS = re.compile(r"@(everyone|here|channel|all)\b|<!(everyone|here|channel)[^>]*>|<@[!&]?\d+>",
                       re.IGNORECASE)


def is_digest(payload: dict[str, Any]) -> bool:
    return payload.get("event") == "digest"


def make_digest(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """One payload standing for several alerts that fell due together."""
    counts = Counter(a["event"] for a in alerts)
    severity = max((a.get("severity", "info") for a in alerts), key=lambda s: SEVERITY_ORDER.get(s, 0))
    what = ", ".join(f"{n} {event}" for event, n in counts.most_common())
    monitors = sorted({a["monitor"] for a in alerts})
    return {
        "event": "digest",
        "count": len(alerts),
        "severity": severity,
        "summary": f"{len(alerts)} alerts on {len(monitors)} monitors: {what}",
        "monitors": monitors,
        "occurred_at": alerts[-1].get("occurred_at"),
        "host": alerts[0].get("host"),
        "alerts": alerts,
    }


def defuse(text: str) -> str:
    """Break mass mentions (@everyone, <!channel>, <@123>) with a zero-width space."""
    return _MENTIONS.sub(lambda m: m.group(0)[0] + "\u200b" + m.group(0)[1:], text)


def cut(text: str, limit: int) -> str:
    """Keep the last `limit` characters (the end of the output is where errors are)."""
    if len(text) <= limit:
        return text
    if limit < 2:
        return "…"[:max(0, limit)]
    return "…" + text[-(limit - 1):]


def head(text: str, limit: int) -> str:
    """Keep the first `limit` characters."""
    return text if len(text) <= limit else text[:max(0, limit - 1)] + "…"


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def utf16_size(text: str) -> int:
    """Length as Telegram and JavaScript count it."""
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, limit: int, fmt: Callable[[str], str], keep_end: bool = False, *,
        size: Callable[[str], int] = len) -> str:
    """`text` shortened (its start kept, or its end for output) so that `fmt(text)`
    measures at most `limit` by `size` (escaping can make text longer)."""
    shorten = cut if keep_end else head
    n = limit
    out = fmt(shorten(text, n))
    while size(out) > limit and n > 2:
        n = max(2, n - (size(out) - limit))
        out = fmt(shorten(text, n))
    return out


def fit_lines(lines: list[str], limit: int, *, size: Callable[[str], int] = len) -> str:
    """As many lines as fit in `limit`, then how many were left out."""
    if sum(size(line) + 1 for line in lines) <= limit + 1:
        return "\n".join(lines)
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + size(line) + 1 > limit - 40:
            break
        kept.append(line)
        used += size(line) + 1
    return "\n".join([*kept, f"… and {len(lines) - len(kept)} more"])


def title(payload: dict[str, Any]) -> str:
    severity = str(payload.get("severity", "")).upper()
    if is_digest(payload):
        return f"[{severity}] {payload['summary']}"
    tag = " (reminder)" if payload.get("reminder") else ""
    tag = " (escalated)" if payload.get("escalation") else tag
    return f"[{severity}] {payload.get('monitor')}: {payload.get('event')}{tag}"


def context_lines(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs a person needs to act; empty values left out."""
    run = payload.get("run") or {}
    pairs = [
        ("Job", payload.get("monitor")),
        ("Host", payload.get("host")),
        ("Event", payload.get("event")),
        ("Severity", payload.get("severity")),
        ("When", payload.get("occurred_at")),
        ("Expected by", payload.get("expected_at")),
        ("Last success", payload.get("last_success") or "never"),
        ("Duration", None if run.get("duration_s") is None else f"{run['duration_s']} s"),
        ("Exit status", run.get("exit_status")),
        ("Incident", payload.get("incident")),
    ]
    if payload.get("suppressed"):
        pairs.append(("Also down (not paged)", ", ".join(payload["suppressed"])))
    return [(label, str(value)) for label, value in pairs if value is not None and value != ""]


def links(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [(name.capitalize(), url) for name, url in (payload.get("links") or {}).items() if url]


def plain_text(payload: dict[str, Any], log_limit: int = 4000) -> str:
    """The whole alert (or digest) as plain text."""
    if is_digest(payload):
        parts = [payload["summary"], ""]
        for alert in payload["alerts"]:
            parts.append(f"- {alert.get('summary')}")
        return defuse("\n".join(parts)) + "\n"
    lines = [str(payload.get("summary", "")), ""]
    lines += [f"{label + ':':<14}{value}" for label, value in context_lines(payload)]
    lines += [f"{label + ':':<14}{url}" for label, url in links(payload)]
    log = payload.get("log") or ""
    if log:
        lines += ["", "Output (tail):", cut(log, log_limit)]
    return defuse("\n".join(lines)) + "\n"
