"""``type: pagerduty``: PagerDuty Events API v2.

API: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ --
POST JSON to ``{url or https://events.pagerduty.com}/v2/enqueue`` with the
integration key (``routing_key_env``, redacted from errors) as
``routing_key``. Every alert, reminders included, is a ``trigger``; a
``recovered`` alert is a ``resolve``. ``dedup_key`` is
``cronwarden-{incident}``, so reminders and retries fold into one PagerDuty
incident and the recovery resolves it (an alert without an incident, such as
a one-off slow run, uses the delivery id so a retry is still dropped).

A trigger carries ``payload`` {summary, source (host), severity
(critical|warning|info as is), timestamp, component (monitor), group, class
(event), custom_details {run, log tail, expected_at, last_success, ...}},
``links`` [{href, text}] (dashboard, ack, runbook), ``client`` and
``client_url`` (the dashboard).

Limits: summary 1024 characters, a whole event 512 KB (the output tail in
custom_details is cut to 8000 characters). PagerDuty answers 202; 400
(invalid event) is permanent, 429 (throttled) and 5xx are transient.
Digests never reach PagerDuty (its group_window is forced to 0); one that
does is refused as a permanent error.
"""

from __future__ import annotations

from typing import Any

from ..config import ChannelConfig
from . import DeliveryError, SendContext, post, render, require

API = "https://events.pagerduty.com"
SUMMARY = 1024
LOG = 8000
SEVERITIES = {"critical", "warning", "info", "error"}


def build(payload: dict[str, Any], routing_key: str, delivery_id: str) -> dict[str, Any]:
    incident = payload.get("incident")
    dedup_key = f"cronwarden-{incident}" if incident is not None else f"cronwarden-{delivery_id}"
    event: dict[str, Any] = {"routing_key": routing_key, "dedup_key": dedup_key}
    if payload.get("event") == "recovered":
        event["event_action"] = "resolve"
        return event
    links = payload.get("links") or {}
    details = {
        "event": payload.get("event"),
        "reminder": bool(payload.get("reminder")),
        "incident": incident,
        "expected_at": payload.get("expected_at"),
        "last_success": payload.get("last_success"),
        "schedule": payload.get("schedule"),
        "run": payload.get("run"),
        "log": render.cut(render.defuse(payload.get("log") or ""), LOG),
    }
    summary = render.defuse(str(payload.get("summary") or render.title(payload)))
    body = {
        "summary": summary if len(summary) <= SUMMARY else summary[:SUMMARY - 1] + "…",
        "source": payload.get("host") or "cronwarden",
        "severity": payload.get("severity") if payload.get("severity") in SEVERITIES else "error",
        "component": payload.get("monitor"),
        "group": "cronwarden",
        "class": payload.get("event"),
        "custom_details": {k: v for k, v in details.items() if v is not None},
    }
    if payload.get("occurred_at"):
        body["timestamp"] = payload["occurred_at"]
    event.update({
        "event_action": "trigger",
        "payload": body,
        "client": "cronwarden",
        "links": [{"href": url, "text": label} for label, url in render.links(payload)],
    })
    if links.get("dashboard"):
        event["client_url"] = links["dashboard"]
    return event


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> int | None:
    if render.is_digest(payload):
        raise DeliveryError(f"channel {channel.name}: PagerDuty takes one event per alert, not a digest "
                            f"(its group_window must be 0)", permanent=True)
    routing_key = require(channel, "routing_key_env")
    url = f"{(channel.target_url() or API).rstrip('/')}/v2/enqueue"
    return await post(channel, ctx, url, json=build(payload, routing_key, delivery_id), secrets=[routing_key])
