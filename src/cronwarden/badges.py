"""Shields-style SVG status badges: ``/badge/NAME.svg`` and ``/badge/tag/TAG.svg``.

Badges are public (no token), like the status images people put in a README
or a wiki; they say only a monitor's name and state. A tag's badge shows
the worst state among its monitors.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from .api import DAEMON
from .monitor import effective_status

COLOURS = {"up": "#4c1", "running": "#007ec6", "new": "#9f9f9f", "paused": "#9f9f9f", "late": "#fe7d37",
           "down": "#e05d44", "unknown": "#9f9f9f"}
WORST_FIRST = ("down", "late", "running", "up", "paused", "new")


def _width(text: str) -> int:
    return 10 + int(len(text) * 6.5)


def svg(label: str, value: str) -> str:
    """A flat two-part badge (the layout shields.io uses)."""
    lw, vw = _width(label), _width(value)
    colour = COLOURS.get(value, COLOURS["unknown"])
    label_e, value_e = escape(label), escape(value)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lw + vw}" height="20" role="img" '
        f'aria-label="{label_e}: {value_e}"><title>{label_e}: {value_e}</title>'
        f'<rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{vw}" height="20" fill="{colour}"/>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" '
        f'font-size="11"><text x="{lw / 2:.1f}" y="14">{label_e}</text>'
        f'<text x="{lw + vw / 2:.1f}" y="14">{value_e}</text></g></svg>'
    )


def _response(label: str, value: str, status: int = 200) -> web.Response:
    return web.Response(text=svg(label, value), status=status, content_type="image/svg+xml",
                        headers={"Cache-Control": "no-cache, max-age=0"})


async def monitor_badge(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    name = request.match_info["name"]
    if name not in daemon.states:
        return _response(name[:40], "unknown", 404)
    status = effective_status(daemon.config.monitors[name], daemon.states[name], daemon.clock.now())
    return _response(name, status.value)


async def tag_badge(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    tag = request.match_info["tag"]
    now = daemon.clock.now()
    states = {effective_status(cfg, daemon.states[name], now).value
              for name, cfg in daemon.config.monitors.items() if tag in cfg.tags and name in daemon.states}
    if not states:
        return _response(tag[:40], "unknown", 404)
    return _response(tag, next(s for s in WORST_FIRST if s in states))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/badge/tag/{tag}.svg", tag_badge)
    app.router.add_get("/badge/{name}.svg", monitor_badge)



