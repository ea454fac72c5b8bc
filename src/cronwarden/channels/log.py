"""``type: log``: one line per alert in the daemon's own log."""

from __future__ import annotations

import logging
from typing import Any

from ..config import ChannelConfig
from . import SendContext

log = logging.getLogger("cronwarden.alert")


def format_line(payload: dict[str, Any]) -> str:
    run = payload.get("run") or {}
    parts = [
        f"ALERT [{payload.get('severity')}] {payload.get('event')}{' (reminder)' if payload.get('reminder') else ''}",
        f"monitor={payload.get('monitor')}",
        f"incident={payload.get('incident')}",
        f"summary={payload.get('summary')!r}",
    ]
    if run.get("exit_status") is not None:
        parts.append(f"exit_status={run['exit_status']}")
    if run.get("duration_s") is not None:
        parts.append(f"duration_s={run['duration_s']}")
    tail = (payload.get("log") or "").strip().splitlines()
    if tail:
        parts.append(f"last_output={tail[-1][:200]!r}")
    return " ".join(parts)


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> None:
    log.warning("%s channel=%s id=%s", format_line(payload), channel.name, delivery_id)
    return None
