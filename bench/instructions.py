#!/usr/bin/env python3
"""Instructions per ping, counted by valgrind's callgrind: cronwarden next to bare aiohttp.

The wall-clock figures of ping_throughput.py swing by ±20% on a shared VM (the
bare server alone went from 64 to 130 µs per request between runs), more than most
changes to the ping path move them. Instructions executed barely do: this script
runs ``_instr_harness.py`` (the server and 20 clients in one process, keep-alive
or a new connection per ping) under callgrind twice, with ``--counts`` pings per
client, and reports the difference divided by the pings between: instructions per
ping, warm-up and start-up cancelled out. The clients' own instructions are in
both servers' figures alike. Repeated runs of the same code agree within ~1 – 2%
(the group commits fall a little differently each time). The ratio bare/daemon is
what the wall-clock ratio would be if an instruction cost the same in both; the
daemon's cost more (its working set is larger), so the wall-clock ratio is lower.

Needs valgrind (Debian: ``apt-get install valgrind``); ~2 minutes per cell, the two
runs of a cell in parallel. ``--check`` runs the harness once per cell without
valgrind, with a few pings (what bench/smoke runs). Mode ``direct`` (daemon only)
counts ``Daemon.ping`` called by the clients with the same pings and no HTTP: the
daemon's own path with its writer and database thread, within ~1% between runs.

    python bench/instructions.py                       # keepalive and close, bare and daemon; direct
    python bench/instructions.py --modes keepalive --servers daemon --src /tmp/snap
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, add_run_options, child_env, machine_line, table, time_limit, use_source  # noqa: E402
from _instr_harness import CLIENTS  # noqa: E402

HARNESS = Path(__file__).resolve().parent / "_instr_harness.py"
REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def start(directory: Path, count: int, mode: str, server: str, valgrind: bool) -> subprocess.Popen:
    directory.mkdir(parents=True, exist_ok=True)
    argv = [PYTHON, str(HARNESS), str(directory), str(count), mode, server]
    if valgrind:
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={directory / 'callgrind.out'}", *argv]
    env = child_env()
    env["PYTHONHASHSEED"] = "0"
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen) -> str:
    """The run's stderr, once it ended well."""
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"harness failed ({proc.returncode}): {err.strip()[-500:]}")
    return err


def instructions(proc: subprocess.Popen) -> int:
    err = finished(proc)
    found = REFS.findall(err)
    if not found:
        raise SystemExit(f"no instruction count in callgrind's output: {err.strip()[-300:]}")
    return int(found[-1].replace(",", ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="keepalive,close,direct")
    ap.add_argument("--servers", default="bare,daemon")
    ap.add_argument("--counts", default="150,300", help="pings per client in the two runs (default 150,300)")
    ap.add_argument("--check", action="store_true", help="run the harness without valgrind, a few pings per cell")
    add_run_options(ap)
    args = ap.parse_args()
    print(machine_line())
    print("measuring", use_source(args.src))
    modes, servers = args.modes.split(","), args.servers.split(",")
    low, high = (int(n) for n in args.counts.split(","))
    if not args.check and shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind); nothing measured")
        return 1
    time_limit(args.max_seconds or (60 if args.check else 600) * len(modes) * len(servers))
    tmp = Path(tempfile.mkdtemp(prefix="cw-instr-", dir=args.dir))
    rows, per_ping = [], {}
    try:
        for mode in modes:
            for server in servers:
                if mode == "direct" and server != "daemon":
                    continue  # no HTTP: only the daemon has a ping path to call
                if args.check:
                    finished(start(tmp / f"{mode}-{server}", 5, mode, server, False))
                    print(f"  {mode:9s} {server:6s} ran")
                    continue
                runs = [start(tmp / f"{mode}-{server}-{n}", n, mode, server, True) for n in (low, high)]
                a, b = (instructions(p) for p in runs)
                per_ping[mode, server] = (b - a) / (CLIENTS * (high - low))
                rows.append([mode, server, f"{per_ping[mode, server]:,.0f}", f"{a:,}", f"{b:,}"])
                print(f"  {mode:9s} {server:6s} {per_ping[mode, server]:,.0f} instructions per ping", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.check:
        return 0
    for mode in modes:
        if (mode, "bare") in per_ping and (mode, "daemon") in per_ping:
            bare, daemon = per_ping[mode, "bare"], per_ping[mode, "daemon"]
            rows.append([mode, "ratio", f"{bare / daemon:.3f}", "bare/daemon", f"daemon +{daemon - bare:,.0f}"])
    print(f"\ninstructions per ping (callgrind, {CLIENTS} clients in the server's process, {low} and {high} pings "
          f"each after a warm-up; clients included)")
    print(table(["mode", "server", "per ping", f"run of {low}", f"run of {high}"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
