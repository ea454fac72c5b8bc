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

from aiohttp import web


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def main() -> None:
    app = web.Application()
    for method in ("GET", "POST", "HEAD"):
        app.router.add_route(method, "/ping/{tail:.*}", ok)
    app.router.add_get("/healthz", ok)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"bare listening on http://127.0.0.1:{port} ({loop_name} event loop)", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    from cronwarden.cli import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main())
