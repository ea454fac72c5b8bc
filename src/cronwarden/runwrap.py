"""``cronwarden run NAME [options] -- COMMAND [ARGS...]``: run a job and report it.

The wrapper sends ``/ping/NAME/start?rid=RID`` (a fresh UUID per run, so
overlapping runs pair up), runs COMMAND without a shell (stdin inherited;
stdout and stderr merged, passed through to the wrapper's own stdout so cron
still mails them, and the last ``--max-output`` bytes kept), then POSTs that
tail to ``/ping/NAME/EXIT?rid=RID`` and exits with the command's own status
(128+N when a signal N killed it, as shells report).

Monitoring never gets in the job's way: the start ping goes out in a
background thread while the job already runs; every request has short
timeouts; the end ping retries with a small backoff for at most
``END_BUDGET`` seconds; an unreachable daemon costs one warning line on
stderr per run and nothing else. A command that cannot be started is
reported like a shell does: exit 127 (not found) or 126 (not executable),
with the error text as the ping's body.

``python -m cronwarden.runwrap NAME -- COMMAND`` is the same as
``cronwarden run``.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from types import FrameType
from typing import BinaryIO, Sequence, TextIO

from .units import parse_size

DEFAULT_URL = "http://127.0.0.1:8470"
DEFAULT_MAX_OUTPUT = 100 * 1024
CONNECT_TIMEOUT = 2.0  # seconds to open a connection to the daemon
REQUEST_TIMEOUT = 5.0  # seconds one request may take
START_BUDGET = 5.0  # the start ping gives up after this long (it runs beside the job)
END_BUDGET = 10.0  # the end ping (and waiting for the start ping) gives up after this long
BACKOFF = (0.25, 0.5, 1.0, 2.0)  # pauses between the attempts of one ping (so at most 5 attempts)
DRAIN = 1.0  # after the command exits, read what is still in the pipe for at most this long
MAX_RID = 128
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# options that may also follow NAME, and the attribute each one sets
OPTIONS_AFTER_NAME = {"--url": "url", "--config": "config", "-c": "config", "--rid": "rid",
                      "--max-output": "max_output"}


def default_config_path() -> str:
    return os.environ.get("CRONWARDEN_CONFIG", "/etc/cronwarden/cronwarden.yaml")


# --------------------------------------------------------------------------
# Pure parts: the output ring and the exit status.


class OutputTail:
    """The last `limit` bytes of a stream, kept as a ring of chunks (never the whole stream)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.limit <= 0:
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._chunks and self._size - len(self._chunks[0]) >= self.limit:
            self._size -= len(self._chunks.popleft())

    def value(self) -> bytes:
        """The tail, at most `limit` bytes; when output was dropped, it starts with a line saying so."""
        data = b"".join(self._chunks)
        if self.total <= self.limit:
            return data
        marker_len = len(_dropped_marker(self.total))
        if self.limit <= marker_len:
            return data[len(data) - self.limit:] if self.limit > 0 else b""
        tail = data[len(data) - (self.limit - marker_len):]
        return _dropped_marker(self.total - len(tail)) + tail


def _dropped_marker(dropped: int) -> bytes:
    return f"[cronwarden: {dropped} earlier bytes of output not kept]\n".encode()


def exit_status(returncode: int) -> int:
    """Popen's returncode as a shell reports it: -N (killed by signal N) becomes 128+N."""
    return 128 - returncode if returncode < 0 else returncode


# --------------------------------------------------------------------------
# Talking to the daemon.


class Pinger:
    """Pings for one run; warns on `err` at most once, whatever fails and however often."""

    def __init__(self, base_url: str, name: str, rid: str, err: TextIO) -> None:
        problem = url_problem(base_url)
        if problem:
            raise ValueError(problem)
        parts = urllib.parse.urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self.name = name
        self.rid = rid
        self.err = err
        self._warned = False
        self._lock = threading.Lock()

    def url_path(self, action: str) -> str:
        name = urllib.parse.quote(self.name, safe="")
        return f"{self.prefix}/ping/{name}/{action}?rid={urllib.parse.quote(self.rid, safe='')}"

    def ping(self, action: str, body: bytes | None, budget: float, stop: threading.Event | None = None) -> bool:
        """Send one ping, retrying connection errors and 5xx until `budget` seconds pass
        (or, once `stop` is set, no further attempt)."""
        stop = stop or threading.Event()
        deadline = time.monotonic() + budget
        path = self.url_path(action)
        attempt = 0
        while True:
            try:
                status, text = self._request(path, body, deadline)
            except (OSError, http.client.HTTPException) as exc:
                reason, retry = f"cannot reach the daemon at {self.base_url}: {_reason(exc)}", True
            else:
                if status == 200:
                    return True
                reason = f"{self.base_url}{path.split('?')[0]} answered {status} {text}".rstrip()
                retry = status >= 500 or status in (408, 429)
            if not retry or attempt >= len(BACKOFF) or time.monotonic() + BACKOFF[attempt] >= deadline \
                    or stop.wait(BACKOFF[attempt]):
                self.warn(f"monitor '{self.name}' not pinged: {reason}")
                return False
            attempt += 1

    def _request(self, path: str, body: bytes | None, deadline: float) -> tuple[int, str]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no time left")
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            import ssl

            conn = http.client.HTTPSConnection(self.host, self.port, timeout=min(CONNECT_TIMEOUT, remaining),
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=min(CONNECT_TIMEOUT, remaining))
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(max(0.1, min(REQUEST_TIMEOUT, deadline - time.monotonic())))
            headers = {"User-Agent": "cronwarden-run", "Connection": "close"}
            if body is None:
                conn.request("GET", path, headers=headers)
            else:
                headers["Content-Type"] = "text/plain; charset=utf-8"
                conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read(500).decode("utf-8", errors="replace").strip().splitlines()
            return resp.status, text[0] if text else ""
        finally:
            conn.close()

    def warn(self, message: str) -> None:
        with self._lock:
            if self._warned:
                return
            self._warned = True
        try:
            print(f"cronwarden run: warning: {message}", file=self.err, flush=True)
        except (OSError, ValueError):
            pass


def url_problem(url: str) -> str | None:
    """None for a usable daemon URL, else why not."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        return f"bad daemon URL {url!r}: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"bad daemon URL {url!r}: use http://HOST:PORT"
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(getattr(exc, "strerror", None) or exc) or type(exc).__name__


def resolve_url(url: str | None, config_path: str | None, err: TextIO) -> str:
    """`--url`, else $CRONWARDEN_URL, else the config's `listen`, else the default address."""
    if url or os.environ.get("CRONWARDEN_URL"):
        from .status import daemon_url

        return daemon_url(None, url)
    path = config_path or default_config_path()
    if config_path is None and not os.path.exists(path):
        return DEFAULT_URL
    try:
        from .config import ConfigError, load_config
        from .status import daemon_url

        return daemon_url(load_config(path), None)
    except ConfigError as exc:
        reason = exc.problems[0] if exc.problems else str(exc)
    except Exception as exc:  # a broken config must not keep the job from running
        reason = f"{path}: {exc}"
    if config_path is not None:  # said explicitly; a default path that does not load falls back quietly
        print(f"cronwarden run: warning: {reason}; pinging {DEFAULT_URL}", file=err, flush=True)
    return DEFAULT_URL


# --------------------------------------------------------------------------
# Running the command.


def start_error(command: str, exc: OSError) -> tuple[int, str]:
    """Exit status and message for a command that could not be started, as a shell gives them."""
    if isinstance(exc, FileNotFoundError) and not ("/" in command and os.path.exists(command)):
        what = "No such file or directory" if "/" in command else "command not found"
        return 127, f"{command}: {what}"
    if isinstance(exc, FileNotFoundError):  # the file exists: its #! interpreter does not
        return 126, f"{command}: bad interpreter: {exc.strerror}"
    return 126, f"{command}: {exc.strerror or exc}"


def pump(proc: subprocess.Popen[bytes], tail: OutputTail, out: BinaryIO | None) -> None:
    """Copy the command's output to `out` and `tail` until it ends.

    Stops at end of file, or shortly after the command exits when something
    it left running in the background still holds the pipe open."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    exited_at: float | None = None
    while True:
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
        wait = 0.5 if exited_at is None else exited_at + DRAIN - time.monotonic()
        if wait < 0:
            return
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            continue
        chunk = os.read(fd, 64 * 1024)
        if not chunk:
            return
        tail.add(chunk)
        if out is not None:
            try:
                out.write(chunk)
                out.flush()
            except (OSError, ValueError):
                out = None  # nobody reads our stdout any more; keep capturing


def run(name: str, command: Sequence[str], url: str, rid: str, max_output: int,
        out: BinaryIO | None = None, err: TextIO | None = None) -> int:
    """Run `command` as monitor `name`; returns the exit status the wrapper exits with."""
    err = err if err is not None else sys.stderr
    if out is None:
        sys.stdout.flush()  # whatever was printed before comes first
        out = sys.stdout.buffer
    pinger = Pinger(url, name, rid, err)
    job_ended = threading.Event()  # set when the job has ended: the start ping makes no new attempt
    starter = threading.Thread(target=pinger.ping, args=("start", None, START_BUDGET, job_ended), daemon=True)
    starter.start()
    tail = OutputTail(max_output)
    try:
        proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as exc:
        status, message = start_error(command[0], exc)
        print(f"cronwarden run: {message}", file=err, flush=True)
        tail.add(f"cronwarden run: {message}\n".encode())
    else:
        previous = _forward_signals(proc)
        try:
            with proc:
                pump(proc, tail, out)
                status = exit_status(proc.wait())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    deadline = time.monotonic() + END_BUDGET
    job_ended.set()  # an attempt in flight may finish (the start must reach the daemon first)
    starter.join(max(0.0, deadline - time.monotonic()))
    pinger.ping(str(status), tail.value(), max(0.1, deadline - time.monotonic()))
    return status


def _forward_signals(proc: subprocess.Popen[bytes]) -> dict[int, object]:
    """SIGTERM, SIGINT and SIGHUP go to the command; the wrapper waits and reports how it ended."""

    def forward(signum: int, frame: FrameType | None) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(signum)
            except OSError:
                pass

    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in FORWARDED:
            previous[sig] = signal.signal(sig, forward)
    return previous


# --------------------------------------------------------------------------
# Command line.


USAGE = "%(prog)s NAME [--url URL] [--config FILE] [--rid RID] [--max-output SIZE] -- COMMAND [ARGS...]"


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="daemon URL (default: $CRONWARDEN_URL, else the config's listen)")
    parser.add_argument("--config", "-c", metavar="FILE", help="config file to find the daemon's address in "
                        f"(default {default_config_path()}, if it exists)")
    parser.add_argument("--rid", metavar="RID", help="run id sent with both pings (default: a fresh UUID)")
    parser.add_argument("--max-output", default=None, metavar="SIZE",
                        help="keep at most this much of the output's tail, e.g. 100KiB (the default)")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="NAME -- COMMAND [ARGS...]",
                        help="the monitor's name, then the command to run (no shell)")
    parser.set_defaults(func=main_args)


def split_argv(argv: Sequence[str]) -> tuple[str, dict[str, str], list[str]]:
    """``NAME [options] [--] COMMAND...`` -> (name, options, command). Pure; raises ValueError.

    Options may follow NAME (``run NAME --url U -- cmd``). Everything after the
    first ``--``, or from the first word that is not an option, is the command,
    kept exactly (later ``--`` included)."""
    words = list(argv)
    if words[:1] == ["--"]:
        words = words[1:]
    if not words:
        raise ValueError("missing NAME and COMMAND: cronwarden run NAME -- COMMAND [ARGS...]")
    name, rest = words[0], words[1:]
    options: dict[str, str] = {}
    i = 0
    while i < len(rest):
        word = rest[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-"):
            break
        key, eq, value = word.partition("=")
        if key not in OPTIONS_AFTER_NAME:
            raise ValueError(f"unknown option {word!r} before the command (put the command after --)")
        if not eq:
            if i + 1 >= len(rest):
                raise ValueError(f"option {key} needs a value")
            i += 1
            value = rest[i]
        options[OPTIONS_AFTER_NAME[key]] = value
        i += 1
    command = rest[i:]
    if not command:
        raise ValueError("missing COMMAND: cronwarden run NAME -- COMMAND [ARGS...]")
    return name, options, command


def main_args(args: argparse.Namespace) -> int:
    try:
        name, options, command = split_argv(args.argv)
    except ValueError as exc:
        print(f"cronwarden run: {exc}", file=sys.stderr)
        return 2
    opt = {key: getattr(args, key, None) for key in ("url", "config", "rid", "max_output")}
    opt.update({key: value for key, value in options.items()})
    try:
        max_output = DEFAULT_MAX_OUTPUT if opt["max_output"] is None else parse_size(opt["max_output"])
    except ValueError as exc:
        print(f"cronwarden run: --max-output: {exc}", file=sys.stderr)
        return 2
    rid = opt["rid"] or str(uuid.uuid4())
    if len(rid) > MAX_RID:
        print(f"cronwarden run: --rid is longer than {MAX_RID} characters", file=sys.stderr)
        return 2
    url = resolve_url(opt["url"], opt["config"], sys.stderr)
    problem = url_problem(url)
    if problem:  # still run the job, unmonitored
        print(f"cronwarden run: warning: {problem}; the job runs unmonitored", file=sys.stderr, flush=True)
        return _run_unmonitored(command)
    return run(name, command, url, rid, max_output)


def _run_unmonitored(command: Sequence[str]) -> int:
    try:
        proc = subprocess.Popen(list(command))
    except OSError as exc:
        status, message = start_error(command[0], exc)
        print(f"cronwarden run: {message}", file=sys.stderr)
        return status
    previous = _forward_signals(proc)
    try:
        return exit_status(proc.wait())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``cronwarden run``."""
    parser = sub.add_parser(
        "run", usage=USAGE, help="run a command and report its start, end, exit status and output to the daemon",
        description="Run COMMAND (no shell), pass its output through, and ping /ping/NAME/start and "
                    "/ping/NAME/EXIT with the output's tail. Exits with the command's status.")
    _add_options(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cronwarden run", usage=USAGE, description="Run a command and report it to the daemon.")
    _add_options(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
