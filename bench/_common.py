"""Shared helpers for the benchmark scripts (not a test module).

Everything here is synchronous and stdlib-only so the scripts can drive the
daemon from outside, exactly as an operator would: a generated YAML config in
a temp directory, ``python -m cronwarden serve`` as a subprocess, its log in a
file (never a pipe, so a chatty daemon can never block on a full pipe), and
/proc for memory and CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Coroutine, Iterable, Iterator

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# Zones and cron expressions for "mixed" monitors: DST and non-DST zones, both
# hemispheres, fixed-time and wildcard expressions, names and macros.
ZONES = (
    "UTC", "Europe/Riga", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "Europe/London",
    "America/Los_Angeles", "Asia/Kolkata", "Pacific/Auckland", "America/Sao_Paulo", "Europe/Berlin",
    "Africa/Cairo",
)
CRON_TEMPLATES = (
    "{m} * * * *", "*/15 * * * *", "{m} {h} * * *", "{m} {h} * * 1-5", "{m} {h} * * sun",
    "0 0 1 * *", "{m} */6 * * *", "@daily", "@hourly", "0 9-17 * * mon-fri", "{m} {h} 1,15 * *",
    "30 3 * * *",
)


SOURCE: Path | None = None  # a cronwarden source tree to run instead of the installed one


def use_source(path: str | None) -> str:
    """Run daemons from `path` (a dir holding cronwarden/, e.g. `git archive HEAD src | tar -x`).

    Either way the measured tree is compiled to bytecode first, as ``pip install .`` leaves
    an installed cronwarden. Run from a source tree, each daemon would otherwise compile
    every module as it starts where PYTHONDONTWRITEBYTECODE is set (~0.2 s of start-up)."""
    global SOURCE
    if path:
        src = Path(path).resolve()
        if (src / "src" / "cronwarden").is_dir():
            src = src / "src"
        if not (src / "cronwarden" / "__init__.py").exists():
            raise SystemExit(f"--src {path}: no cronwarden package there")
        SOURCE = src
    compileall.compile_dir(SOURCE or REPO / "src", quiet=1)
    return describe_source()


def describe_source() -> str:
    """Which code is measured: the tree and, for the repository itself, its commit and dirty state."""
    tree = SOURCE or REPO / "src"
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "?", ""
    if SOURCE is None:
        return f"{tree} (repo HEAD {head}{', src/ has uncommitted changes' if dirty else ''})"
    return f"{tree} (repo HEAD is {head})"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    env["PYTHONUNBUFFERED"] = "1"
    if SOURCE is not None:
        env["PYTHONPATH"] = str(SOURCE) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ configs


def monitor_lines(n: int, *, prefix: str = "m", start: int = 0, mixed: bool = True,
                  every: str = "1h") -> Iterable[str]:
    """YAML lines for `n` monitors named m000000.. ; `mixed`: half every, half cron."""
    for i in range(start, start + n):
        name = f"{prefix}{i:06d}"
        if not mixed or i % 2 == 0:
            yield f"  {name}: {{every: {every}}}"
        else:
            k = i // 2
            expr = CRON_TEMPLATES[k % len(CRON_TEMPLATES)].format(m=k % 60, h=(k // 60) % 24)
            tz = ZONES[((k * 2654435761) >> 7) % len(ZONES)]  # scattered, as in a config sorted by name
            yield f"  {name}: {{cron: '{expr}', timezone: {tz}}}"


def write_config(directory: Path, monitors: Iterable[str], *, grace: str = "1h", slow_after: str | None = None,
                 channels: str = "", default_channels: str = "", name: str = "cw.yaml") -> Path:
    """A config listening on 127.0.0.1:0 with its database next to it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with path.open("w") as f:
        f.write("server:\n  listen: 127.0.0.1:0\n  database: ./cw.db\n")
        f.write(f"defaults:\n  grace: {grace}\n")
        if slow_after:
            f.write(f"  slow_after: {slow_after}\n")
        if default_channels:
            f.write(f"  channels: [{default_channels}]\n")
        if channels:
            f.write("channels:\n" + channels)
        f.write("monitors:\n")
        for line in monitors:
            f.write(line + "\n")
    return path


# ------------------------------------------------------------------ processes


@dataclass
class Proc:
    popen: subprocess.Popen
    log_path: Path
    port: int
    started: float  # time.monotonic() just before Popen
    listening_at: float  # time.monotonic() when the listening line was seen

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the daemon commits and exits), SIGKILL if it has not gone by `timeout`."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def start_process(argv: list[str], log_path: Path, *, cpus: set[int] | None = None,
                  timeout: float = 120.0, env: dict[str, str] | None = None, on_spawn=None) -> Proc:
    """Start `argv` with stderr to `log_path`; wait for the `listening on` line."""
    log_file = log_path.open("wb")
    def pin() -> None:  # runs in the child, before exec: threads it starts inherit the mask
        os.sched_setaffinity(0, cpus)

    preexec = pin if cpus is not None else None
    started = time.monotonic()
    popen = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log_file, stdin=subprocess.DEVNULL,
                             preexec_fn=preexec, env=env, cwd=str(log_path.parent))
    log_file.close()
    if on_spawn is not None:
        on_spawn(popen)
    deadline = started + timeout
    try:
        while True:
            text = log_path.read_text(errors="replace")
            match = LISTENING.search(text)
            if match:
                return Proc(popen, log_path, int(match.group(2)), started, time.monotonic())
            if popen.poll() is not None:
                raise RuntimeError(f"{argv[:4]} exited with {popen.returncode}:\n{text[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[:4]} not listening after {timeout:.0f}s:\n{text[-3000:]}")
            time.sleep(0.005)
    except BaseException:
        if popen.poll() is None:
            popen.kill()
            popen.wait(5)
        raise


def start_daemon(config: Path, *, cpus: set[int] | None = None, timeout: float = 180.0,
                 log_name: str = "daemon.log", on_spawn=None, gc_log: bool = False,
                 wrapper: str | None = None) -> Proc:
    """`python -m cronwarden serve`; with `gc_log`, through _gcwatch.py (GC pauses logged);
    with `wrapper`, through that script of bench/ (e.g. _nodb.py)."""
    env = child_env()
    wrapper = "_gcwatch.py" if gc_log else wrapper
    entry = [str(Path(__file__).resolve().parent / wrapper)] if wrapper else ["-m", "cronwarden"]
    return start_process([PYTHON, *entry, "serve", "--config", str(config)],
                         config.parent / log_name, cpus=cpus, timeout=timeout, env=env,
                         on_spawn=on_spawn)


def finish(procs: Iterable[Proc], workdir: Path, keep: bool) -> None:
    """End of a benchmark: stop what it started, then keep or remove its temp dir."""
    signal.alarm(0)
    for proc in procs:
        proc.stop()
    if keep:
        log(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


GCPAUSE = re.compile(r"GCPAUSE gen=(\d) ms=([\d.]+) at=([\d.]+)")


def gc_pauses(log_text: str, since: float = 0.0, until: float = float("inf")) -> list[tuple[int, float, float]]:
    """(generation, ms, epoch at end) of the GC pauses _gcwatch.py logged within [since, until]."""
    out = []
    for m in GCPAUSE.finditer(log_text):
        gen, ms, at = int(m.group(1)), float(m.group(2)), float(m.group(3))
        if since <= at <= until:
            out.append((gen, ms, at))
    return out


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_healthy(proc: Proc, timeout: float = 60.0, interval: float = 0.005) -> float:
    """Poll /healthz until 200; returns time.monotonic() of the first 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _ = http_get(proc.url + "/healthz", timeout=max(1.0, deadline - time.monotonic()))
            if status == 200:
                return time.monotonic()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"/healthz not 200 within {timeout}s")
        time.sleep(interval)


def healthz(proc: Proc) -> dict:
    _, body = http_get(proc.url + "/healthz")
    return json.loads(body)


def metric(proc: Proc, name: str) -> float | None:
    """One unlabelled sample from the daemon's /metrics (None from a server without it)."""
    status, body = http_get(proc.url + "/metrics")
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


# ------------------------------------------------------------------ /proc


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _stat_times(path: str) -> tuple[float, float]:
    """(utime, stime) in seconds from a /proc stat file (a process's or one thread's)."""
    with open(path) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime, stime are fields 14, 15
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of the whole process (all threads), in seconds."""
    return _stat_times(f"/proc/{pid}/stat")


def main_thread_cpu(pid: int) -> float:
    """utime + stime of the process's main thread (the daemon's event loop), in seconds."""
    return sum(_stat_times(f"/proc/{pid}/task/{pid}/stat"))


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    return sum(cpu_split(pid))


# ------------------------------------------------------------------ printing


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(c.rjust(w) if n and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
    return ordered[k]


def machine_line() -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {sys.version.split()[0]}"


def cpu_times() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies from /proc/stat (busy = total - idle - iowait)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                nums = [int(v) for v in vals[:8]]
                total = sum(nums)
                out[int(name[3:])] = (total - nums[3] - nums[4], total)
    return out


def busy_between(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpu: int) -> float:
    b0, t0 = before[cpu]
    b1, t1 = after[cpu]
    return (b1 - b0) / max(1, t1 - t0)


def background_load(seconds: float = 1.0) -> dict[int, float]:
    """Busy fraction of each CPU over `seconds` before a benchmark (noise check)."""
    before = cpu_times()
    time.sleep(seconds)
    after = cpu_times()
    return {cpu: busy_between(before, after, cpu) for cpu in before}


def warn_if_busy(seconds: float = 1.0, threshold: float = 0.15) -> str:
    load = background_load(seconds)
    text = ", ".join(f"CPU{cpu} {100 * v:.0f}%" for cpu, v in sorted(load.items()))
    if max(load.values()) > threshold:
        log(f"WARNING: the machine is busy before the benchmark ({text}); figures will be noisy")
    return text


def add_run_options(ap: "argparse.ArgumentParser") -> None:
    """--dir, --src, --keep and --max-seconds, which every script takes."""
    ap.add_argument("--dir", help="parent of the temp dir (its filesystem takes the fsyncs); default $TMPDIR")
    ap.add_argument("--src", help="cronwarden source tree to measure instead of the installed one "
                    "(e.g. from `git archive HEAD src | tar -x -C DIR`)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--max-seconds", type=float, default=0, help="hard limit for the whole run (default: computed)")


def add_pin_options(ap: "argparse.ArgumentParser", peer: str) -> None:
    """--daemon-cpu, --PEER-cpu, --no-pin and --timeout, for a script that runs one daemon
    next to its own `peer` (the load client or the webhook receiver)."""
    ap.add_argument("--daemon-cpu", type=int, default=0)
    ap.add_argument(f"--{peer}-cpu", type=int, default=1)
    ap.add_argument("--no-pin", action="store_true", help=f"let the scheduler place the daemon and the {peer}")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds the daemon may take to start")


def time_limit(budget: float) -> None:
    """End the run with TimeoutError after `budget` seconds (SIGALRM)."""
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError(f"over {budget:.0f}s")))
    signal.alarm(int(budget))


def pin_to(cpu: int) -> None:
    """Keep this process (and what it starts) on `cpu`, where the machine allows it."""
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass


def run_within(budget: float, coro: "Coroutine[Any, Any, int]", cpu: int | None = None) -> int:
    """asyncio.run(coro) under a time limit, pinned to `cpu` when one is given."""
    time_limit(budget)
    if cpu is not None:
        pin_to(cpu)
    try:
        return asyncio.run(coro)
    finally:
        signal.alarm(0)


def collapsed_stacks(raw: Path) -> Iterator[tuple[list[str], int]]:
    """(frames, samples) for each line of py-spy's collapsed output (`--format raw`)."""
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)
