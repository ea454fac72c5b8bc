"""Fallback load generator for ping_throughput.py when wrk is not installed.

Raw asyncio HTTP/1.1 GETs (no client library in the way), `--connections`
concurrent workers sharing one rotating path list; keep-alive or a new
connection per request (``Connection: close``). Prints one JSON line:
requests, non-2xx answers, errors, seconds, latency percentiles (ms).
It is much slower than wrk: run it on its own core and read the bare-server
figure as the client's ceiling, not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time


async def worker(host: str, port: int, paths, stop_at: float, close: bool, stats: dict) -> None:
    reader = writer = None
    conn_hdr = b"Connection: close\r\n" if close else b""
    while time.monotonic() < stop_at:
        path = next(paths)
        t0 = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + conn_hdr + b"\r\n")
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            status = int(status_line.split()[1])
            stats["requests"] += 1
            if not 200 <= status < 300:
                stats["non2xx"] += 1
            stats["lat"].append(time.perf_counter() - t0)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            stats["errors"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--paths", required=True, help="file with one path per line")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--close", action="store_true")
    args = ap.parse_args()
    with open(args.paths, "rb") as f:
        paths = itertools.cycle([line.strip() for line in f if line.strip()])
    stats = {"requests": 0, "non2xx": 0, "errors": 0, "lat": []}
    start = time.monotonic()
    stop_at = start + args.duration
    await asyncio.wait_for(
        asyncio.gather(*(worker(args.host, args.port, paths, stop_at, args.close, stats)
                         for _ in range(args.connections))),
        args.duration + 30)
    seconds = time.monotonic() - start
    lat = sorted(stats.pop("lat"))
    pct = {p: (lat[min(len(lat) - 1, int(len(lat) * p / 100))] * 1000 if lat else None) for p in (50, 99)}
    print(json.dumps({**stats, "seconds": seconds, "p50_ms": pct[50], "p99_ms": pct[99]}))


if __name__ == "__main__":
    asyncio.run(main())
