#!/usr/bin/env python3
"""A :00 burst: many cron jobs pinging the daemon in the same instant.

The daemon runs with ``--monitors`` monitors (default 10,000, ``every: 1h``,
grace 1h: nothing falls due) on CPU 0. At one instant ``--clients`` clients
(default 500, each with its own connection, split over ``--procs`` load
processes on CPU 1) start sending ``--pings`` pings (default 20,000) as fast
as they are answered, one request at a time per client. The paths rotate over
the monitors as in ping_throughput.py, a third each of success ``/ping/NAME``
(even monitors), start ``/ping/NAME/start`` and exit-status ``/ping/NAME/0``
(odd monitors), but an end comes at least monitors/2 requests after its start
(500 clients in flight must not let an end overtake its start); the default
20,000 pings are one rotation and a third, so starts and heartbeats weigh a
little more. Each load process gets the pings of its share of the monitors.

Each mode gets a fresh daemon and database: ``keepalive`` (a client keeps its
connection for all its pings) and ``close`` (a new TCP connection per ping,
``Connection: close``, as curl in a crontab). Reported per mode: pings sent,
answered 200, refused (any other status) and errored (no answer: connection
error or timeout), the burst's wall time from the instant to the last answer,
answered pings per second, latency (request started to answer read, as the
client saw it, all 500 clients started at once) p50/p95/p99/max, and lost:
after the daemon has been stopped (SIGTERM), the rows of its ``pings`` table
compared with the 200s (they must be equal). The script exits 1 when a ping
was refused, errored or lost.

    .venv/bin/python bench/burst.py                             # ~1 minute
    .venv/bin/python bench/burst.py --modes close --pings 50000
    .venv/bin/python bench/burst.py --clients 1000 --procs 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
from ping_throughput import wait_quiet  # noqa: E402


# ------------------------------------------------------------------ load process (--worker)


async def _burst(port: int, paths: list[str], clients: int, close: bool, start_at: float,
                 request_timeout: float) -> dict:
    import aiohttp

    url = f"http://127.0.0.1:{port}"
    todo = iter(paths)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    last_answer = 0.0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal last_answer
        for path in todo:
            t0 = time.monotonic()
            try:
                async with session.get(url + path) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                errors[type(exc).__name__] += 1
                continue
            t1 = time.monotonic()
            statuses[status] += 1
            latencies.append(t1 - t0)
            last_answer = max(last_answer, t1)

    connector = aiohttp.TCPConnector(limit=clients, force_close=close)
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        late = time.monotonic() - start_at  # > a few ms: --lead was too short for this process to start
        await asyncio.gather(*(client(session) for _ in range(clients)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"statuses": {str(k): v for k, v in statuses.items()}, "errors": dict(errors),
            "latencies": latencies, "last_answer": last_answer, "late": late,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def worker(args: argparse.Namespace) -> int:
    paths = Path(args.worker).read_text().split()
    result = asyncio.run(_burst(args.port, paths, args.connections, args.close, args.start_at,
                                args.request_timeout))
    Path(args.out).write_text(json.dumps(result))
    return 0


# ------------------------------------------------------------------ driver


def burst_paths(monitors: int, pings: int) -> list[str]:
    """`pings` paths from a rotation over the monitors: even ones send heartbeats (``/ping/NAME``), odd
    ones ``/start`` and, after every monitor had its turn, ``/0``: a third of each form per rotation,
    and an end follows its start by at least monitors/2 requests, so that no end overtakes its start."""
    rotation = [f"/ping/m{k:06d}" if k % 2 == 0 else f"/ping/m{k:06d}/start" for k in range(monitors)]
    rotation += [f"/ping/m{k:06d}/0" for k in range(1, monitors, 2)]
    return [rotation[i % len(rotation)] for i in range(pings)]


def split(paths: list[str], n: int) -> list[list[str]]:
    """One stream per load process, by monitor: a monitor's pings keep their order."""
    streams: list[list[str]] = [[] for _ in range(n)]
    for path in paths:
        streams[int(path.split("/")[2][1:]) // 2 % n].append(path)  # pairs: an even and an odd monitor
    return streams


def listen_drops() -> int:
    """The kernel's count of connections dropped because a listen queue was full (whole machine)."""
    try:
        head, values = [line.split() for line in open("/proc/net/netstat") if line.startswith("TcpExt:")][:2]
        return dict(zip(head[1:], map(int, values[1:]))).get("ListenDrops", 0)
    except (OSError, ValueError):
        return 0


def one_mode(args: argparse.Namespace, workdir: Path, mode: str, procs: list[c.Proc]) -> dict:
    close = mode == "close"
    config = c.write_config(workdir / mode, c.monitor_lines(args.monitors, mixed=False, every="1h"), grace="1h")
    c.log(f"{mode}: starting the daemon with {args.monitors} monitors on CPU {args.server_cpu} ...")
    daemon = c.start_daemon(config, cpus={args.server_cpu}, timeout=args.timeout)
    procs.append(daemon)
    c.wait_healthy(daemon)
    paths = burst_paths(args.monitors, args.pings)
    if args.wait_quiet > 0:
        wait_quiet([args.server_cpu, args.client_cpu], args.wait_quiet)
    nprocs = max(1, min(args.procs, args.clients))
    start_at = time.monotonic() + args.lead
    loaders = []
    for i, stream in enumerate(split(paths, nprocs)):
        share = workdir / mode / f"paths-{i}.txt"
        share.write_text("\n".join(stream) + "\n")
        conns = args.clients // nprocs + (1 if i < args.clients % nprocs else 0)
        out = workdir / mode / f"result-{i}.json"
        argv = [c.PYTHON, __file__, "--worker", str(share), "--port", str(daemon.port), "--connections",
                str(conns), "--start-at", repr(start_at), "--out", str(out),
                "--request-timeout", str(args.request_timeout)] + (["--close"] if close else [])
        log_file = (workdir / mode / f"loader-{i}.log").open("wb")
        loaders.append((subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log_file, env=c.child_env()),
                        out, log_file))
    c.log(f"  {args.pings} pings from {args.clients} clients in {nprocs} processes on CPU {args.client_cpu} ...")
    (u0, s0), st0, drops0 = c.cpu_split(daemon.pid), c.cpu_times(), listen_drops()
    try:
        for popen, _, _ in loaders:
            popen.wait(args.request_timeout + args.pings / 50 + 30)
    finally:
        for popen, _, log_file in loaders:
            if popen.poll() is None:
                popen.kill()
                popen.wait(5)
            log_file.close()
    (u1, s1), st1, drops1 = c.cpu_split(daemon.pid), c.cpu_times(), listen_drops()
    results = []
    for i, (popen, out, _) in enumerate(loaders):
        if popen.returncode != 0 or not out.exists():
            text = (workdir / mode / f"loader-{i}.log").read_text(errors="replace")
            raise RuntimeError(f"load process {i} failed ({popen.returncode}):\n{text[-2000:]}")
        results.append(json.loads(out.read_text()))
    health = c.healthz(daemon)
    daemon.stop()
    procs.remove(daemon)
    db = sqlite3.connect(f"file:{workdir / mode / 'cw.db'}?mode=ro", uri=True)
    stored = db.execute("SELECT COUNT(*) FROM pings").fetchone()[0]
    db.close()

    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    for r in results:
        statuses.update(r["statuses"])
        errors.update(r["errors"])
        latencies += r["latencies"]
    ok = statuses.get("200", 0)
    seconds = max(r["last_answer"] for r in results) - start_at
    return {
        "mode": mode, "sent": len(paths), "ok": ok, "refused": sum(statuses.values()) - ok,
        "errored": sum(errors.values()), "stored": stored, "lost": ok - stored, "seconds": seconds,
        "rate": ok / seconds if seconds > 0 else float("nan"),
        "lat": [1000 * c.percentile(latencies, p) for p in (50, 95, 99, 100)],
        "server_cpu": (u1 + s1 - u0 - s0), "core_busy": c.busy_between(st0, st1, args.server_cpu),
        "client_busy": c.busy_between(st0, st1, args.client_cpu),
        "client_cpu": sum(r["cpu_s"] for r in results), "late": max(r["late"] for r in results),
        "alerts": health["alerts"], "listen_drops": drops1 - drops0,
        "detail": dict(statuses) | {k: v for k, v in errors.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--monitors", type=int, default=10_000)
    ap.add_argument("--pings", type=int, default=20_000, help="pings in the burst (default 20000)")
    ap.add_argument("--clients", type=int, default=500, help="concurrent clients, one connection each (default 500)")
    ap.add_argument("--procs", type=int, default=2, help="load processes the clients are split over (default 2)")
    ap.add_argument("--modes", default="keepalive,close", help="comma list of keepalive, close")
    ap.add_argument("--lead", type=float, default=2.0, help="seconds given to the load processes to start before "
                    "the burst instant (default 2)")
    ap.add_argument("--request-timeout", type=float, default=60.0, help="client timeout per ping (default 60 s)")
    ap.add_argument("--wait-quiet", type=float, default=5.0, help="before each burst, wait up to this many "
                    "seconds for both CPUs to be idle (a shared machine); 0: do not wait")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds the daemon may take to start")
    c.add_run_options(ap)
    # one load process (started by the driver)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--connections", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--close", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    source = c.use_source(args.src)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(m not in ("keepalive", "close") for m in modes):
        ap.error("--modes: keepalive, close")
    budget = args.max_seconds or 60 + len(modes) * (20 + args.lead + args.wait_quiet + args.monitors / 2000
                                                    + args.pings / 300)
    c.time_limit(budget)
    c.pin_to(args.client_cpu)  # this script and its load processes: off the daemon's core

    background = c.warn_if_busy()
    workdir = Path(tempfile.mkdtemp(prefix="cw-burst-", dir=args.dir))
    procs: list[c.Proc] = []
    try:
        results = [one_mode(args, workdir, mode, procs) for mode in modes]
        forms = Counter("start" if p.endswith("/start") else "exit" if p.endswith("/0") else "success"
                        for p in burst_paths(args.monitors, args.pings))
        print(f"\ncronwarden :00 burst  ({time.strftime('%Y-%m-%d %H:%M')}, {c.machine_line()})")
        print(f"code: {source}")
        print(f"background load before the run: {background}")
        print(f"daemon on CPU {args.server_cpu} ({args.monitors} monitors, a fresh daemon and database per mode); "
              f"{args.pings} pings from {args.clients} clients (aiohttp, one connection each, "
              f"{max(1, min(args.procs, args.clients))} processes) on CPU {args.client_cpu}, all started at once")
        print("path mix: " + ", ".join(f"{k} {100 * v / args.pings:.0f}%" for k, v in sorted(forms.items())))
        print("time: burst instant to the last answer; pings/s: answered 200 per second of it; latency: request"
              " started to answer read; lost: answered 200 - rows in the pings table after SIGTERM")
        rows = [[r["mode"], r["sent"], r["ok"], r["refused"], r["errored"], r["lost"], f"{r['seconds']:.2f}",
                 f"{r['rate']:.0f}", *(f"{v:.0f}" for v in r["lat"]),
                 f"{100 * r['server_cpu'] / r['seconds']:.0f}%", f"{100 * r['core_busy']:.0f}%",
                 f"{100 * r['client_busy']:.0f}%"] for r in results]
        print(c.table(["mode", "sent", "200", "refused", "errored", "lost", "time s", "pings/s", "p50 ms", "p95 ms",
                       "p99 ms", "max ms", "daemon CPU", "CPU0 busy", "CPU1 busy"], rows))
        for r in results:
            print(f"{r['mode']}: answers {r['detail']}; {r['stored']} rows in the pings table; "
                  f"{r['listen_drops']} connection attempts dropped by the kernel (listen queue full, each "
                  f"retried by the client after 1 s or more); "
                  f"{r['alerts']} alerts raised; load processes began {1000 * r['late']:.0f} ms after the instant, "
                  f"used {r['client_cpu']:.1f} s CPU")
        bad = [r["mode"] for r in results if r["refused"] or r["errored"] or r["lost"]]
        if bad:
            print(f"FAILED: pings refused, errored or lost in {', '.join(bad)}")
        return 1 if bad else 0
    finally:
        c.finish(procs, workdir, args.keep)


if __name__ == "__main__":
    sys.exit(main())
