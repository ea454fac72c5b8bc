"""The dashboard: server-rendered HTML, no front-end build, no JavaScript.

``/`` lists the monitors with their state, filterable by state and tag;
``/monitors/NAME`` shows one monitor's runs (duration, exit status, output),
a duration chart, its incidents and the acknowledge / pause / resume
buttons. Pages refresh themselves, fit a phone screen, escape every byte of
job output, and are sent with a Content-Security-Policy that allows no
script at all. Buttons are plain forms that POST and redirect back.

When an API token is configured, the dashboard asks for it once (``/login``)
and keeps it in an HttpOnly, SameSite=Strict cookie; the POST handlers also
check that the request comes from this origin.
"""

from __future__ import annotations

import hmac
from collections import Counter
from datetime import timedelta
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from aiohttp import web

from . import pages, postmortem
from .api import DAEMON, _auth, _iso_ts, monitor_detail, monitor_json
from .monitor import IllegalEvent, Pause, Resume
from .units import format_duration, parse_duration

if TYPE_CHECKING:
    from .daemon import Daemon

STATES = ("down", "late", "running", "up", "new", "paused")
COOKIE = "cronwarden_token"


def _ts(iso: str | None) -> str:
    return "never" if not iso else iso.replace("T", " ").replace("Z", "")[:19]


def _dur(value: float | None) -> str:
    return "" if value is None else format_duration(value)


def _badge(state: str) -> str:
    return f"<span class='st {escape(state)}'>{escape(state)}</span>"


# ------------------------------------------------------------ pages


@_auth
async def index(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    everything = [monitor_json(daemon, n) for n in sorted(daemon.states)]
    state, tag = request.query.get("state", ""), request.query.get("tag", "")
    shown = [m for m in everything if (not state or m["status"] == state) and (not tag or tag in m["tags"])]
    counts = Counter(m["status"] for m in everything)
    tags = sorted({t for m in everything for t in m["tags"]})

    def link(label: str, **query: str) -> str:
        params = {"state": state, "tag": tag, **query}
        active = all(params[k] == v for k, v in query.items())
        href = "/?" + urlencode({k: v for k, v in params.items() if v})
        return f"<a class='f{' on' if active else ''}' href='{escape(href)}'>{escape(label)}</a>"

    filters = link(f"all {len(everything)}", state="") + "".join(
        link(f"{s} {counts[s]}", state=s) for s in STATES if counts[s])
    if tags:
        filters += "<br>tags: " + link("any", tag="") + "".join(link(t, tag=t) for t in tags)
    rows = "".join(
        f"<tr><td><a href='/monitors/{quote(m['name'])}'>{escape(m['name'])}</a></td>"
        f"<td>{_badge(m['status'])}</td><td>{escape(_ts(m['last_success']))}</td>"
        f"<td>{escape(_ts(m['next_due']))}</td><td>{escape(_dur(m['last_duration_s']))}</td></tr>"
        for m in shown)
    body = (f"<h1>cronwarden</h1><nav>{filters}</nav>"
            f"<table id=monitors><thead><tr><th>monitor</th><th>state</th><th>last success</th>"
            f"<th>next due</th><th>last run</th></tr></thead><tbody>{rows}</tbody></table>"
            + ("" if shown else "<p>No monitor matches.</p>"))
    return pages.page("cronwarden", body, refresh=True)


@_auth
async def monitor_page(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    name = request.match_info["name"]
    if name not in daemon.states:
        return pages.message(404, "Unknown monitor", f"There is no monitor named {name[:80]}.")
    data = await monitor_detail(daemon, name, 50)
    incidents = await daemon.store.incidents(name, limit=10)
    base = f"/monitors/{quote(name)}"
    parts = [f"<p><a href='/'>← all monitors</a></p><h1>{escape(name)} {_badge(data['status'])}</h1>",
             f"<p>last success {escape(_ts(data['last_success']))} · next due {escape(_ts(data['next_due']))}"
             f" · last ping {escape(_ts(data['last_ping']))}</p>"]
    incident = data.get("incident")
    if incident:
        parts.append(f"<p class=alert>Incident {incident['id']}: {escape(incident['event'])} since "
                     f"{escape(_ts(incident['opened_at']))}"
                     f"{' · acknowledged' if incident['acknowledged'] else ''}</p>")
        if not incident["acknowledged"] and incident.get("id"):
            parts.append(_button(f"{base}/ack", "Acknowledge", "ack"))
    if data.get("paused"):
        until = data["paused"].get("until")
        reason = data["paused"].get("reason")
        parts.append(f"<p>Paused {'until ' + escape(_ts(until)) if until else 'until resumed'}"
                     f"{': ' + escape(reason) if reason else ''}</p>")
        parts.append(_button(f"{base}/resume", "Resume", "resume"))
    else:
        parts.append(f"<form method=post action='{escape(base)}/pause' class=inline>"
                     "<input name=for placeholder='for, e.g. 2h' size=10>"
                     "<input name=reason placeholder='reason' size=16>"
                     "<button type=submit id=pause>Pause</button></form>")
    runs = data.get("runs", [])
    chart = postmortem.duration_chart(runs, None, None, width=560, height=140)
    if chart:
        parts.append(f"<h2>Durations</h2><div class=chart>{chart}</div>")
    parts.append("<h2>Runs</h2>")
    if runs:
        parts.append("<table id=runs><thead><tr><th>ended</th><th>duration</th><th>exit</th><th>output</th>"
                     "</tr></thead><tbody>" + "".join(
                         f"<tr><td>{escape(_ts(r['ended_at']))}</td><td>{escape(_dur(r['duration_s']))}</td>"
                         f"<td>{'' if r['exit_status'] is None else r['exit_status']}</td>"
                         f"<td><pre>{escape(r['output'][-4000:])}</pre></td></tr>" for r in runs)
                     + "</tbody></table>")
    else:
        parts.append("<p>No runs yet.</p>")
    if incidents:
        parts.append("<h2>Incidents</h2><table id=incidents><tbody>" + "".join(
            f"<tr><td>{row['id']}</td><td>{escape(row['kind'])}</td>"
            f"<td>{escape(_ts(_iso_ts(row['opened_at'])))}</td>"
            f"<td>{'open' if row['closed_at'] is None else 'closed ' + escape(_ts(_iso_ts(row['closed_at'])))}"
            f"</td><td>{escape(row['summary'])}</td></tr>" for row in incidents) + "</tbody></table>")
    return pages.page(f"{name} · cronwarden", "".join(parts), refresh=True)


def _button(action: str, label: str, ident: str) -> str:
    return (f"<form method=post action='{escape(action)}' class=inline>"
            f"<button type=submit id={ident}>{escape(label)}</button></form>")


# ------------------------------------------------------------ buttons


async def _form_action(request: web.Request, event: Any) -> web.Response:
    daemon = request.app[DAEMON]
    name = request.match_info["name"]
    try:
        await daemon.act(name, event)
    except IllegalEvent as exc:
        return pages.message(409, "Not done", str(exc))
    except KeyError:
        return pages.message(404, "Unknown monitor", f"There is no monitor named {name[:80]}.")
    raise web.HTTPSeeOther(f"/monitors/{quote(name)}")


@_auth
async def pause(request: web.Request) -> web.Response:
    form = await request.post()
    daemon: "Daemon" = request.app[DAEMON]
    until = None
    if str(form.get("for") or "").strip():
        try:
            until = daemon.clock.now() + timedelta(seconds=parse_duration(str(form["for"]).strip()))
        except ValueError as exc:
            return pages.message(400, "Not paused", str(exc))
    reason = str(form.get("reason") or "").strip()[:200] or None
    return await _form_action(request, Pause(until=until, reason=reason, by="dashboard"))


@_auth
async def resume(request: web.Request) -> web.Response:
    return await _form_action(request, Resume(by="dashboard"))


@_auth
async def ack(request: web.Request) -> web.Response:
    from .actions import ActionError, acknowledge

    daemon = request.app[DAEMON]
    name = request.match_info["name"]
    state = daemon.states.get(name)
    if state is None or state.incident is None:
        return pages.message(409, "Not done", f"{name[:80]} has no open incident")
    incident_id = daemon.incident_ids.get((name, state.incident.seq))
    try:
        await acknowledge(daemon, int(incident_id or 0), "dashboard", "dashboard", None)
    except ActionError as exc:
        return pages.message(exc.status, "Not done", str(exc))
    raise web.HTTPSeeOther(f"/monitors/{quote(name)}")


# ------------------------------------------------------------ login


async def login_page(request: web.Request) -> web.Response:
    return pages.page("Log in · cronwarden", (
        "<h1>cronwarden</h1><form method=post action='/login'>"
        "<p><label>API token <input name=token type=password autocomplete=current-password></label></p>"
        "<p><button type=submit>Log in</button></p></form>"))


async def login(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    token = daemon.config.server.api_token()
    form = await request.post()
    given = str(form.get("token") or "")
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        return pages.message(401, "Wrong token", "That is not the daemon's API token.")
    response = web.HTTPSeeOther("/")
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=daemon.config.server.base_url.startswith("https:"))
    raise response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/monitors/{name}", monitor_page)
    app.router.add_post("/monitors/{name}/pause", pause)
    app.router.add_post("/monitors/{name}/resume", resume)
    app.router.add_post("/monitors/{name}/ack", ack)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
