"""The JSON API under /api/v1/ and the pages that render the same data."""

from __future__ import annotations

import asyncio
import hmac
import json
from urllib.parse import urlsplit
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from . import postmortem
from .monitor import _iso, due_at, effective_status
from .stats import HISTORY, summarize

if TYPE_CHECKING:
    from .daemon import Daemon

DAEMON: web.AppKey["Daemon"] = web.AppKey("daemon")


def authorized(request: web.Request) -> bool:
    """No token configured, or the bearer header or the dashboard's cookie carries it
    (compared in constant time)."""
    token = request.app[DAEMON].config.server.api_token()
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    cookie = request.cookies.get("cronwarden_token", "")
    return (hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
            | hmac.compare_digest(cookie.encode(), token.encode()))


def cross_site(request: web.Request) -> bool:
    """A state-changing request sent by another site's page in the operator's browser
    (the browser says so in Sec-Fetch-Site or Origin). The CLI and curl send neither."""
    if request.headers.get("Sec-Fetch-Site", "") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    return origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host)


def _auth(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):  # type: ignore[no-untyped-def]
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD") and cross_site(request):
            return web.json_response({"error": "refused: sent from another site"}, status=403)
        if not authorized(request):
            if not request.path.startswith("/api/"):
                raise web.HTTPSeeOther("/login")  # a person at the dashboard
            return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return wrapped


def monitor_json(daemon: "Daemon", name: str) -> dict[str, Any]:
    cfg = daemon.config.monitors[name]
    state = daemon.states[name]
    now = daemon.clock.now()
    incident = state.incident
    return {
        "name": name,
        "status": effective_status(cfg, state, now).value,
        "schedule": {"every": cfg.every, "cron": cfg.cron, "timezone": cfg.timezone, "grace": cfg.grace},
        "severity": cfg.severity.value,
        "tags": list(cfg.tags),
        "created_at": _iso(state.created_at),
        "last_ping": _iso(state.last_ping),
        "last_success": _iso(state.last_success),
        "next_due": _iso(due_at(cfg, state)),
        "last_duration_s": state.last_duration,
        "consecutive_failures": state.failures,
        "running": [{"started_at": _iso(r.started_at), "rid": r.rid, "hung": r.hung} for r in state.open_runs],
        "incident": None if incident is None else {
            "id": daemon.incident_ids.get((name, incident.seq)),
            "event": incident.kind.value,
            "opened_at": _iso(incident.opened_at),
            "acknowledged": incident.acked,
            "held_for_maintenance": incident.held,
        },
        "paused": None if not state.paused else {
            "until": _iso(state.paused_until), "reason": state.pause_reason,
        },
    }


@_auth
async def api_monitors(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response({"monitors": [monitor_json(daemon, n) for n in sorted(daemon.states)]})


async def monitor_detail(daemon: "Daemon", name: str, runs: int) -> dict[str, Any]:
    data = monitor_json(daemon, name)
    rows = await daemon.store.recent_runs(name, runs)
    data["runs"] = [run_json(r) for r in rows]
    data["pings"] = await daemon.store.ping_count(name)
    summary = summarize(await daemon.store.recent_durations(name, HISTORY))
    data["durations"] = summary.to_json() if summary else None
    return data


def run_json(r: Any) -> dict[str, Any]:
    return {
        "started_at": _iso_ts(r["started_at"]),
        "ended_at": _iso_ts(r["ended_at"]),
        "duration_s": r["duration_s"],
        "exit_status": r["exit_status"],
        "rid": r["rid"],
        "metadata": json.loads(r["metadata"]) if r["metadata"] else None,
        "output": (r["body"] or b"").decode("utf-8", errors="replace"),
    }


def _runs_param(request: web.Request) -> int:
    raw = request.query.get("runs", "20")
    return min(max(int(raw), 1), 500) if raw.isdigit() else 20


@_auth
async def api_monitor(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    name = request.match_info["name"]
    if name not in daemon.states:
        return web.json_response({"error": f"unknown monitor '{name[:80]}'"}, status=404)
    return web.json_response(await monitor_detail(daemon, name, _runs_param(request)))


def _iso_ts(ts: float | None) -> str | None:
    return None if ts is None else _iso(datetime.fromtimestamp(ts, timezone.utc))


def incident_json(daemon: "Daemon", row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "monitor": row["monitor"],
        "event": row["kind"],
        "severity": row["severity"],
        "summary": row["summary"],
        "opened_at": _iso_ts(row["opened_at"]),
        "closed_at": _iso_ts(row["closed_at"]),
        "open": row["closed_at"] is None,
    }


@_auth
async def api_incidents(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    rows = await daemon.store.incidents(request.query.get("monitor"), request.query.get("open") in ("1", "true"))
    return web.json_response({"incidents": [incident_json(daemon, r) for r in rows]})


async def incident_detail(daemon: "Daemon", row: Any) -> dict[str, Any]:
    data = incident_json(daemon, row)
    data["timeline"] = [{"at": _iso_ts(e["at"]), "kind": e["kind"], **json.loads(e["detail"])}
                        for e in await daemon.store.incident_events(row["id"])]
    deliveries: dict[int, dict[str, Any]] = {}
    for d in await daemon.store.deliveries(row["id"]):
        item = deliveries.setdefault(d["outbox_id"], {
            "id": d["outbox_id"], "channel": d["channel"], "event": d["event"], "state": d["state"],
            "created_at": _iso_ts(d["created_at"]), "attempts": []})
        if d["at"] is not None:
            item["attempts"].append({"at": _iso_ts(d["at"]), "ok": bool(d["ok"]), "status": d["status"],
                                     "error": d["error"], "answer": d["answer"],
                                     "duration_ms": round(d["duration_ms"], 1)})
    data["deliveries"] = list(deliveries.values())
    return data


async def _incident_row(request: web.Request) -> Any:
    raw = request.match_info["id"]
    row = await request.app[DAEMON].store.incident(int(raw)) if raw.isdigit() else None
    if row is None:
        raise web.HTTPNotFound(text=json.dumps({"error": f"no incident {raw[:20]}"}),
                               content_type="application/json")
    return row


@_auth
async def api_incident(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    return web.json_response(await incident_detail(daemon, await _incident_row(request)))


@_auth
async def api_postmortem(request: web.Request) -> web.Response:
    """The incident's post-mortem draft as Markdown."""
    daemon = request.app[DAEMON]
    row = await _incident_row(request)
    detail = await incident_detail(daemon, row)
    end = row["closed_at"] or daemon.clock.time()
    runs = await daemon.store.runs_between(row["monitor"], row["opened_at"] - 7 * 86400, end + 3600, 40)
    text = postmortem.render(detail, [run_json(r) for r in runs], daemon.dependents.get(row["monitor"], []))
    return web.Response(text=text, content_type="text/markdown")


@_auth
async def api_test_alert(request: web.Request) -> web.Response:
    """Send a test alert through the channel's real path and report what it answered."""
    daemon = request.app[DAEMON]
    name = request.match_info["name"]
    if name not in daemon.config.channels:
        return web.json_response({"error": f"unknown channel '{name[:80]}'"}, status=404)
    channel = daemon.config.channels[name]
    outbox_id = await daemon.test_alert(name)
    deadline = asyncio.get_running_loop().time() + channel.group_window + channel.timeout + 10
    row = await daemon.store.outbox_row(outbox_id)
    while row is not None and row["state"] == "pending" and row["attempts"] == 0 \
            and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        row = await daemon.store.outbox_row(outbox_id)
    attempts = await daemon.store.attempts(outbox_id)
    last = attempts[-1] if attempts else None
    body = {
        "channel": name,
        "type": channel.type,
        "delivered": row is not None and row["state"] == "sent",
        "state": row["state"] if row else None,
        "status": last["status"] if last else None,
        "answer": last["answer"] if last else None,
        "error": last["error"] if last else "no attempt finished in time",
    }
    return web.json_response(body, status=200 if body["delivered"] else 502)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/monitors", api_monitors)
    app.router.add_get("/api/v1/monitors/{name}", api_monitor)
    app.router.add_get("/api/v1/incidents", api_incidents)
    app.router.add_get("/api/v1/incidents/{id}", api_incident)
    app.router.add_get("/api/v1/incidents/{id}/postmortem", api_postmortem)
    app.router.add_post("/api/v1/channels/{name}/test", api_test_alert)
