"""The baseline for ping_throughput.py: a bare aiohttp server that answers OK.

Same framework, event loop and server settings as the daemon (aiohttp
AppRunner, access log off; uvloop when installed and CRONWARDEN_LOOP is not
``asyncio``, as ``cronwarden serve`` chooses), same route shape, and no
work at all: the gap to the daemon is what cronwarden adds per ping. It logs
``bare listening on http://HOST:PORT`` on stderr like the daemon does.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any, Awaitable, Callable, Coroutine

from aiohttp import web


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="OK")


Handler = Callable[[web.Request], Awaitable[web.Response]]


async def start(handler: Handler) -> tuple[int, web.AppRunner]:
    """Answer the daemon's ping route shape with `handler` (and /healthz with OK) on
    127.0.0.1, any free port; returns the port and the runner (cleanup() stops it)."""
    app = web.Application()
    for method in ("GET", "POST", "HEAD"):
        app.router.add_route(method, "/ping/{tail:.*}", handler)
    app.router.add_get("/healthz", ok)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, reuse_address=True)
    await site.start()
    return site._server.sockets[0].getsockname()[1], runner  # type: ignore[union-attr]


async def serve(label: str, handler: Handler) -> None:
    """start(handler) until SIGTERM or SIGINT; logs ``LABEL listening on ...``."""
    port, runner = await start(handler)
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"{label} listening on http://127.0.0.1:{port} ({loop_name} event loop)", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """Run `main` on the event loop ``cronwarden serve`` would pick; its result."""
    from cronwarden.cli import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


if __name__ == "__main__":
    run(serve("bare", ok))
