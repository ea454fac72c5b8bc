#!/usr/bin/env python3
"""Start-up time, memory per monitor and idle CPU of the daemon at scale.

For each size (default 10,000 and 100,000 monitors; half ``every`` with
periods from 1h to 1d, half ``cron`` with a dozen expression shapes over a
dozen time zones, grace 1h so nothing falls due while measuring):

* fresh: ``cronwarden serve`` on a new database, from process start to the
  first ``200`` from ``/healthz``;
* restart: SIGTERM, then the same on the existing database (states are read
  back instead of created; all monitors then have the same stored state);
* lived restart: the same again after every monitor's stored state was made
  different (pinged at its own time, with its own last duration), as on a
  box that has been running for a while;
* memory: VmRSS after start minus the VmRSS of a 1-monitor daemon started the
  same way, per monitor;
* idle CPU: utime+stime of the daemon (all threads) over ``--idle`` seconds
  (default 10) on the restarted daemon, as % of one core;
* config parse: ``load_config`` alone on the same file, in a fresh process
  (how much of start-up is YAML and validation); ``--no-breakdown`` skips it;
* with ``--gc-log``: the garbage collector's pauses during each start-up and
  the idle window (the daemon then runs through ``bench/_gcwatch.py``).

    .venv/bin/python bench/startup.py                         # ~1.7 minutes
    .venv/bin/python bench/startup.py --sizes 1000,10000,100000 --idle 30
    .venv/bin/python bench/startup.py --sizes 100000 --py-spy /tmp/start  # profile the fresh start
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

EVERY = ("1h", "2h", "6h", "12h", "1d", "90m")


def monitors(n: int):
    """Half every (mixed periods), half cron (mixed expressions and zones)."""
    for line in c.monitor_lines(n, mixed=True):
        if "{every:" in line:
            i = int(line.split(":")[0].strip()[1:])
            line = line.replace("{every: 1h}", f"{{every: {EVERY[(i // 2) % len(EVERY)]}}}")
        yield line


def make_states_distinct(database: Path) -> None:
    """Give every stored monitor state its own last ping, end and duration."""
    rng = random.Random(1)
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT name, state FROM monitors").fetchall()
        changed = []
        for name, text in rows:
            state = json.loads(text)
            # ran in the last 50 minutes: with grace 1h and periods of 5 minutes or more, nothing falls due
            at = state["created_at"] - rng.uniform(0.0, 3000.0)
            state.update(last_ping=at, last_success=at, last_end=at, last_duration=rng.uniform(0.1, 600))
            changed.append((json.dumps(state), name))
        db.executemany("UPDATE monitors SET state = ? WHERE name = ?", changed)


def start_and_wait(config: Path, log_name: str, timeout: float, spy: Path | None = None,
                   gc_log: bool = False) -> tuple[c.Proc, float, float]:
    """Returns (proc, seconds to the listening line, seconds to the first /healthz 200)."""
    if spy is not None:
        return _start_under_py_spy(config, log_name, timeout, spy)
    proc = c.start_daemon(config, timeout=timeout, log_name=log_name, gc_log=gc_log)
    healthy = c.wait_healthy(proc, timeout=timeout)
    return proc, proc.listening_at - proc.started, healthy - proc.started


def _start_under_py_spy(config: Path, log_name: str, timeout: float, out: Path) -> tuple[c.Proc, float, float]:
    """Attach py-spy right after the spawn; stop it (SIGINT: it writes its file) at the first 200."""
    spy = shutil.which("py-spy") or str(Path(c.PYTHON).parent / "py-spy")
    raw = out.with_suffix(".collapsed")
    holder: list[subprocess.Popen] = []

    def attach(popen: subprocess.Popen) -> None:
        holder.append(subprocess.Popen(
            [spy, "record", "--nolineno", "--rate", "200", "--format", "raw", "--output", str(raw),
             "--pid", str(popen.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    proc = c.start_daemon(config, timeout=timeout, log_name=log_name, on_spawn=attach)
    healthy = c.wait_healthy(proc, timeout=timeout)
    prof = holder[0]
    prof.send_signal(signal.SIGINT)
    try:
        prof.wait(30)
    except subprocess.TimeoutExpired:
        prof.kill()
    return proc, proc.listening_at - proc.started, healthy - proc.started


def summarize_startup_profile(raw: Path, top: int = 25) -> str:
    from collections import Counter

    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for frames, n in c.collapsed_stacks(raw):
        total += n
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    lines = [f"{total} samples (from spawn to the first /healthz 200)", "inclusive:"]
    lines += [f"  {100 * k / total:5.1f}%  {name}" for name, k in inclusive.most_common(top)]
    lines += ["self:"] + [f"  {100 * k / total:5.1f}%  {name}" for name, k in own.most_common(15)]
    return "\n".join(lines) + "\n"


def _gc_cells(pauses: list[tuple[int, float, float]]) -> list[str]:
    if not pauses:
        return ["0", "0", "-"]
    return [str(len(pauses)), f"{sum(p[1] for p in pauses) / 1000:.2f}", f"{max(p[1] for p in pauses):.0f}"]


def parse_seconds(config: Path) -> float:
    code = ("import sys, time\nfrom cronwarden.config import load_config\n"
            "t = time.perf_counter(); load_config(sys.argv[1]); print(time.perf_counter() - t)")
    out = subprocess.run([c.PYTHON, "-c", code, str(config)], capture_output=True, text=True, timeout=600,
                         env=c.child_env())
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return float(out.stdout.strip())


def stop_timed(proc: c.Proc) -> float:
    t = time.monotonic()
    proc.stop()
    return time.monotonic() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma list of monitor counts")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement (default 10)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds after /healthz before RSS and idle CPU")
    ap.add_argument("--no-breakdown", action="store_true", help="skip timing load_config on its own")
    c.add_run_options(ap)
    ap.add_argument("--py-spy", metavar="PREFIX", help="profile the fresh start of each size with py-spy "
                    "(PREFIX-N.txt); the start-up figure then includes py-spy's overhead")
    ap.add_argument("--gc-log", action="store_true", help="run the daemon through bench/_gcwatch.py and "
                    "report the garbage collector's pauses during start-up and idle")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds one start may take")
    args = ap.parse_args()
    source = c.use_source(args.src)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    budget = args.max_seconds or (60 + sum(20 + n / 1000 * (1.6 if not args.no_breakdown else 1.2) for n in sizes)
                                  + (len(sizes) + 1) * (args.idle + args.settle * 2))
    c.time_limit(budget)

    background = c.warn_if_busy()
    root = Path(tempfile.mkdtemp(prefix="cw-startup-", dir=args.dir))
    live: list[c.Proc] = []
    rows, notes, gc_rows = [], [], []
    try:
        # the empty daemon: the memory baseline
        base_cfg = c.write_config(root / "n1", monitors(1))
        proc, _, base_ready = start_and_wait(base_cfg, "fresh.log", args.timeout)
        live.append(proc)
        time.sleep(args.settle)
        base_rss = c.rss_bytes(proc.pid)
        cpu0, t0 = c.cpu_seconds(proc.pid), time.monotonic()
        time.sleep(min(args.idle, 3.0))  # the baseline's idle CPU is a reference only
        base_idle = (c.cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        stop_timed(proc)
        live.remove(proc)
        rows.append([1, f"{base_ready:.2f}", "", "", "", "", f"{base_rss / 2**20:.1f}", "", "",
                     f"{100 * base_idle:.2f}% (3s)", ""])
        c.log(f"1 monitor: ready in {base_ready:.2f}s, RSS {base_rss / 2**20:.1f} MiB")

        for n in sizes:
            cfg = c.write_config(root / f"n{n}", monitors(n))
            c.log(f"{n} monitors: fresh start ...")
            spy = Path(f"{args.py_spy}-{n}.txt") if args.py_spy else None
            proc, fresh_listen, fresh_ready = start_and_wait(cfg, "fresh.log", args.timeout, spy, args.gc_log)
            live.append(proc)
            time.sleep(args.settle)
            fresh_rss = c.rss_bytes(proc.pid)
            stop_s = stop_timed(proc)
            live.remove(proc)
            if spy is not None:
                raw = spy.with_suffix(".collapsed")
                summary = summarize_startup_profile(raw)
                spy.write_text(summary)
                notes.append(f"py-spy profile of the fresh start with {n} monitors ({raw}):\n{summary}")
            c.log(f"  ready in {fresh_ready:.2f}s (listening at {fresh_listen:.2f}s); stopped in {stop_s:.2f}s;"
                  f" restart ...")
            fresh_gc = c.gc_pauses(proc.log_text())
            proc, restart_listen, restart_ready = start_and_wait(cfg, "restart.log", args.timeout,
                                                                 gc_log=args.gc_log)
            live.append(proc)
            time.sleep(args.settle)
            rss = c.rss_bytes(proc.pid)
            c.log(f"  ready in {restart_ready:.2f}s; idle CPU over {args.idle:.0f}s ...")
            cpu0, t0 = c.cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.idle)
            idle = (c.cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
            rss_after_idle = c.rss_bytes(proc.pid)
            idle_from = time.time() - (time.monotonic() - t0)
            stop_timed(proc)
            live.remove(proc)
            if args.gc_log:
                restart_log = proc.log_text()
                restart_gc = c.gc_pauses(restart_log, until=idle_from)
                idle_gc = c.gc_pauses(restart_log, since=idle_from)
                gc_rows.append([n, *_gc_cells(fresh_gc), *_gc_cells(restart_gc), *_gc_cells(idle_gc)])
            c.log("  lived restart (every stored state different) ...")
            make_states_distinct(cfg.parent / "cw.db")
            proc, _, lived_ready = start_and_wait(cfg, "lived.log", args.timeout)
            live.append(proc)
            stop_timed(proc)
            live.remove(proc)
            parse = None
            if not args.no_breakdown:
                c.log("  load_config alone ...")
                parse = parse_seconds(cfg)
            rows.append([
                n, f"{fresh_ready:.2f}", f"{restart_ready:.2f}", f"{lived_ready:.2f}",
                "" if parse is None else f"{parse:.2f}",
                f"{stop_s:.2f}",
                f"{fresh_rss / 2**20:.1f} / {rss / 2**20:.1f}",
                f"{(fresh_rss - base_rss) / n:.0f}", f"{(rss - base_rss) / n:.0f}",
                f"{100 * idle:.2f}%", f"{(rss_after_idle - base_rss) / n:.0f}",
            ])
        print(f"\ncronwarden start-up  ({time.strftime('%Y-%m-%d %H:%M')}, {c.machine_line()})")
        print(f"code: {source}")
        print(f"background load before the run: {background}; databases under {root}")
        print("ready = seconds from process start to the first 200 from /healthz; RSS taken "
              f"{args.settle:.0f}s after ready; B/mon = (RSS - RSS of the 1-monitor daemon) / monitors")
        print(c.table(["monitors", "fresh s", "restart s", "lived s", "parse s", "stop s", "RSS MiB fresh/restart",
                       "B/mon fresh", "B/mon restart", f"idle CPU ({args.idle:.0f}s)", "B/mon after idle"], rows))
        if gc_rows:
            print("\nGC pauses over 1 ms (daemon run through bench/_gcwatch.py): count, total s, longest ms")
            print(c.table(["monitors", "fresh: n", "total s", "max ms", "restart: n", "total s", "max ms",
                           "idle: n", "total s", "max ms"], gc_rows))
        for note in notes:
            print("\n" + note)
        return 0
    finally:
        c.finish(live, root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
