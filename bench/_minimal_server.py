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

import sys
import time
from pathlib import Path

from _bare_server import run, serve
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

    try:
        await serve("minimal", ping)
    finally:
        await store.close()


if __name__ == "__main__":
    run(main(Path(sys.argv[1]), int(sys.argv[2])))
