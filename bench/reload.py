#!/usr/bin/env python3
"""SIGHUP under load: how long a reload takes and how long pings wait for it.

The daemon runs with ``--monitors`` monitors (default 100,000; the mix of
startup.py: half ``every``, half ``cron`` over a dozen zones, grace 1h) on
CPU 0. This script, on CPU 1, sends a steady ``--rate`` of pings (default
500/s, open loop: request i is due at start + i/rate whatever the answers
do, over at most ``--connections`` keep-alive connections; paths as in
ping_throughput.py) and records for each its due time, the time its answer was
read and its status. Under that load it sends two SIGHUPs, the first
``--before`` seconds after the load started, the second once the first was
applied, the client had caught up (no ping due more than 0.25 s ago still
unanswered) and ``--before`` seconds more had passed:

* changed: the config file is replaced (atomically) by one with a monitor
  added and ``--change`` monitors changed (period, expression);
* unchanged: SIGHUP again, the file untouched (a ``systemctl reload`` out of
  habit).

Per reload: applied = SIGHUP sent to the daemon's ``configuration reloaded``
log line (its own timestamp, ms); longest gap = the largest interval between
two consecutive answers that overlaps [SIGHUP, applied]; in flight = the
requests due before the reload was applied and answered after the SIGHUP, of
which the largest latency (answer read - due time: it includes waiting for a
free connection while the daemon does not answer) and p99; errors = requests
not answered 200 over the whole run (must be 0). The same gap and latency
figures for the steady load before the first SIGHUP are the reference;
``--gc-log`` adds the garbage collector's pauses during each reload and
``--py-spy PREFIX`` a profile of each. At the end the daemon is stopped and its ``pings`` table compared with the 200s.

    .venv/bin/python bench/reload.py                            # ~1.5 minutes
    .venv/bin/python bench/reload.py --monitors 10000 --rate 1500
    .venv/bin/python bench/reload.py --rate 200 --gc-log        # + GC pauses during each reload
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
from ping_throughput import ping_paths  # noqa: E402
from ping_throughput import wait_quiet  # noqa: E402
from startup import monitors as mixed_monitors, summarize_startup_profile  # noqa: E402

RELOADED = re.compile(r"^(\S+ \S+) \w+ cronwarden: (configuration reloaded: .*|reload refused.*)$", re.M)


class Load:
    """Open-loop pings: (due, answered, status) per request, monotonic seconds; status None = error."""

    def __init__(self, url: str, paths: list[str], rate: float, connections: int, timeout: float) -> None:
        self.url, self.paths, self.rate = url, paths, rate
        self.connections, self.timeout = connections, timeout
        self.records: list[tuple[float, float, int | None]] = []
        self.errors: dict[str, int] = {}
        self.started = 0.0
        self._stop = asyncio.Event()
        self._tasks: dict[asyncio.Task, float] = {}  # in flight -> due time

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.connections)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            self.started = time.monotonic()
            i = 0
            while not self._stop.is_set():
                due = self.started + i / self.rate
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                task = asyncio.create_task(self._one(session, self.paths[i % len(self.paths)], due))
                self._tasks[task] = due
                task.add_done_callback(self._tasks.pop)
                i += 1
            if self._tasks:
                await asyncio.wait(self._tasks)

    async def _one(self, session: aiohttp.ClientSession, path: str, due: float) -> None:
        status = None
        try:
            async with session.get(self.url + path) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
        self.records.append((due, time.monotonic(), status))

    def stop(self) -> None:
        self._stop.set()

    async def drained(self, timeout: float, lag: float = 0.25) -> float:
        """Wait until no request due more than `lag` seconds ago is unanswered; returns the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if min(self._tasks.values(), default=float("inf")) > time.monotonic() - lag:
                break
            await asyncio.sleep(0.01)
        return time.monotonic() - t0


def window_figures(records: list[tuple[float, float, int | None]], start: float, end: float) -> dict:
    """Longest gap between consecutive answers overlapping [start, end]; latency of the requests in flight."""
    answers = sorted(done for _, done, _ in records)
    gap, gap_at = 0.0, start
    for a, b in zip(answers, answers[1:]):
        if b >= start and a <= end and b - a > gap:
            gap, gap_at = b - a, a
    inflight = [done - due for due, done, _ in records if due <= end and done >= start]
    answered = sum(1 for _, done, _ in records if start <= done <= end)
    return {"gap_ms": 1000 * gap, "gap_from": gap_at - start, "n": len(inflight),
            "rate": answered / (end - start) if end > start else float("nan"),
            "max_ms": 1000 * max(inflight, default=0.0), "p99_ms": 1000 * c.percentile(inflight, 99),
            "p50_ms": 1000 * c.percentile(inflight, 50)}


async def wait_reloaded(proc: c.Proc, offset: int, timeout: float) -> tuple[str, float, float]:
    """(message, epoch of the daemon's log line, monotonic time this script saw it) after byte `offset`."""
    deadline = time.monotonic() + timeout
    while True:
        with proc.log_path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        match = RELOADED.search(text)
        if match:
            seen = time.monotonic()
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            return match.group(2), stamp, seen
        if proc.popen.poll() is not None:
            raise RuntimeError(f"the daemon exited during the reload:\n{text[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no reload line {timeout:.0f}s after SIGHUP:\n{text[-2000:]}")
        await asyncio.sleep(0.005)


def changed_lines(lines: list[str], change: int) -> list[str]:
    """The same monitors with the last `change` changed (period or expression) and one added."""
    out = list(lines)
    for i in range(max(0, len(out) - change), len(out)):
        name = out[i].split(":")[0].strip()
        out[i] = f"  {name}: {{every: 45m}}" if i % 2 == 0 else f"  {name}: {{cron: '5 4 * * *', timezone: UTC}}"
    return out + ["  added000: {every: 1h}"]


async def run(args: argparse.Namespace, source: str) -> int:
    background = c.warn_if_busy()
    workdir = Path(tempfile.mkdtemp(prefix="cw-reload-", dir=args.dir))
    loop = asyncio.get_running_loop()
    proc: c.Proc | None = None
    load_task: asyncio.Task | None = None
    try:
        if args.wait_quiet > 0:
            await loop.run_in_executor(None, wait_quiet, [args.daemon_cpu, args.client_cpu], args.wait_quiet)
        lines = list(mixed_monitors(args.monitors))
        config = c.write_config(workdir, lines)
        c.log(f"starting the daemon with {args.monitors} monitors on CPU {args.daemon_cpu} ...")
        cpus = None if args.no_pin else {args.daemon_cpu}
        proc = await loop.run_in_executor(
            None, lambda: c.start_daemon(config, cpus=cpus, timeout=args.timeout, gc_log=args.gc_log))
        ready = await loop.run_in_executor(None, c.wait_healthy, proc, args.timeout)
        c.log(f"  ready after {ready - proc.started:.1f}s; {args.rate:.0f} pings/s ...")
        load = Load(proc.url, ping_paths(min(args.monitors, 10_000)), args.rate, args.connections,
                    args.request_timeout)
        load_task = asyncio.create_task(load.run())
        await asyncio.sleep(args.before)
        steady = window_figures(load.records, load.started + min(0.5, args.before / 2), time.monotonic())
        rows = [["steady load (no reload)", "", "", f"{steady['gap_ms']:.0f}", f"{steady['rate']:.0f}", steady["n"],
                 f"{steady['p50_ms']:.1f}", f"{steady['p99_ms']:.1f}", f"{steady['max_ms']:.0f}", "", ""]]
        gc_notes = []
        failed = False
        for label in ("changed", "unchanged"):
            if label == "changed":
                new = c.write_config(workdir, changed_lines(lines, args.change), name="cw.yaml.new")
                os.replace(new, config)
            offset = proc.log_path.stat().st_size
            spy = None
            if args.py_spy:
                raw = Path(f"{args.py_spy}-{label}.collapsed")
                spy = subprocess.Popen(
                    [shutil.which("py-spy") or str(Path(c.PYTHON).parent / "py-spy"), "record", "--pid",
                     str(proc.pid), "--nolineno", "--rate", "200", "--format", "raw", "--output", str(raw),
                     "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await asyncio.sleep(1.0)
            cpu0, st0 = c.cpu_seconds(proc.pid), c.cpu_times()
            sent_wall, sent = time.time(), time.monotonic()
            os.kill(proc.pid, signal.SIGHUP)
            c.log(f"  SIGHUP ({label} file) ...")
            message, stamp, seen = await wait_reloaded(proc, offset, args.reload_timeout)
            applied = stamp - sent_wall  # the daemon's own time of the line (ms), against the send
            cpu1, st1 = c.cpu_seconds(proc.pid), c.cpu_times()
            other = c.busy_between(st0, st1, args.daemon_cpu) - (cpu1 - cpu0) / max(1e-3, time.monotonic() - sent)
            c.log(f"    {message} after {applied:.2f}s (seen here after {seen - sent:.2f}s)")
            failed |= not message.startswith("configuration reloaded")
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                await loop.run_in_executor(None, spy.wait, 30)
                summary = summarize_startup_profile(raw).replace("from spawn to the first /healthz 200",
                                                                 "from 1 s before the SIGHUP to the reload line")
                Path(f"{args.py_spy}-{label}.txt").write_text(summary)
                gc_notes.append(f"py-spy profile of the {label} reload ({raw}):\n{summary}")
            drain = await load.drained(args.reload_timeout)
            c.log(f"    the client's backlog answered {drain:.2f}s after that")
            await asyncio.sleep(args.after)
            w = window_figures(load.records, sent, sent + max(applied, 0.0))
            rows.append([f"SIGHUP, {label} file", f"{applied:.2f}", f"{applied + drain:.2f}",
                         f"{w['gap_ms']:.0f} at +{w['gap_from']:.1f}s", f"{w['rate']:.0f}", w["n"],
                         f"{w['p50_ms']:.1f}", f"{w['p99_ms']:.1f}", f"{w['max_ms']:.0f}",
                         "-" if args.no_pin else f"{100 * max(0.0, other):.0f}%", message])
            if args.gc_log:
                pauses = c.gc_pauses(proc.log_text(), since=sent_wall, until=stamp)
                gc_notes.append(f"{label}: {len(pauses)} GC pauses over 1 ms during the reload, "
                                f"{sum(p[1] for p in pauses):.0f} ms in all, longest "
                                f"{max((p[1] for p in pauses), default=0):.0f} ms")
            await asyncio.sleep(max(0.0, args.before - args.after))
        load.stop()
        await load_task
        load_task = None
        health = await loop.run_in_executor(None, c.healthz, proc)
        await loop.run_in_executor(None, proc.stop)
        db = sqlite3.connect(f"file:{workdir / 'cw.db'}?mode=ro", uri=True)
        stored = db.execute("SELECT COUNT(*) FROM pings").fetchone()[0]
        db.close()

        ok = sum(1 for _, _, s in load.records if s == 200)
        errors = len(load.records) - ok
        span = max(done for _, done, _ in load.records) - load.started
        print(f"\ncronwarden reload under load  ({time.strftime('%Y-%m-%d %H:%M')}, {c.machine_line()})")
        print(f"code: {source}")
        print(f"background load before the run: {background}")
        print(f"{args.monitors} monitors; daemon {'unpinned' if args.no_pin else f'on CPU {args.daemon_cpu}'}, "
              f"ready {ready - proc.started:.1f}s after its start; load: {args.rate:.0f} pings/s due (open loop, "
              f"aiohttp, up to {args.connections} keep-alive connections) from CPU {args.client_cpu}, "
              f"{len(load.records) / span:.0f}/s answered over {span:.1f}s")
        print(f"changed file: {args.change} monitors changed, 1 added; applied: SIGHUP to the daemon's "
              f"'configuration reloaded' line; gap: longest interval between consecutive answers during the "
              f"reload (at: its start, after the SIGHUP); answered/s: answers between SIGHUP and applied;\n"
              f"caught up: until no ping due more than 0.25 s ago was unanswered; in flight: requests due before "
              f"it was applied and answered after the SIGHUP, latency = answer - due time; other on CPU0: CPU 0 "
              f"busy minus the daemon's CPU during the reload")
        print(c.table(["", "applied s", "caught up s", "longest gap ms", "answered/s", "in flight", "p50 ms",
                       "p99 ms", "max ms", "other on CPU0", "daemon log"], rows))
        for note in gc_notes:
            print(note)
        print(f"pings: {len(load.records)} sent, {ok} answered 200, {errors} errors or other statuses"
              f"{' ' + str(load.errors) if load.errors else ''}; {stored} rows in the pings table after SIGTERM "
              f"(lost: {ok - stored}); {health['alerts']} alerts raised")
        if failed or errors or ok != stored:
            print("FAILED: a reload was refused, or pings errored or were lost")
            return 1
        return 0
    finally:
        if load_task is not None:
            load_task.cancel()
            await asyncio.gather(load_task, return_exceptions=True)
        await loop.run_in_executor(None, c.finish, [proc] if proc is not None else [], workdir, args.keep)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--monitors", type=int, default=100_000, help="monitors in the config (default 100000)")
    ap.add_argument("--rate", type=float, default=500.0, help="pings per second due (default 500)")
    ap.add_argument("--connections", type=int, default=100, help="most connections the client opens (default 100)")
    ap.add_argument("--change", type=int, default=5, help="monitors changed by the first reload (default 5)")
    ap.add_argument("--before", type=float, default=3.0, help="seconds of load before each SIGHUP (default 3)")
    ap.add_argument("--after", type=float, default=2.0, help="seconds of load after a reload was applied and "
                    "the client caught up (default 2)")
    ap.add_argument("--reload-timeout", type=float, default=180.0, help="seconds a reload may take")
    ap.add_argument("--request-timeout", type=float, default=120.0, help="client timeout per ping")
    ap.add_argument("--gc-log", action="store_true", help="run the daemon through bench/_gcwatch.py and report "
                    "the garbage collector's pauses during each reload")
    ap.add_argument("--wait-quiet", type=float, default=5.0, help="before starting, wait up to this many "
                    "seconds for both CPUs to be idle (a shared machine); 0: do not wait")
    ap.add_argument("--py-spy", metavar="PREFIX", help="profile the daemon with py-spy during each reload "
                    "(PREFIX-changed.txt, PREFIX-unchanged.txt)")
    c.add_pin_options(ap, "client")
    c.add_run_options(ap)
    args = ap.parse_args()
    source = c.use_source(args.src)
    budget = args.max_seconds or (90 + args.wait_quiet + args.monitors / 1000 * 1.2 + 3 * args.before
                                  + 2 * (args.after + args.monitors / 1000 * 0.6))
    return c.run_within(budget, run(args, source), None if args.no_pin else args.client_cpu)


if __name__ == "__main__":
    sys.exit(main())
