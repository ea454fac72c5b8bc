#!/usr/bin/env python3
"""Alert lateness when many monitors fall due in the same second.

The daemon runs with ``--monitors`` monitors (default 100,000). Of them,
``--due`` (default 1,000) are ``every: Ns, grace: 0`` monitors that never
ping: they all fall due at created_at + N s, and created_at is the moment the
daemon first saw them (its first start). The rest are half ``every``, half
``cron`` over mixed zones, with grace 1h, so nothing else fires. Every monitor
alerts to a webhook receiver served by this script (aiohttp, loopback).

Lateness of one alert = receipt time at the webhook - its deadline, where the
deadline is ``expected_at`` from the payload plus the monitor's grace (0 s).
A digest (``"event": "digest"``, storm control) counts as each alert listed
in it, received when the digest was. The channel's ``group_window`` and
``concurrency`` are left at the daemon's defaults unless ``--group-window`` /
``--concurrency`` set them (``--group-window 0`` sends every alert on its own).
The script prints p50/p99/max over the due monitors, and splits the time with
the daemon's own records (read from its database afterwards):

* fire:    the timer's Tick (the outbox row's created_at, the time the step
           was planned at) - deadline: 0 for a Tick planned ahead, which is
           planned as of its deadline (see cronwarden.timer)
* queue:   first delivery attempt started - Tick (taking the plans into
           memory, the commit, then waiting behind earlier deliveries of the
           channel; planning too when the Tick was not planned ahead)
* transit: receipt at the webhook - attempt started

``N`` (``--due-in``, default 40 s) must leave the daemon time to finish
starting: created_at is taken before the states are written and the deadlines
scheduled; the script checks that the deadline fell after the daemon was
ready, and says so if not. By default the daemon is pinned to CPU 0 and this
script (the receiver) to CPU 1.

    .venv/bin/python bench/lateness.py                        # ~1 minute
    .venv/bin/python bench/lateness.py --monitors 10000 --due 1000 --due-in 15
    .venv/bin/python bench/lateness.py --group-window 0      # one POST per alert
    .venv/bin/python bench/lateness.py --due 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
from startup import monitors as mixed_monitors  # noqa: E402


DUE_ALERT = re.compile(rb'"monitor":\s*"due')  # one per alert of a due monitor (a digest lists "monitors")


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Receiver:
    """Records (receipt time, alert payload) per alert; a digest counts as each alert in it.

    A body is only read when it arrives and decoded after the run: decoding a 500-alert
    digest takes this single-threaded receiver ~10 ms, and a second digest arriving
    meanwhile would only be seen after it (its lateness would include the receiver's work)."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.bodies: list[tuple[float, bytes]] = []
        self.seen = 0  # alerts of the due monitors so far, counted without decoding
        self.done = asyncio.Event()
        self.pid: int | None = None  # the daemon's: its CPU time is read when the last alert arrives
        self.cpu_at_done: float | None = None

    async def handle(self, request: web.Request) -> web.Response:
        at = time.time()
        body = await request.read()
        self.bodies.append((at, body))
        self.seen += len(DUE_ALERT.findall(body))
        if self.seen >= self.expect and not self.done.is_set():
            if self.pid is not None:
                self.cpu_at_done = sum(c.cpu_split(self.pid))
            self.done.set()
        return web.Response(text="ok")

    async def warm_up(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    def decoded(self) -> tuple[list[tuple[float, dict]], list[int]]:
        """(receipt time, alert) per alert, and the number of alerts per POST."""
        alerts: list[tuple[float, dict]] = []
        posts: list[int] = []
        for at, body in self.bodies:
            payload = json.loads(body)
            items = payload.get("alerts", []) if payload.get("event") == "digest" else [payload]
            posts.append(len(items))
            alerts += [(at, item) for item in items]
        return alerts, posts


async def warm_up(port: int) -> None:
    """One POST of a digest's size to the receiver before the run: it stands for a webhook
    service that has been up for a while, and its own first request (~4 ms of first-time
    work in its process) is not the daemon's lateness."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/warm-up", data=b"[" + b"{},\n" * 50_000 + b"{}]") as resp:
            await resp.read()


async def run(args: argparse.Namespace, source: str) -> int:
    background = c.warn_if_busy()
    workdir = Path(tempfile.mkdtemp(prefix="cw-lateness-", dir=args.dir))
    receiver = Receiver(args.due)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    app.router.add_post("/warm-up", receiver.warm_up)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await warm_up(port)
    proc: c.Proc | None = None
    loop = asyncio.get_running_loop()
    try:
        background_n = args.monitors - args.due
        lines = list(mixed_monitors(background_n))
        lines += [f"  due{i:05d}: {{every: {args.due_in}s, grace: 0}}" for i in range(args.due)]
        channels = f"  hook:\n    type: webhook\n    url: http://127.0.0.1:{port}/hook\n    timeout: 10s\n"
        for key in ("group_window", "concurrency"):
            value = getattr(args, key)
            if value is not None:
                channels += f"    {key}: {value}\n"
        config = c.write_config(workdir, lines, grace="1h", channels=channels, default_channels="hook")
        c.log(f"starting the daemon with {args.monitors} monitors ({args.due} due {args.due_in}s after its start)"
              f" ...")
        cpus = None if args.no_pin else {args.daemon_cpu}
        proc = await loop.run_in_executor(
            None, lambda: c.start_daemon(config, cpus=cpus, timeout=args.timeout, gc_log=args.gc_log))
        ready_mono = await loop.run_in_executor(None, c.wait_healthy, proc)
        ready = time.time() - (time.monotonic() - ready_mono)
        c.log(f"  ready after {ready_mono - proc.started:.2f}s; waiting for {args.due} 'missed' alerts ...")
        # The daemon's CPU time from a few seconds before the deadline (it is idle then) to
        # the last alert's receipt: the work of the burst, whatever else the machine did.
        await asyncio.sleep(max(0.0, proc.started + args.due_in - 3 - time.monotonic()))
        cpu_before = sum(c.cpu_split(proc.pid))
        receiver.pid = proc.pid
        wait = args.due_in + args.max_wait + 5
        try:
            await asyncio.wait_for(receiver.done.wait(), wait)
        except asyncio.TimeoutError:
            c.log(f"  timed out after {wait:.0f}s with {receiver.seen} alerts in {len(receiver.bodies)} POSTs")
        await asyncio.sleep(0.2)
        health = await loop.run_in_executor(None, c.healthz, proc)

        alerts, posts = receiver.decoded()
        missed = {a["monitor"]: (at, a) for at, a in alerts
                  if a.get("event") == "missed" and a.get("monitor", "").startswith("due")}
        others = [a.get("monitor") for _, a in alerts if not a.get("monitor", "").startswith("due")]
        if not missed:
            print("no alerts received")
            return 1
        # deadline = expected_at + grace (0 s for the due monitors)
        deadline = {name: ts(a["expected_at"]) + 0 for name, (_, a) in missed.items()}
        lateness = [at - deadline[name] for name, (at, _) in missed.items()]
        first_deadline = min(deadline.values())

        # the daemon's side, by monitor: when the Tick ran (outbox.created_at), when the attempt started
        db = sqlite3.connect(f"file:{workdir / 'cw.db'}?mode=ro", uri=True, timeout=10)
        rows = db.execute(
            "SELECT o.monitor, o.created_at, MIN(a.at) FROM outbox o JOIN delivery_attempts a ON a.outbox_id = o.id"
            " WHERE o.monitor LIKE 'due%' AND o.event = 'missed' GROUP BY o.id").fetchall()
        db.close()
        fire, queue, transit = [], [], []
        for name, created, attempted in rows:
            if name in missed:
                fire.append(created - deadline[name])
                queue.append(attempted - created)
                transit.append(missed[name][0] - attempted)
        receipts = sorted(at for at, _ in missed.values())

        def stats(values: list[float]) -> list[str]:
            return [f"{1000 * c.percentile(values, p):.1f}" for p in (0, 50, 99, 100)] if values else ["-"] * 4

        print(f"\ncronwarden alert lateness  ({time.strftime('%Y-%m-%d %H:%M')}, {c.machine_line()})")
        print(f"code: {source}")
        print(f"background load before the run: {background}")
        settings = ", ".join(f"{k} {getattr(args, k)}" for k in ("group_window", "concurrency")
                             if getattr(args, k) is not None) or "the channel's defaults"
        print(f"{args.monitors} monitors, {args.due} of them due at the same instant "
              f"(created_at + {args.due_in}s, grace 0); webhook on 127.0.0.1 ({settings}); daemon "
              f"{'unpinned' if args.no_pin else f'on CPU {args.daemon_cpu}'}")
        print(f"daemon ready {first_deadline - ready:.1f}s before the deadline"
              + ("" if ready < first_deadline else "  ** NOT READY IN TIME: raise --due-in **"))
        print(f"received {len(missed)}/{args.due} missed alerts in {len(posts)} POSTs "
              f"(largest {max(posts)} alerts); {len(others)} other alerts")
        rows_out = [["lateness (receipt - deadline)", len(lateness), *stats(lateness)],
                    ["  fire: Tick - deadline", len(fire), *stats(fire)],
                    ["  queue: attempt started - Tick", len(queue), *stats(queue)],
                    ["  transit: receipt - attempt started", len(transit), *stats(transit)]]
        print(c.table(["ms", "n", "min", "p50", "p99", "max"], rows_out))
        span = receipts[-1] - receipts[0]
        rate = f"{len(receipts) / span:.0f} alerts/s through the webhook channel" if span > 0 else "one POST"
        print(f"receipts spread over {span:.2f}s: {rate}; "
              f"/healthz wheel_max_lateness_s = {health.get('wheel_max_lateness_s')}")
        if receiver.cpu_at_done is not None:
            print(f"daemon CPU time from 3 s before the deadline to the last receipt: "
                  f"{1000 * (receiver.cpu_at_done - cpu_before):.0f} ms (in 10 ms steps): the burst's work; "
                  f"the wall-clock lateness exceeds it when the daemon's core is taken from it")
        if args.gc_log:
            pauses = c.gc_pauses(proc.log_text(), since=first_deadline, until=receipts[-1])
            print(f"GC pauses over 1 ms between the deadline and the last receipt: {len(pauses)}, "
                  f"{sum(p[1] for p in pauses):.0f} ms in all"
                  + (": " + ", ".join(f"gen{g} {ms:.0f} ms at +{at - first_deadline:.2f}s" for g, ms, at in pauses[:8])
                     if pauses else ""))
        if others:
            print(f"unexpected alerts from: {sorted(set(others))[:5]}")
        return 0 if len(missed) == args.due else 1
    finally:
        if proc is not None:
            await loop.run_in_executor(None, proc.stop)
        await runner.cleanup()
        if args.keep:
            c.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--monitors", type=int, default=100_000, help="total monitors (default 100000)")
    ap.add_argument("--due", type=int, default=1000, help="monitors falling due at the same instant")
    ap.add_argument("--due-in", type=int, default=40, help="their 'every' in seconds (default 40)")
    ap.add_argument("--max-wait", type=float, default=60.0, help="seconds after the deadline to wait for alerts")
    ap.add_argument("--group-window", help="set the webhook channel's group_window (storm control; e.g. 0 to "
                    "send every alert on its own); default: not set, the daemon's default applies")
    ap.add_argument("--concurrency", type=int, help="set the webhook channel's concurrency (deliveries in flight)")
    ap.add_argument("--gc-log", action="store_true", help="run the daemon through bench/_gcwatch.py and report "
                    "the garbage collector's pauses between the deadline and the last receipt")
    c.add_pin_options(ap, "receiver")
    c.add_run_options(ap)
    args = ap.parse_args()
    source = c.use_source(args.src)
    if args.due > args.monitors:
        ap.error("--due is larger than --monitors")
    budget = args.timeout + args.due_in + args.max_wait + 60
    return c.run_within(budget, run(args, source), None if args.no_pin else args.receiver_cpu)


if __name__ == "__main__":
    sys.exit(main())
