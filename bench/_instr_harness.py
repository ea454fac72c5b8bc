"""The in-process run that instructions.py counts under callgrind (not a test module).

``python bench/_instr_harness.py DIR COUNT MODE SERVER``: SERVER (``daemon``, the
real daemon with its HTTP server and database in DIR, 2,000 ``every: 1h`` monitors;
or ``bare``, aiohttp's ``OK`` handler on the daemon's route shape) on a loopback
port, and 20 clients in the same process, each sending a warm-up of 150 pings and
then COUNT more, one at a time, with keep-alive or (MODE ``close``) a new connection
per ping. Each client has its own monitors and sends a heartbeat to half of them,
then a start and later its ``/0`` end to the other half, so nothing raises an alert.
MODE ``direct`` (daemon only) has the clients call ``Daemon.ping`` with the same pings,
no HTTP: the daemon's own path, writer and database thread included, for changes
too small for the HTTP runs' ±1 – 2%.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from _bare_server import ok, run, start

MONITORS = 2000
CLIENTS = 20
WARM_UP = 150


async def client(port: int, paths: list[str], count: int, offset: int, close: bool) -> None:
    reader = writer = None
    header = "Connection: close\r\n" if close else ""
    for j in range(offset, offset + count):
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert reader is not None
        writer.write(f"GET {paths[j % len(paths)]} HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"answer {head[:40]!r}")
        await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def serve_bare() -> tuple[int, object, None]:
    port, runner = await start(ok)  # ping_throughput.py's bare server
    return port, runner.cleanup, None


async def call_daemon(daemon: object, paths: list[str], count: int, offset: int) -> None:
    """A client of MODE direct: the pings of `paths`, through Daemon.ping."""
    from cronwarden.http import parse_ping_path

    targets = [parse_ping_path(path.removeprefix("/ping/"), None) for path in paths]
    for j in range(offset, offset + count):
        target = targets[j % len(targets)]
        await daemon.ping(target.ident, target.kind, exit_status=target.exit_status,  # type: ignore[attr-defined]
                          body=b"", remote="127.0.0.1")


async def serve_daemon(directory: Path) -> tuple[int, object, object]:
    from cronwarden import checkpoint
    from cronwarden.config import parse_config
    from cronwarden.daemon import Daemon

    # Under callgrind the daemon runs ~50x slower, and a checkpoint every 60 s would write
    # the rows of all 2,000 monitors every ~3,000 pings, ~50x as often as in real use, and
    # fall into one run length and not the other. The counts are of the pings alone; what
    # checkpoints add per ping is a state row per monitor pinged between two of them
    # (bench/README.md).
    checkpoint.CHECKPOINT_SECONDS = float("inf")

    for old in directory.glob("cw.db*"):
        old.unlink()
    monitors = "\n".join(f"  m{i:06d}: {{every: 1h}}" for i in range(MONITORS))
    config = parse_config(f"server: {{listen: '127.0.0.1:0', database: cw.db}}\ndefaults: {{grace: 1h}}\n"
                          f"monitors:\n{monitors}\n", directory / "cw.yaml")
    daemon = Daemon(config)
    await daemon.start()
    assert daemon.bound is not None
    return daemon.bound[1], daemon.stop, daemon


def client_paths() -> list[list[str]]:
    """Each client's rotation: its own monitors, heartbeats to half of them, a start and
    later its ``/0`` end to the other half."""
    paths = []
    for k in range(CLIENTS):
        names = [f"m{i:06d}" for i in range(k, MONITORS, CLIENTS)]
        beats, runs = names[0::2], names[1::2]
        paths.append([f"/ping/{n}" for n in beats] + [f"/ping/{n}/start" for n in runs]
                     + [f"/ping/{n}/0" for n in runs])
    return paths


async def main(directory: Path, count: int, mode: str, server: str) -> None:
    if mode == "direct" and server != "daemon":
        raise SystemExit("MODE direct calls the daemon: SERVER must be daemon")
    port, stop, daemon = await (serve_daemon(directory) if server == "daemon" else serve_bare())
    paths = client_paths()
    if mode == "direct":
        await asyncio.gather(*(call_daemon(daemon, p, WARM_UP, 0) for p in paths))
        await asyncio.gather(*(call_daemon(daemon, p, count, WARM_UP) for p in paths))
        await stop()  # type: ignore[operator]
        return
    close = mode == "close"
    await asyncio.gather(*(client(port, p, WARM_UP, 0, close) for p in paths))  # the daemon reads each history once
    await asyncio.gather(*(client(port, p, count, WARM_UP, close) for p in paths))
    await stop()  # type: ignore[operator]


if __name__ == "__main__":
    run(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]))
