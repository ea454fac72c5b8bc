"""Minimal server-rendered pages: the monitor list at ``/`` and one page per
monitor at ``/monitors/NAME`` (the ``links.dashboard`` of every alert).
Every byte of job output is HTML-escaped."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .daemon import Daemon

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'self'"
STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:1rem;max-width:70rem}
table{border-collapse:collapse;width:100%}td,th{padding:.3rem .5rem;border-bottom:1px solid #ddd;text-align:left}
.down{color:#b00;font-weight:bold}.late{color:#b60}.up{color:#070}.running{color:#05a}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;white-space:pre-wrap;max-height:20rem}"""


REFRESH = "<meta http-equiv=refresh content=30>"


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


def _page(title: str, body: str, refresh: bool = False) -> web.Response:
    html = (f"<!doctype html><html><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"{REFRESH if refresh else ''}<title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")
    return web.Response(text=html, content_type="text/html",
                        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})


def index(daemon: "Daemon", monitors: list[dict]) -> web.Response:  # type: ignore[type-arg]
    rows = "".join(
        f"<tr><td><a href='/monitors/{escape(m['name'])}'>{escape(m['name'])}</a></td>"
        f"<td class='{escape(m['status'])}'>{escape(m['status'])}</td>"
        f"<td>{escape(m['last_success'] or 'never')}</td><td>{escape(m['next_due'] or '')}</td>"
        f"<td>{_secs(m['last_duration_s'])}</td></tr>"
        for m in monitors)
    return _page("cronwarden", "<h1>cronwarden</h1><table><tr><th>monitor</th><th>status</th>"
                 f"<th>last success</th><th>next due</th><th>last duration</th></tr>{rows}</table>", refresh=True)


def monitor_page(data: dict) -> web.Response:  # type: ignore[type-arg]
    name = escape(data["name"])
    incident = data.get("incident")
    runs = "".join(
        f"<tr><td>{escape(r['ended_at'] or '')}</td>"
        f"<td>{_secs(r['duration_s'])}</td>"
        f"<td>{'' if r['exit_status'] is None else r['exit_status']}</td>"
        f"<td><pre>{escape(r['output'][-2000:])}</pre></td></tr>"
        for r in data.get("runs", []))
    inc = (f"<p class=down>Incident {incident['id']}: {escape(incident['event'])} since "
           f"{escape(incident['opened_at'])}{' (acknowledged)' if incident['acknowledged'] else ''}</p>"
           if incident else "")
    if data.get("ack_link"):
        inc += (f"<form method=post action='{escape(data['ack_link'])}'>"
                f"<button type=submit>Acknowledge</button></form>")
    if data.get("paused"):
        until = data["paused"].get("until") or "resumed"
        inc += f"<p>Paused until {escape(until)}: {escape(data['paused'].get('reason') or '')}</p>"
    return _page(f"{data['name']} — cronwarden",
                 f"<p><a href='/'>all monitors</a></p><h1>{name}</h1>"
                 f"<p>Status: <b class='{escape(data['status'])}'>{escape(data['status'])}</b> · "
                 f"last success {escape(data['last_success'] or 'never')} · next due "
                 f"{escape(data['next_due'] or '')}</p>{inc}"
                 f"<table><tr><th>ended</th><th>duration</th><th>exit</th><th>output</th></tr>{runs}</table>",
                 refresh=True)


def message(status: int, heading: str, text: str) -> web.Response:
    response = _page(heading, f"<h1>{escape(heading)}</h1><p>{escape(text)}</p>")
    response.set_status(status)
    return response


def confirm(heading: str, detail_html: str, action: str, button: str) -> web.Response:
    """A page with one POST button (detail_html must already be escaped)."""
    return _page(heading, f"<h1>{escape(heading)}</h1><p>{detail_html}</p>"
                          f"<form method=post action='{escape(action)}'><button type=submit "
                          f"style='font-size:1.2rem;padding:.6rem 1.2rem'>{escape(button)}</button></form>")
