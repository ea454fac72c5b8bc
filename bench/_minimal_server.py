"""A reference for ping_throughput.py --floor: the least a durable ping costs on this stack.

The bare server's route (same aiohttp set-up, event loop and route shape), plus
one row per ping written through cronwarden's own :class:`~cronwarden.store.Store`
(its writer task, group commit, WAL, ``synchronous=FULL``) before the ``200``. No
config, no state machine, no run or state rows, no deadline: just the ping's row,
durable before the answer. What it serves per second is the ceiling for any
design that stores a ping before answering it with aiohttp and SQLite; the gap
from it to the daemon is what cronwarden's own per-ping work costs. It logs
``minimal listening on http://HOST:PORT`` on stderr like the other servers.

``python bench/_minimal_server.py DATABASE MONITORS``: pings for names other
than m000000 .. m(MONITORS-1) get a 404, as the daemon's would.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from cronwarden import store as sql
from cronwarden.store import Store


async def main(database: Path, monitors: int) -> None:
    names = {f"m{i:06d}" for i in range(monitors)}
    store = Store(database)
    await store.open()

    async def ping(request: web.Request) -> web.Response:
        name, _, action = request.match_info["tail"].partition("/")
        if name not in names:
            return web.Response(status=404, text=f"unknown monitor '{name}'\n")
        await store.write([sql.insert_ping(store.next_id("pings"), name, time.time(), action or "success",
                                           None, None, None, request.remote)])
        return web.Response(text="OK")

    app = web.Application()
    for method in ("GET", "POST", "HEAD"):
        app.router.add_route(method, "/ping/{tail:.*}", ping)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"minimal listening on http://127.0.0.1:{port} ({loop_name} event loop)", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await store.close()


if __name__ == "__main__":
    from cronwarden.cli import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main(Path(sys.argv[1]), int(sys.argv[2])))
