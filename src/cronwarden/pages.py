"""Shared page layout for the dashboard and the one-click links.

Every page is sent with a Content-Security-Policy that allows no script and
no outside resource; callers escape everything they interpolate.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
STYLE = """body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;padding:.8rem;max-width:72rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.5rem}a{color:#1a5fb4}
table{border-collapse:collapse;width:100%}td,th{padding:.35rem .5rem;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}
nav{margin:.5rem 0 1rem;line-height:2}.f{margin-right:.6rem;padding:.15rem .5rem;border:1px solid #ccc;
border-radius:1rem;text-decoration:none}.f.on{background:#1a5fb4;color:#fff;border-color:#1a5fb4}
.st{padding:.1rem .45rem;border-radius:.3rem;font-size:.85rem;font-weight:600;color:#fff;background:#777}
.st.down{background:#c01c28}.st.late{background:#c64600}.st.up{background:#26a269}
.st.running{background:#1a5fb4}.st.paused,.st.new{background:#77767b}
.alert{color:#c01c28;font-weight:600}form.inline{display:inline-block;margin:.2rem .4rem .2rem 0}
button{font-size:1rem;padding:.35rem .9rem}input{font-size:1rem;padding:.3rem}
pre{background:#f6f5f4;padding:.4rem;margin:0;overflow-x:auto;white-space:pre-wrap;word-break:break-all;
max-height:16rem}.chart svg{max-width:100%;height:auto}
@media (max-width:640px){td,th{padding:.3rem .25rem;font-size:.9rem}th:nth-child(4),td:nth-child(4){display:none}}"""
REFRESH = "<meta http-equiv=refresh content=30>"


def page(title: str, body: str, refresh: bool = False, status: int = 200) -> web.Response:
    html = (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"{REFRESH if refresh else ''}<title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")
    return web.Response(text=html, content_type="text/html", status=status,
                        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "same-origin", "Cache-Control": "no-store"})


def message(status: int, heading: str, text: str) -> web.Response:
    return page(heading, f"<h1>{escape(heading)}</h1><p>{escape(text)}</p><p><a href='/'>dashboard</a></p>",
                status=status)


def confirm(heading: str, detail_html: str, action: str, button: str) -> web.Response:
    """A page with one POST button (detail_html must already be escaped)."""
    return page(heading, f"<h1>{escape(heading)}</h1><p>{detail_html}</p>"
                         f"<form method=post action='{escape(action)}'><button type=submit "
                         f"style='font-size:1.2rem;padding:.6rem 1.2rem'>{escape(button)}</button></form>")
