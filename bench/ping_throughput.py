#!/usr/bin/env python3
"""Durable pings per second: cronwarden next to a bare aiohttp "OK" server.

Both servers run on the same core (default CPU 0, set with sched_setaffinity
before exec, threads included: the daemon's SQLite thread shares that core);
the load generator runs on another core (default CPU 1). The daemon answers
200 only after the ping's SQLite transaction committed (WAL, synchronous=FULL),
so its figure is durable pings per second. The bare server is the same aiohttp
stack with a handler that only returns ``OK``: the ratio daemon/bare is the
share of a core's HTTP capacity left after what cronwarden adds per ping.

Workload: ``--monitors`` monitors (``every: 1h``, nothing falls due during the
run) and a rotating path list that gives a third each of success
(``/ping/NAME``), start (``/ping/NAME/start``) and exit-status (``/ping/NAME/0``)
forms: even monitors send heartbeat success pings, odd monitors a start and,
about 500 requests later, its ``/0`` end. No ping should raise an alert: each
run continues the rotation where the previous run of that server stopped and
first re-sends the ends the stopped run may have dropped, so starts never
overlap; and after each run against the daemon the script itself sends the
ends of the runs it left open, so that no run spans the pause before the next
run (a run that long is "slow" to a monitor whose history holds short ones).
The script reports the alerts raised, if any. The monitors have ``slow_after: 1h``:
these runs last as long as the server takes to get from a start to its end 500
requests later, ~50 - 200 ms, so without it the automatic ``slow`` rule (2 x the p95
of recent runs) raised an alert for every run that spanned a pause of the machine or
the switch from keep-alive to the slower new-connection mode: up to 4,461 in one
``bench/all``, each one a state row, alert rows and a log line, in the daemon's figure.

``--floor`` adds two servers on the same core. The daemon run through
``_nodb.py`` (label ``no-db``) answers a ping after the same HTTP path, state
machine and statements but without its commit (nothing stored): its ratio is
the ceiling for durable pings on this Python path, and the gap between it and
the daemon is what durability costs there (SQLite, its thread, the fsyncs).
``_minimal_server.py`` (label ``minimal``) is the bare server's route plus one
ping row through cronwarden's Store, committed before the answer: the least a
durable ping costs with aiohttp and SQLite, and the gap between it and the
daemon is what cronwarden's own per-ping work costs.

Modes: ``keepalive`` (one connection carries many pings) and ``close`` (a new
TCP connection per ping, ``Connection: close``, as ``curl`` in a crontab does).

Rounds: in each mode the servers take turns, one ``--duration`` run each, ``--rounds``
times. This machine's speed swings by a third within seconds (adjacent 3-s runs of
the bare server alone gave 8,200 and 15,600 req/s), so a server measured in one
phase and the other in the next can differ by that much for no reason of their own.
The ratio reported is the median of the rounds' ratios, each from two runs seconds
apart; the table lists each round's.

Load generator: ``wrk`` (one thread, ``--connections`` connections, a Lua
script that rotates the paths) when it is installed, else ``_pyload.py``
(raw asyncio client in its own process; much slower, the bare figure is then
the client's ceiling).

    .venv/bin/python bench/ping_throughput.py                      # ~1.7 minutes
    .venv/bin/python bench/ping_throughput.py --duration 5 --rounds 8
    .venv/bin/python bench/ping_throughput.py --py-spy /tmp/ping.txt  # + profile
    .venv/bin/python bench/ping_throughput.py --floor              # + no-db and minimal (see above)
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

BLOCK = 1000  # monitors per rotation block; an end follows its start >= BLOCK/2 requests later


def ping_paths(monitors: int) -> list[str]:
    paths: list[str] = []
    for first in range(0, monitors, BLOCK):
        block = range(first, min(first + BLOCK, monitors))
        paths += [f"/ping/m{k:06d}/start" for k in block if k % 2]
        paths += [f"/ping/m{k:06d}" if k % 2 == 0 else f"/ping/m{k:06d}/0" for k in block]
    return paths


def lua_script(paths: list[str], state_file: Path, replay: int) -> str:
    """wrk script: rotate `paths`, resuming where the last run stopped.

    A run that stops drops the requests it generated but never sent. A lost
    start is harmless, a lost end would leave a run open (and the next start
    of that monitor an overlap alert), so a resumed run first re-sends the
    ends (never the starts) among the last `replay` paths: a repeated end is a
    plain success."""
    table = ",\n".join(f'"{p}"' for p in paths)
    return f"""-- generated by bench/ping_throughput.py
local paths = {{
{table}
}}
local reqs = {{}}
local replay = {{}}
local state = "{state_file}"
i = 0
init = function(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p) end
  local f = io.open(state, "r")
  if f then i = tonumber(f:read("*l")) or 0; f:close() end
  if i > 0 then
    for back = {replay} - 1, 0, -1 do
      local j = ((i - 1 - back) % #paths) + 1
      if not string.find(paths[j], "/start$") then table.insert(replay, reqs[j]) end
    end
  end
end
request = function()
  if #replay > 0 then return table.remove(replay, 1) end
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end
local threads = {{}}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local f = io.open(state, "w")
  f:write(tostring(threads[1]:get("i")) .. "\\n")
  f:close()
  io.write(string.format("CW_RESULT %d %d %d %d %d %d %d %.3f %.3f %.3f\\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000))
end
"""


# the servers that keep runs open between a start and its end (the others store or ignore pings alone)
WITH_RUNS = ("daemon", "no-db")


class LoadGen:
    def __init__(self, kind: str, workdir: Path, paths: list[str], connections: int, client_cpu: int,
                 server_cpu: int) -> None:
        self.kind = kind
        self.server_cpu = server_cpu
        self.workdir = workdir
        self.connections = connections
        self.client_cpu = client_cpu
        self.paths_file = workdir / "paths.txt"
        self.paths_file.write_text("\n".join(paths) + "\n")
        self.paths = paths
        self.offsets: dict[str, int] = {}

    def run(self, url: str, label: str, close: bool, duration: float, connections: int | None = None,
            tidy: bool = True) -> dict:
        """One run against `url`; `label` keys the rotation state (one per server). With
        `tidy`, the daemon's open runs are ended afterwards (see close_open_runs); a
        measured run passes False and ends them after its readings."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        conns = connections or self.connections
        if self.kind == "wrk":
            result = self._wrk(url, label, close, duration, conns)
        else:
            result = self._python(url, label, close, duration, conns)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["client_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        if tidy and label in WITH_RUNS:
            self.close_open_runs(url, label)
        return result

    def position(self, label: str) -> int:
        """Index of the next path of `label`'s rotation."""
        if self.kind == "wrk":
            state = self.workdir / f"rotation-{label}.txt"  # wrk's last (1-based) index: the next, 0-based
            return int(state.read_text().split()[0]) % len(self.paths) if state.exists() else 0
        return self.offsets.get(label, 0)

    def close_open_runs(self, url: str, label: str) -> None:
        """Send the end of every run the rotation started and has not ended yet (one
        connection, one at a time; the rotation sends them again later, as plain
        successes), so that no run is left open over the pause before the next run."""
        position, n = self.position(label), len(self.paths)
        open_runs: dict[str, str] = {}  # monitor path -> its end path
        for k in range(position - 2 * BLOCK, position):
            path = self.paths[k % n]
            if path.endswith("/start"):
                open_runs[path[:-len("/start")]] = path[:-len("/start")] + "/0"
            elif path.endswith("/0"):
                open_runs.pop(path[:-len("/0")], None)
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            for end in open_runs.values():
                conn.request("GET", end)
                conn.getresponse().read()
        finally:
            conn.close()

    def _wrk(self, url: str, label: str, close: bool, duration: float, connections: int) -> dict:
        state = self.workdir / f"rotation-{label}.txt"
        script = self.workdir / f"rotate-{label}.lua"
        if not script.exists():
            script.write_text(lua_script(self.paths, state, 4 * self.connections))
        argv = ["taskset", "-c", str(self.client_cpu), "wrk", "-t1", f"-c{connections}",
                f"-d{max(1, round(duration))}s", "--timeout", "10s", "-s", str(script)]
        if close:
            argv += ["-H", "Connection: close"]
        argv.append(url)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
        match = re.search(r"CW_RESULT (.*)", out.stdout)
        if out.returncode != 0 or not match:
            raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        f = match.group(1).split()
        requests, micros = int(f[0]), int(f[1])
        return {"requests": requests, "seconds": micros / 1e6, "non2xx": int(f[2]),
                "errors": sum(int(x) for x in f[3:7]), "p50_ms": float(f[7]), "p99_ms": float(f[8]),
                "mean_ms": float(f[9])}

    def _python(self, url: str, label: str, close: bool, duration: float, connections: int) -> dict:
        port = int(url.rsplit(":", 1)[1])
        offset = self.offsets.get(label, 0)
        rotated = self.workdir / f"paths-{label}.txt"
        window = 4 * self.connections  # re-send the ends a stopped run may have dropped (see lua_script)
        replay = [p for p in (self.paths[offset:] + self.paths[:offset])[-window:] if not p.endswith("/start")]
        if offset == 0:
            replay = []
        rotated.write_text("\n".join(replay + self.paths[offset:] + self.paths[:offset]) + "\n")
        argv = ["taskset", "-c", str(self.client_cpu), c.PYTHON, str(Path(__file__).parent / "_pyload.py"),
                "--port", str(port), "--paths", str(rotated), "--connections", str(connections),
                "--duration", str(duration)] + (["--close"] if close else [])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
        if out.returncode != 0:
            raise RuntimeError(f"_pyload failed:\n{out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        # approximate: each worker takes the next path; in-flight requests at the stop are few
        sent = max(0, result["requests"] + result["errors"] - len(replay))
        self.offsets[label] = (offset + sent) % len(self.paths)
        result["mean_ms"] = None
        return result


def wait_quiet(cpus: list[int], limit: float) -> None:
    """Wait up to `limit` seconds for the CPUs to be idle (< 10% over 0.5 s): the machine may be shared."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        load = c.background_load(0.5)
        if all(load[cpu] < 0.10 for cpu in cpus):
            return


def measure(load: LoadGen, proc: c.Proc, label: str, close: bool, duration: float, warmup: float,
            quiet: float = 0.0) -> dict:
    if quiet > 0:
        wait_quiet([load.server_cpu, load.client_cpu], quiet)
    if warmup > 0:
        load.run(proc.url, label, close, warmup)
    commits0 = c.metric(proc, "cronwarden_database_commits_total") if label == "daemon" else None
    (u0, s0), t0, st0, main0 = c.cpu_split(proc.pid), time.monotonic(), c.cpu_times(), c.main_thread_cpu(proc.pid)
    result = load.run(proc.url, label, close, duration, tidy=False)
    (u1, s1), t1, st1, main1 = c.cpu_split(proc.pid), time.monotonic(), c.cpu_times(), c.main_thread_cpu(proc.pid)
    commits1 = c.metric(proc, "cronwarden_database_commits_total") if commits0 is not None else None
    if label in WITH_RUNS:  # after the readings: these ends, one at a time, are not part of the run
        load.close_open_runs(proc.url, label)
    cpu0, cpu1 = u0 + s0, u1 + s1
    result["sys_share"] = (s1 - s0) / max(1e-9, cpu1 - cpu0)
    result["core_busy"] = c.busy_between(st0, st1, load.server_cpu)
    ok = result["requests"] - result["non2xx"]
    result["rps"] = ok / result["seconds"]
    result["server_cpu"] = (cpu1 - cpu0) / (t1 - t0)
    result["cpu_us_per_req"] = (cpu1 - cpu0) / max(1, ok) * 1e6
    result["loop_us_per_req"] = (main1 - main0) / max(1, ok) * 1e6
    # pings per group commit (each commit is one fsync); NaN for the bare server
    result["per_commit"] = ok / max(1.0, commits1 - commits0) if commits1 is not None else float("nan")
    result["client_cpu"] = result["client_cpu_s"] / result["seconds"]
    return result


def py_spy_profile(load: LoadGen, proc: c.Proc, out_path: Path, duration: float, close: bool,
                   native: bool = False) -> None:
    """Sample the daemon under keep-alive load; write collapsed stacks and print a summary."""
    spy = shutil.which("py-spy") or str(Path(c.PYTHON).parent / "py-spy")
    if not Path(spy).exists():
        c.log("py-spy not found (pip install py-spy); skipping the profile")
        return
    raw = out_path.with_suffix(".collapsed")
    argv = ["taskset", "-c", str(load.client_cpu), spy, "record", "--pid", str(proc.pid), "--threads",
            "--nolineno", "--rate", "250", "--format", "raw", "--output", str(raw),
            "--duration", str(int(duration) + 1)]
    argv += ["--native"] if native else ["--nonblocking"]
    prof = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    load.run(proc.url, "daemon", close, duration)
    try:
        _, err = prof.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        prof.kill()
        _, err = prof.communicate()
    if prof.returncode != 0 or not raw.exists():
        c.log(f"py-spy failed ({prof.returncode}): {err.strip()[-500:]}")
        return
    summary = summarize_collapsed(raw)
    out_path.write_text(summary)
    print(f"\npy-spy profile of the daemon ({'close' if close else 'keepalive'} load), collapsed stacks "
          f"in {raw}:\n{summary}")


BUCKETS = (  # (label, frames any of which puts a sample in it); first match wins, checked in order
    ("plan: monitor.step (state machine)", ("step (cronwarden/monitor.py)",)),
    ("plan: alerts.apply_alerts", ("apply_alerts (cronwarden/alerts.py)",)),
    ("plan: state to JSON (upsert_monitor, to_json)", ("upsert_monitor (cronwarden/statements.py)",
                                                       "MonitorState.to_json (cronwarden/monitor.py)")),
    ("plan: next deadline + timer wheel", ("Daemon._schedule (cronwarden/daemon.py)",)),
    ("plan: rest (ping/run rows, ids)", ("Daemon.plan (cronwarden/daemon.py)",)),
    ("store writer task (group commit, aiosqlite calls)", ("Store._commit_batch (cronwarden/store.py)",
                                                          "Store._write_loop (cronwarden/store.py)")),
    ("handle_ping / Daemon.ping / commit: rest", ("handle_ping (cronwarden/http.py)",
                                                 "Daemon.ping (cronwarden/daemon.py)",
                                                 "Daemon.commit (cronwarden/daemon.py)")),
    ("epoll_wait", ("EpollSelector.select (selectors.py)",)),
)


def summarize_collapsed(raw: Path, top: int = 18) -> str:
    """Event-loop thread: samples in buckets and top functions; other threads: their share."""
    buckets: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for frames, n in c.collapsed_stacks(raw):
        thread = re.sub(r"^thread \(\d+\): ", "", frames[0]) or "?"
        threads[thread] += n
        if thread != "MainThread":
            continue
        names = frames[1:]
        for name in set(names):
            inclusive[name] += n
        if names:
            own[names[-1]] += n
        label = "aiohttp + asyncio: HTTP parsing, routing, responses, transports, tasks"
        for bucket, marks in BUCKETS:
            if any(m in names for m in marks):
                label = bucket
                break
        buckets[label] += n
    main_n = threads["MainThread"]
    total = sum(threads.values())
    lines = [f"{total} samples: event loop (MainThread) {main_n}; "
             + ", ".join(f"{t} {n}" for t, n in threads.most_common() if t != "MainThread"),
             "(aiosqlite's threads sit in SimpleQueue.get between calls, which py-spy partly counts as busy;"
             " --py-spy-native shows SQLite's own work is a few % of samples)",
             "", "event-loop thread, by part (% of its samples):"]
    lines += [f"  {100 * k / max(1, main_n):5.1f}%  {name}" for name, k in buckets.most_common()]
    lines += ["", "event-loop thread, top inclusive:"]
    lines += [f"  {100 * k / max(1, main_n):5.1f}%  {name}" for name, k in inclusive.most_common(top + 10)
              if not any(x in name for x in ("runpy", "cli.py", "__main__.py", "runners.py", "run_forever",
                                             "run_until_complete", "_run_once", "Daemon.run ("))][:top]
    lines += ["", "event-loop thread, top self:"]
    lines += [f"  {100 * k / max(1, main_n):5.1f}%  {name}" for name, k in own.most_common(12)]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--monitors", type=int, default=10_000)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measured run (default 3)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load before each server's"
                    " first run in each mode")
    ap.add_argument("--rounds", type=int, default=4, help="measured runs per server and mode, the servers taking"
                    " turns (default 4; the ratio is the median of each round's ratio)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--modes", default="keepalive,close", help="comma list of keepalive, close")
    ap.add_argument("--serial", type=float, default=2.0, help="seconds of one-connection, one-at-a-time load per "
                    "server and mode, for the latency of a lone ping (default 2; 0: skip)")
    ap.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--prime", type=float, help="seconds of unmeasured keep-alive load on the daemon before the"
                    " runs, to get past each monitor's first ping after start-up (reads its run history); default:"
                    " one rotation of the path list at ~1500 req/s, at least 2 s; 0: none")
    ap.add_argument("--wait-quiet", type=float, default=3.0, help="before each run, wait up to this many "
                    "seconds for both CPUs to be idle (a shared machine); 0: do not wait")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    c.add_run_options(ap)
    ap.add_argument("--floor", action="store_true", help="also run the daemon with pings answered without "
                    "their commit (bench/_nodb.py, label no-db): the ceiling of durable pings on this Python path; "
                    "and a minimal durable server (bench/_minimal_server.py, label minimal): one row per ping")
    ap.add_argument("--py-spy", metavar="FILE", help="also profile the daemon with py-spy under keep-alive load")
    ap.add_argument("--py-spy-mode", choices=("keepalive", "close"), default="keepalive")
    ap.add_argument("--py-spy-native", action="store_true", help="include C frames (SQLite, kernel entry); "
                    "pauses the daemon per sample, so the load is lower while profiling")
    args = ap.parse_args()
    source = c.use_source(args.src)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    kind = args.loadgen
    if kind == "auto":
        kind = "wrk" if shutil.which("wrk") else "python"
    per_run = args.duration + 1.5 + args.wait_quiet + args.warmup / max(1, args.rounds)
    prime_budget = args.prime if args.prime is not None else args.monitors * 1.5 / 1500
    servers_n = 4 if args.floor else 2
    budget = args.max_seconds or (60 + prime_budget * (servers_n - 1) + len(modes) * servers_n * args.rounds * per_run
                                  + (30 if args.py_spy else 0) + args.monitors / 2000 * (servers_n - 1)
                                  + len(modes) * servers_n * (args.serial + 1 + args.wait_quiet))
    c.time_limit(budget)
    c.pin_to(args.client_cpu)  # keep this script off the servers' core

    background = c.warn_if_busy()
    workdir = Path(tempfile.mkdtemp(prefix="cw-ping-", dir=args.dir))
    procs: list[c.Proc] = []
    try:
        paths = ping_paths(args.monitors)
        # slow_after: see the module's doc (the runs here last as long as the server takes)
        config = c.write_config(workdir, c.monitor_lines(args.monitors, mixed=False, every="1h"), grace="1h",
                                slow_after="1h")
        c.log(f"starting daemon ({args.monitors} monitors) and bare server on CPU {args.server_cpu} ...")
        daemon = c.start_daemon(config, cpus={args.server_cpu})
        procs.append(daemon)
        c.wait_healthy(daemon)
        nodb = None
        if args.floor:
            floor_config = workdir / "no-db" / "cw.yaml"  # its own database, next to its own config
            floor_config.parent.mkdir()
            shutil.copy(config, floor_config)
            nodb = c.start_daemon(floor_config, cpus={args.server_cpu}, wrapper="_nodb.py")
            procs.append(nodb)
            c.wait_healthy(nodb)
        bare = c.start_process([c.PYTHON, str(Path(__file__).parent / "_bare_server.py")],
                               workdir / "bare.log", cpus={args.server_cpu})
        procs.append(bare)
        servers = [("bare", bare), ("daemon", daemon)] + ([("no-db", nodb)] if nodb else [])
        if args.floor:
            minimal = c.start_process([c.PYTHON, str(Path(__file__).parent / "_minimal_server.py"),
                                       str(workdir / "minimal.db"), str(args.monitors)],
                                      workdir / "minimal.log", cpus={args.server_cpu}, env=c.child_env())
            procs.append(minimal)
            servers.append(("minimal", minimal))
        load = LoadGen(kind, workdir, paths, args.connections, args.client_cpu, args.server_cpu)
        forms = Counter("start" if p.endswith("/start") else "exit" if p.endswith("/0") else "success" for p in paths)

        prime_s = args.prime if args.prime is not None else max(2.0, len(paths) / 1500)
        prime = None
        if prime_s > 0:
            c.log(f"  priming the daemon: {prime_s:.0f}s of keep-alive load (first ping of each monitor) ...")
            prime = load.run(daemon.url, "daemon", False, prime_s)
            if nodb:
                load.run(nodb.url, "no-db", False, prime_s)
        results: dict[tuple[str, str], list[dict]] = {}
        contended: list[str] = []
        for mode in modes:
            close = mode == "close"
            for rnd in range(args.rounds):
                for label, proc in servers:
                    c.log(f"  {mode:9s} round {rnd + 1}/{args.rounds} {label:6s} ...")
                    r = measure(load, proc, label, close, args.duration, args.warmup if rnd == 0 else 0.0,
                                args.wait_quiet)
                    results.setdefault((mode, label), []).append(r)
                    c.log(f"    {r['rps']:9.0f} req/s  server CPU {100 * r['server_cpu']:.0f}%  "
                          f"core busy {100 * r['core_busy']:.0f}%  errors {r['errors']}  non-2xx {r['non2xx']}")
                    if r["core_busy"] - r["server_cpu"] > 0.10:
                        contended.append(f"{mode}/{label} round {rnd + 1}")

        serial: dict[tuple[str, str], dict] = {}
        if args.serial > 0:
            for mode in modes:
                for label, proc in servers:
                    c.log(f"  one client, one request at a time: {mode} {label} ...")
                    if args.wait_quiet:
                        wait_quiet([args.server_cpu, args.client_cpu], args.wait_quiet)
                    serial[(mode, label)] = load.run(proc.url, label, mode == "close", args.serial, 1)
        health = c.healthz(daemon)
        if args.py_spy:
            py_spy_profile(load, daemon, Path(args.py_spy), max(3.0, args.duration), args.py_spy_mode == "close",
                           args.py_spy_native)
            health = c.healthz(daemon)
        for _, proc in servers:
            proc.stop()
        db = sqlite3.connect(f"file:{workdir / 'cw.db'}?mode=ro", uri=True)
        stored = db.execute("SELECT COUNT(*) FROM pings").fetchone()[0]
        db.close()

        print(f"\ncronwarden ping throughput  ({time.strftime('%Y-%m-%d %H:%M')}, {c.machine_line()})")
        gen = "wrk, 1 thread" if kind == "wrk" else "_pyload.py, 1 process"
        print(f"servers on CPU {args.server_cpu}, load generator ({gen}, {args.connections} connections)"
              f" on CPU {args.client_cpu}; {args.monitors} monitors; {args.rounds} rounds of {args.duration:.0f}s"
              f" runs, the servers taking turns in each; database in {workdir} ({_fstype(workdir)})")
        print(f"code: {source}")
        print(f"background load before the run: {background}")
        print("req/s: answered (2xx) per wall second, median of the runs; ratio: median of the rounds' ratios (each"
              " round's runs are seconds apart, so a slow or quick phase of the machine meets both servers),"
              " each round's under 'runs';\n"
              "req/CPU-s: answered per second of the"
              " server's CPU time (capacity of one core, robust to other load on the machine);\n"
              "srv CPU: the server process (all threads) per wall second; core busy: the whole server core;"
              " CPU us/req: server CPU time per answered request (of it sys: kernel share);\n"
              "loop us: of that, the main thread's (the event loop; the rest is the daemon's SQLite threads);"
              " pings/commit: answered pings per group commit (one fsync each)")
        print("path mix: " + ", ".join(f"{k} {100 * v / len(paths):.0f}%" for k, v in sorted(forms.items())))
        rows = []
        for mode in modes:
            med = {}
            for label, _ in servers:
                rs = results[(mode, label)]
                m = {k: statistics.median(r[k] for r in rs) for k in
                     ("rps", "p50_ms", "p99_ms", "server_cpu", "core_busy", "cpu_us_per_req", "loop_us_per_req",
                      "sys_share", "client_cpu", "per_commit")}
                m["errors"] = sum(r["errors"] + r["non2xx"] for r in rs)
                m["all"] = " / ".join(f"{r['rps']:.0f}" for r in rs)
                med[label] = m
                rows.append([mode, label, f"{m['rps']:.0f}", m["all"], f"{1e6 / m['cpu_us_per_req']:.0f}",
                             f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}",
                             f"{100 * m['server_cpu']:.0f}%", f"{100 * m['core_busy']:.0f}%",
                             f"{m['cpu_us_per_req']:.0f}",
                             f"{m['loop_us_per_req']:.0f}", f"{100 * m['sys_share']:.0f}%",
                             "" if math.isnan(m["per_commit"]) else f"{m['per_commit']:.1f}",
                             f"{100 * m['client_cpu']:.0f}%", m["errors"]])
            for label, _ in servers[1:]:
                pairs = list(zip(results[(mode, label)], results[(mode, "bare")]))
                ratios = [r["rps"] / b["rps"] for r, b in pairs]
                ratio = statistics.median(ratios)
                cap = statistics.median(b["cpu_us_per_req"] / r["cpu_us_per_req"] for r, b in pairs)
                extra = med[label]["cpu_us_per_req"] - med["bare"]["cpu_us_per_req"]
                loop_extra = med[label]["loop_us_per_req"] - med["bare"]["loop_us_per_req"]
                rows.append([mode, "ratio", f"{ratio:.3f}", f"{label}/bare " + " ".join(f"{x:.2f}" for x in ratios),
                             f"{cap:.3f}", "", "", "", "",
                             f"+{extra:.0f}", f"+{loop_extra:.0f}", "", "", "", ""])
        print(c.table(["mode", "server", "req/s", "runs", "req/CPU-s", "p50 ms", "p99 ms", "srv CPU", "core busy", "CPU us/req",
                       "loop us", "of it sys", "pings/commit", "client CPU", "err"], rows))
        if serial:
            print("\none client, one request at a time (latency of a lone ping; the daemon's includes its commit):")
            srows = []
            for (mode, label), r in serial.items():
                ok = r["requests"] - r["non2xx"]
                srows.append([mode, label, f"{ok / r['seconds']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"])
            print(c.table(["mode", "server", "req/s", "p50 ms", "p99 ms"], srows))
        if prime is not None:
            done = (prime["requests"] - prime["non2xx"]) / len(paths)
            print(f"priming run right after start-up (not in the table): "
                  f"{(prime['requests'] - prime['non2xx']) / prime['seconds']:.0f} req/s keep-alive over "
                  f"{prime['requests']} requests = {done:.2f} rotations of the path list"
                  + ("" if done >= 1 else " (less than one: raise --prime)"))
        if contended:
            print(f"WARNING: another process used >10% of the server core during: {', '.join(contended)}")
        print(f"\ndaemon: {health['pings']} pings acknowledged, {stored} rows in pings table after SIGTERM, "
              f"{health['alerts']} alerts raised")
        if stored < health["pings"]:
            print("WARNING: fewer stored pings than acknowledged")
        alerts = [line for line in daemon.log_text().splitlines() if "ALERT" in line or "WARNING" in line]
        for line in alerts[:3]:
            print("  daemon log: " + line[:200])
        return 0
    finally:
        c.finish(procs, workdir, args.keep)


def _fstype(path: Path) -> str:
    best, fstype = "", "?"
    try:
        for line in open("/proc/mounts"):
            dev, mnt, fs = line.split()[:3]
            if str(path).startswith(mnt) and len(mnt) > len(best):
                best, fstype = mnt, f"{fs} on {dev}"
    except OSError:
        pass
    return fstype


if __name__ == "__main__":
    sys.exit(main())
