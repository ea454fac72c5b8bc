"""`cronwarden run`: the wrapper as a subprocess against the real daemon, and its pure parts."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import DaemonFactory, DaemonProcess
from cronwarden import runwrap

CONFIG = """
server:
  listen: 127.0.0.1:0
  database: ./cw.db
  max_body: 1MiB
monitors:
  job: {every: 1h}
  other: {every: 1h}
  killed: {every: 1h}
  big: {every: 1h}
  pair: {every: 1h}
  missing: {every: 1h}
  term: {every: 1h}
"""


async def wrap(*args: str, env: dict[str, str] | None = None,
               timeout: float = 30.0) -> tuple[int, bytes, str, float]:
    """`python -m cronwarden.runwrap ARGS`: (exit status, stdout, stderr, seconds taken)."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronwarden.runwrap", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode(), time.monotonic() - started


async def last_run(d: DaemonProcess, name: str) -> dict:
    data = await d.api(f"monitors/{name}")
    assert data["runs"], f"no run recorded for {name}: {data}"
    return data["runs"][0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------
# Against the real daemon.


async def test_exit_status_output_and_duration_reach_the_daemon(daemon: DaemonFactory) -> None:
    d = await daemon(CONFIG)

    async def fast_after_slow() -> tuple[int, bytes, str, float]:
        await asyncio.sleep(0.4)  # starts while the slow run of the same monitor is still open
        return await wrap("pair", "--url", d.url, "--", "sh", "-c", "echo fast")

    failed, killed, slow, fast, background = await asyncio.gather(
        wrap("job", "--url", d.url, "--", "sh", "-c", "echo to-stdout; sleep 0.2; echo to-stderr >&2; exit 3"),
        wrap("killed", "--url", d.url, "--", "sh", "-c", "kill -TERM $$"),
        wrap("pair", "--url", d.url, "--", "sh", "-c", "sleep 1.2; echo slow"),
        fast_after_slow(),
        wrap("other", "--url", d.url, "--", "sh", "-c", "sleep 4 & echo started"))

    code, out, err, _ = failed
    assert code == 3
    assert out == b"to-stdout\nto-stderr\n"  # both streams pass through to stdout, for cron's mail
    assert err == ""
    run = await last_run(d, "job")
    assert run["exit_status"] == 3
    assert run["output"] == "to-stdout\nto-stderr\n"
    assert run["started_at"] is not None and run["duration_s"] is not None
    assert 0.1 <= run["duration_s"] < 5  # the start and end pings paired up
    uuid.UUID(run["rid"])
    assert (await d.api("monitors/job"))["status"] == "down"

    # A child killed by a signal: 128 + N, as a shell reports it.
    assert killed[0] == 128 + signal.SIGTERM
    assert (await last_run(d, "killed"))["exit_status"] == 143

    # Overlapping runs of one monitor: each end pairs with its own start by rid.
    assert slow[0] == fast[0] == 0
    runs = {r["output"]: r for r in (await d.api("monitors/pair"))["runs"]}
    assert set(runs) == {"slow\n", "fast\n"}
    assert runs["slow\n"]["rid"] != runs["fast\n"]["rid"]
    # (the start ping goes out beside the job, so the daemon may see a few ms less)
    assert runs["slow\n"]["duration_s"] >= 1.0
    assert runs["fast\n"]["duration_s"] < 1.0

    # A job that leaves something running in the background, holding the output pipe
    # open, does not keep the wrapper waiting for it.
    code, out, _, took = background
    assert (code, out) == (0, b"started\n") and took < 3.5
    assert (await last_run(d, "other"))["output"] == "started\n"

    # Options may also follow NAME, the URL may come from the environment, and a
    # later "--" belongs to the command.
    code, out, _, _ = await wrap("job", "--max-output", "10KiB", "--", "sh", "-c", 'echo "$1"', "--", "ok",
                                 env={"CRONWARDEN_URL": d.url})
    assert (code, out) == (0, b"ok\n")
    run = await last_run(d, "job")
    assert run["exit_status"] == 0 and run["output"] == "ok\n"
    assert (await d.api("monitors/job"))["status"] == "up"


async def test_output_tail_and_commands_that_cannot_start(daemon: DaemonFactory, tmp_path: Path) -> None:
    d = await daemon(CONFIG)
    script = "import sys\nfor i in range(20000): sys.stdout.write(f'line {i:05d}\\n')\n"
    not_executable = tmp_path / "not-executable.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    big, missing, denied = await asyncio.gather(
        wrap("big", "--url", d.url, "--max-output", "1KiB", "--", sys.executable, "-c", script),
        wrap("missing", "--url", d.url, "--", "no-such-command-cw", "arg"),
        wrap("other", "--url", d.url, "--", str(not_executable)))  # "other": pings of its own

    # Only the tail of a long output is kept; all of it passes through.
    code, out, _, _ = big
    assert code == 0
    assert len(out) == 20000 * 11 and out.endswith(b"line 19999\n")
    output = (await last_run(d, "big"))["output"]
    assert len(output.encode()) <= 1024
    assert output.endswith("line 19998\nline 19999\n")
    first, rest = output.split("\n", 1)
    assert first == f"[cronwarden: {20000 * 11 - len(rest)} earlier bytes of output not kept]"

    # A command that cannot be started: 127 or 126 as from a shell, and a fail ping saying why.
    code, _, err, _ = missing
    assert code == 127
    assert err.splitlines() == ["cronwarden run: no-such-command-cw: command not found"]
    run = await last_run(d, "missing")
    assert run["exit_status"] == 127 and "no-such-command-cw: command not found" in run["output"]
    assert (await d.api("monitors/missing"))["status"] == "down"
    code, _, err, _ = denied
    assert code == 126 and "Permission denied" in err
    assert (await last_run(d, "other"))["exit_status"] == 126


async def test_sigterm_is_forwarded_to_the_command(daemon: DaemonFactory) -> None:
    d = await daemon(CONFIG)
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', flush=True), sys.exit(7)))\n"
             "print('ready', flush=True)\n"
             "time.sleep(30)\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronwarden.runwrap", "term", "--url", d.url, "--", sys.executable, "-c", child,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    rest, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 7, err
    assert rest == b"got TERM\n"
    run = await last_run(d, "term")
    assert run["exit_status"] == 7 and run["output"] == "ready\ngot TERM\n"


async def test_an_unreachable_daemon_does_not_block_the_job() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code, out, err, took = await wrap("job", "--url", url, "--", "sh", "-c", "echo done; exit 5")
    assert code == 5 and out == b"done\n"
    assert took < 15
    lines = err.splitlines()
    assert len(lines) == 1, err  # one warning per run, not one per ping or retry
    assert lines[0].startswith("cronwarden run: warning: monitor 'job' not pinged: cannot reach the daemon at "
                               f"{url}")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert runwrap.main(["job"]) == 2
    assert "missing COMMAND" in capsys.readouterr().err
    assert runwrap.main(["job", "--bogus", "--", "true"]) == 2
    assert "unknown option '--bogus'" in capsys.readouterr().err
    assert runwrap.main(["job", "--max-output", "lots", "--", "true"]) == 2
    assert "--max-output" in capsys.readouterr().err
    # A daemon URL that cannot work: the job still runs, unmonitored.
    assert runwrap.main(["job", "--url", "ftp://h", "--", "sh", "-c", "exit 4"]) == 4
    assert capsys.readouterr().err == ("cronwarden run: warning: bad daemon URL 'ftp://h': use http://HOST:PORT; "
                                       "the job runs unmonitored\n")


# --------------------------------------------------------------------------
# Pure parts.


def test_output_tail_keeps_a_bounded_ring_of_chunks() -> None:
    tail = runwrap.OutputTail(100)
    for i in range(1000):
        tail.add(b"%09d\n" % i)
        assert tail._size < 100 + 10  # never more than the limit plus one chunk
    value = tail.value()
    assert len(value) <= 100 and value.endswith(b"000000999\n")
    marker, kept = value.split(b"\n", 1)
    assert marker == b"[cronwarden: %d earlier bytes of output not kept]" % (10000 - len(kept))
    short = runwrap.OutputTail(100)
    short.add(b"abc")
    short.add(b"def")
    assert short.value() == b"abcdef"
    tiny = runwrap.OutputTail(4)
    tiny.add(b"0123456789")
    assert tiny.value() == b"6789"
    nothing = runwrap.OutputTail(0)
    nothing.add(b"x" * 10)
    assert nothing.value() == b""


def test_exit_status_as_a_shell_reports_it() -> None:
    assert runwrap.exit_status(0) == 0
    assert runwrap.exit_status(3) == 3
    assert runwrap.exit_status(-signal.SIGKILL) == 137
    assert runwrap.exit_status(-signal.SIGTERM) == 143


def test_split_argv_keeps_the_command_exactly() -> None:
    assert runwrap.split_argv(["job", "--", "sh", "-c", "x", "--", "a"]) == ("job", {}, ["sh", "-c", "x", "--", "a"])
    assert runwrap.split_argv(["job", "--url", "http://h:1", "--rid=r1", "--", "--odd"]) == (
        "job", {"url": "http://h:1", "rid": "r1"}, ["--odd"])
    assert runwrap.split_argv(["job", "ls", "-l"]) == ("job", {}, ["ls", "-l"])
    assert runwrap.split_argv(["--", "job", "--", "true"]) == ("job", {}, ["true"])
    for bad in ([], ["job"], ["job", "--"], ["job", "--url"], ["job", "-x", "true"]):
        with pytest.raises(ValueError):
            runwrap.split_argv(bad)


def test_start_errors_match_the_shell(tmp_path: Path) -> None:
    assert runwrap.start_error("nope", FileNotFoundError(2, "No such file or directory")) == (
        127, "nope: command not found")
    assert runwrap.start_error("/no/such", FileNotFoundError(2, "No such file or directory"))[0] == 127
    script = tmp_path / "s"
    script.write_text("#!/no/such/interpreter\n")
    assert runwrap.start_error(str(script), FileNotFoundError(2, "No such file or directory"))[0] == 126
    assert runwrap.start_error(str(script), PermissionError(13, "Permission denied")) == (
        126, f"{script}: Permission denied")


def test_the_daemon_address_comes_from_url_env_or_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CRONWARDEN_URL", raising=False)
    config = tmp_path / "cw.yaml"
    config.write_text("server:\n  listen: 0.0.0.0:9123\n  api_token_env: T\nmonitors: {}\n")
    assert runwrap.resolve_url(None, str(config), sys.stderr) == "http://127.0.0.1:9123"
    assert runwrap.resolve_url("http://h:1/", str(config), sys.stderr) == "http://h:1"
    monkeypatch.setenv("CRONWARDEN_URL", "http://env:2")
    assert runwrap.resolve_url(None, str(config), sys.stderr) == "http://env:2"
    monkeypatch.delenv("CRONWARDEN_URL")
    monkeypatch.setenv("CRONWARDEN_CONFIG", str(tmp_path / "absent.yaml"))
    assert runwrap.resolve_url(None, None, sys.stderr) == runwrap.DEFAULT_URL
    assert capsys.readouterr().err == ""
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [\n")
    assert runwrap.resolve_url(None, str(bad), sys.stderr) == runwrap.DEFAULT_URL
    assert "warning" in capsys.readouterr().err  # said explicitly: a config that does not load is reported


def test_register_adds_the_run_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="cronwarden")
    runwrap.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["run", "--url", "http://h:1", "job", "--rid", "r", "--", "sh", "-c", "x", "--", "y"])
    assert args.func is runwrap.main_args
    assert args.url == "http://h:1"
    assert runwrap.split_argv(args.argv) == ("job", {"rid": "r"}, ["sh", "-c", "x", "--", "y"])
