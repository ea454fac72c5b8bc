"""What people do about incidents, over HTTP: acknowledge (API and signed
one-click link), note, resolve, pause and resume.

Each action goes through the state machine (:meth:`Daemon.act`), so it lands
in the incident's timeline in the same transaction as the state change, and an
action that does not apply (acknowledging a closed incident) is a ``409`` with
the reason, leaving everything as it was.
"""

from __future__ import annotations

import json
from datetime import timedelta
from html import escape
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import acklinks, pages
from . import store as sql
from .api import DAEMON, _auth
from .monitor import Ack, IllegalEvent, Pause, Resolve, Resume
from .units import parse_duration

if TYPE_CHECKING:
    from .daemon import Daemon


class ActionError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.body_exists:
        return {}
    try:
        data = json.loads(await request.read() or b"{}")
    except ValueError:
        raise ActionError(400, "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ActionError(400, "the body must be a JSON object")
    return data


async def open_incident_monitor(daemon: "Daemon", incident_id: int) -> str:
    """The monitor whose current open incident is `incident_id`."""
    row = await daemon.store.incident(incident_id)
    if row is None:
        raise ActionError(404, f"no incident {incident_id}")
    state = daemon.states.get(row["monitor"])
    if row["closed_at"] is not None or state is None or state.incident is None \
            or state.incident.seq != row["seq"]:
        raise ActionError(409, f"incident {incident_id} is closed")
    return str(row["monitor"])


async def acknowledge(daemon: "Daemon", incident_id: int, by: str, via: str, note: str | None) -> None:
    name = await open_incident_monitor(daemon, incident_id)
    try:
        await daemon.act(name, Ack(by=by, via=via, note=note))
    except IllegalEvent as exc:
        raise ActionError(409, str(exc)) from None


def _text_field(data: dict[str, Any], key: str, limit: int = 2000) -> str | None:
    """A free-text field of a JSON body as a string (whatever JSON type was sent)."""
    value = data.get(key)
    return None if value is None else str(value)[:limit]


def _who(request: web.Request, data: dict[str, Any]) -> str:
    return str(data.get("by") or request.headers.get("X-Cronwarden-User") or "api")[:100]


def _json_errors(handler):  # type: ignore[no-untyped-def]
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ActionError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        except IllegalEvent as exc:
            return web.json_response({"error": str(exc)}, status=409)
        except KeyError as exc:
            return web.json_response({"error": f"unknown monitor {exc}"}, status=404)

    return wrapped


def _incident_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise ActionError(404, f"no incident {raw[:20]}")
    return int(raw)


@_auth
@_json_errors
async def api_ack(request: web.Request) -> web.Response:
    data = await _body(request)
    incident_id = _incident_id(request)
    await acknowledge(request.app[DAEMON], incident_id, _who(request, data), str(data.get("via") or "api")[:20],
                      _text_field(data, "note"))
    return web.json_response({"acknowledged": incident_id})


@_auth
@_json_errors
async def api_resolve(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    data = await _body(request)
    incident_id = _incident_id(request)
    name = await open_incident_monitor(daemon, incident_id)
    await daemon.act(name, Resolve(by=_who(request, data), note=_text_field(data, "note")))
    return web.json_response({"resolved": incident_id})


@_auth
@_json_errors
async def api_note(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    data = await _body(request)
    incident_id = _incident_id(request)
    text = str(data.get("text") or "").strip()
    if not text:
        raise ActionError(400, "a note needs some text")
    if await daemon.store.incident(incident_id) is None:
        raise ActionError(404, f"no incident {incident_id}")
    now = daemon.clock.time()
    await daemon.store.write([sql.insert_incident_event(
        daemon.store.next_id("incident_events"), incident_id, now, "note",
        {"by": _who(request, data), "text": text[:10000]})])
    return web.json_response({"noted": incident_id})


@_auth
@_json_errors
async def api_pause(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    data = await _body(request)
    name = request.match_info["name"]
    until = None
    if data.get("for") not in (None, ""):
        try:
            until = daemon.clock.now() + timedelta(seconds=parse_duration(data["for"]))
        except ValueError as exc:
            raise ActionError(400, str(exc)) from None
    await daemon.act(name, Pause(until=until, reason=_text_field(data, "reason"), by=_who(request, data)))
    return web.json_response({"paused": name, "until": until.isoformat() if until else None})


@_auth
@_json_errors
async def api_resume(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    data = await _body(request)
    name = request.match_info["name"]
    await daemon.act(name, Resume(by=_who(request, data)))
    return web.json_response({"resumed": name})


# ------------------------------------------------------------ one-click links


async def _checked_link(request: web.Request) -> tuple["Daemon", int, str]:
    daemon = request.app[DAEMON]
    raw, given = request.match_info["id"], request.match_info["token"]
    if not raw.isdigit() or not acklinks.verify(daemon.ack_secret, int(raw), given):
        raise ActionError(403, "this acknowledgement link is not valid")
    incident_id = int(raw)
    return daemon, incident_id, await open_incident_monitor(daemon, incident_id)


async def ack_link_page(request: web.Request) -> web.Response:
    """GET shows what would be acknowledged and a button: link previewers and
    mail scanners fetch links, so only the POST acknowledges."""
    try:
        daemon, incident_id, name = await _checked_link(request)
    except ActionError as exc:
        return pages.message(exc.status, "Cannot acknowledge", str(exc))
    state = daemon.states[name]
    assert state.incident is not None
    if state.incident.acked:
        return pages.message(200, "Already acknowledged", f"Incident {incident_id} of {name} is acknowledged.")
    return pages.confirm(
        f"Acknowledge incident {incident_id}?",
        f"{escape(name)}: {escape(state.incident.kind.value)} since "
        f"{escape(state.incident.opened_at.isoformat(timespec='seconds'))}",
        request.path, "Acknowledge")


async def ack_link_post(request: web.Request) -> web.Response:
    try:
        daemon, incident_id, name = await _checked_link(request)
        await acknowledge(daemon, incident_id, "link", "link", None)
    except ActionError as exc:
        return pages.message(exc.status, "Cannot acknowledge", str(exc))
    return pages.message(200, "Acknowledged", f"Incident {incident_id} of {name} is acknowledged: "
                                              f"reminders and escalation stop.")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/incidents/{id}/ack", api_ack)
    app.router.add_post("/api/v1/incidents/{id}/resolve", api_resolve)
    app.router.add_post("/api/v1/incidents/{id}/notes", api_note)
    app.router.add_post("/api/v1/monitors/{name}/pause", api_pause)
    app.router.add_post("/api/v1/monitors/{name}/resume", api_resume)
    app.router.add_get("/ack/{id}/{token}", ack_link_page)
    app.router.add_post("/ack/{id}/{token}", ack_link_post)
