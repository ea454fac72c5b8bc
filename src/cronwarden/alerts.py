"""Turn a state-machine :class:`Decision` into database statements.

The incident rows, timeline events and one outbox row per channel are built
here so that the daemon can commit them in the same transaction as the state
change that caused them (the outbox rule).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

from . import fastjson
from . import store as sql
from .config import Config, MonitorConfig
from .monitor import Alert, AlertKind, Decision, _iso
from .store import Statement, Store

LOG_TAIL_BYTES = 4096
HOST = socket.gethostname()


@dataclass(slots=True)
class Outcome:
    """What one decision adds to a write, and what to do after the commit."""

    statements: list[Statement] = field(default_factory=list)
    # the outbox rows these statements insert, with their payloads, for the channels'
    # workers once committed (see ChannelWorker.offer); apply_alerts gives lists, a
    # decision with no alert the empty tuple (no lists to build on every ping)
    outbox: Sequence[dict[str, Any]] = ()
    logged: Sequence[dict[str, Any]] = ()  # alerts with no channel: log them
    alerts: int = 0  # alerts this decision raised (sent or recorded), for /metrics
    monitor: str = ""  # whose state the statements change


def tail(body: bytes | None, limit: int = LOG_TAIL_BYTES) -> str:
    if not body:
        return ""
    return body[-limit:].decode("utf-8", errors="replace")


def test_payload(config: Config, now: datetime) -> dict[str, Any]:
    """What `cronwarden test-alert` sends: shaped like a real alert, clearly a test."""
    return {
        "event": "test", "monitor": "test-alert", "status": "up", "severity": "info",
        "summary": f"Test alert from cronwarden on {HOST}: if you can read this, the channel works.",
        "occurred_at": _iso(now), "incident": None, "reminder": False, "escalation": 0,
        "expected_at": None, "last_success": None, "schedule": None, "host": HOST,
        "run": None, "log": "", "links": {"dashboard": config.server.base_url.rstrip("/") + "/"},
        "suppressed": [],
    }


def channels_for(cfg: MonitorConfig, alert: Alert) -> list[str]:
    """Escalation steps go to their own channels; everything else to the monitor's
    channels plus those of the escalation steps already sent (so the people who
    were paged also hear the reminder and the recovery)."""
    if alert.escalation:
        return list(cfg.escalate[alert.escalation - 1].channels)
    channels = list(cfg.channels)
    for step in cfg.escalate[:alert.escalated]:
        channels += [c for c in step.channels if c not in channels]
    return channels


def build_payload(config: Config, cfg: MonitorConfig, alert: Alert, incident_id: int | None,
                  decision: Decision, output: str, suppressed: list[str] | None = None,
                  ack_url: Callable[[int], str] | None = None) -> dict[str, Any]:
    base = config.server.base_url.rstrip("/")
    links = {"dashboard": f"{base}/monitors/{cfg.name}"}
    if ack_url is not None and incident_id is not None and alert.kind is not AlertKind.RECOVERED:
        links["ack"] = ack_url(incident_id)
    if cfg.runbook:
        links["runbook"] = cfg.runbook
    state = decision.state
    return {
        "event": alert.kind.value,
        "monitor": cfg.name,
        "status": "up" if alert.kind in (AlertKind.RECOVERED, AlertKind.SLOW) and state.incident is None
        else "down",
        "severity": "info" if alert.kind is AlertKind.RECOVERED else cfg.severity.value,
        "summary": alert.summary,
        "occurred_at": _iso(alert.at),
        "incident": incident_id,
        "reminder": alert.reminder,
        "escalation": alert.escalation,
        "expected_at": _iso(alert.expected_at),
        "last_success": _iso(state.last_success),
        "schedule": cfg.schedule_text,
        "host": HOST,
        "run": alert.run.to_json() if alert.run else None,
        "log": output,
        "links": links,
        "suppressed": suppressed or [],
    }


def apply_alerts(store: Store, config: Config, cfg: MonitorConfig, decision: Decision,
                 incident_ids: dict[tuple[str, int], int], output: str, now: datetime,
                 suppressed: list[str] | None = None, ack_url: Callable[[int], str] | None = None) -> Outcome:
    """Statements for `decision`'s alerts. `suppressed`: monitors that depend on this
    one and are down meanwhile; their alerts were not sent, so this one lists them."""
    outbox: list[dict[str, Any]] = []
    logged: list[dict[str, Any]] = []
    out = Outcome(outbox=outbox, logged=logged, alerts=len(decision.alerts), monitor=cfg.name)
    at = now.timestamp()
    for alert in decision.alerts:
        incident_id = None
        if alert.incident_seq is not None:
            key = (cfg.name, alert.incident_seq)
            if alert.opens or key not in incident_ids:
                incident_ids[key] = store.next_id("incidents")
                out.statements.append(sql.upsert_incident(
                    incident_ids[key], cfg.name, alert.incident_seq, alert.kind.value,
                    cfg.severity.value, alert.summary, at, None))
            incident_id = incident_ids[key]
            if alert.closes:
                out.statements.append(sql.close_incident(incident_id, cfg.name, alert.incident_seq, at))
        channels = channels_for(cfg, alert) if alert.notify else []
        if incident_id is not None:
            kind = "reminder" if alert.reminder else alert.kind.value
            out.statements.append(sql.insert_incident_event(
                store.next_id("incident_events"), incident_id, at, kind,
                {"summary": alert.summary, "notified": alert.notify, "channels": channels}))
        if not alert.notify:
            continue  # recorded in the incident only: no payload to build
        payload = build_payload(config, cfg, alert, incident_id, decision, output, suppressed, ack_url)
        if not channels:
            logged.append(payload)
            continue
        encoded = fastjson.dumps(payload)
        event = alert.kind.value
        for channel in channels:
            outbox_id = store.next_id("outbox")
            out.statements.append(sql.insert_outbox(outbox_id, channel, cfg.name, incident_id, event, encoded, at))
            outbox.append({"id": outbox_id, "channel": channel, "monitor": cfg.name, "incident_id": incident_id,
                               "event": event, "payload": payload, "created_at": at, "attempts": 0})
    for note in decision.notes:
        key = (cfg.name, note.incident_seq) if note.incident_seq is not None else None
        if key is not None and key in incident_ids:
            out.statements.append(sql.insert_incident_event(
                store.next_id("incident_events"), incident_ids[key], at, note.kind, note.detail))
    return out
