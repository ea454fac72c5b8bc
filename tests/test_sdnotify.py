"""sd_notify without libsystemd: real AF_UNIX datagram sockets stand in for systemd's,
and systemd-analyze checks the unit file (skipped where it is not installed)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import DaemonFactory
from cronwarden import sdnotify
from cronwarden.sdnotify import Notifier, watchdog_loop

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "cronwarden.service"


class FakeSystemd:
    """A bound AF_UNIX SOCK_DGRAM socket like the one systemd puts in $NOTIFY_SOCKET.
    SO_PASSCRED is on, as on systemd's, so each datagram carries the sender's pid."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def recv(self) -> tuple[bytes, int | None]:
        """One datagram and the pid the kernel says sent it."""
        data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        return data, pid

    def drain(self) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(self.recv()[0])
            except BlockingIOError:
                return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fs_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    path = tmp_path / "notify"
    fake = FakeSystemd(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    for name in ("WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    yield fake
    fake.close()


@pytest.fixture
def abstract_systemd(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    name = f"cronwarden-test-{os.getpid()}-{uuid.uuid4().hex}"
    fake = FakeSystemd(b"\0" + name.encode())
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    for var in ("WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)
    yield fake
    fake.close()


def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))


# ------------------------------------------------------------- pure helpers


def test_socket_address_forms() -> None:
    assert sdnotify.socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert sdnotify.socket_address("@/org/freedesktop/systemd1/notify/123") == \
        b"\0/org/freedesktop/systemd1/notify/123"
    assert sdnotify.socket_address("") is None
    assert sdnotify.socket_address(None) is None
    assert sdnotify.socket_address("vsock:2:1234") is None
    assert sdnotify.socket_address("relative/path") is None


def test_messages_are_key_value_lines_and_values_stay_on_one_line() -> None:
    assert sdnotify.ready_message() == b"READY=1"
    assert sdnotify.ready_message("serving 3 monitors") == b"READY=1\nSTATUS=serving 3 monitors"
    assert sdnotify.reloading_message(123456789) == b"RELOADING=1\nMONOTONIC_USEC=123456789"
    assert sdnotify.format_message(("STATUS", "two\nlines\r")) == b"STATUS=two lines "
    assert sdnotify.format_message(("STATUS", "héllo")) == "STATUS=héllo".encode()
    for bad in ("", "status", "A=B", "A\nB"):
        with pytest.raises(ValueError):
            sdnotify.format_message((bad, 1))


def test_monotonic_usec_is_clock_monotonic_in_microseconds() -> None:
    import time

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    value = sdnotify.monotonic_usec()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= value <= after


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 30_000_000),  # no WATCHDOG_PID: meant for us
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "SELF"}, 30_000_000),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "OTHER"}, None),  # inherited from a parent
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "nope"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "30s"}, None),
    ({"WATCHDOG_USEC": ""}, None),
])
def test_watchdog_usec_follows_sd_watchdog_enabled(env: dict[str, str], expected: int | None) -> None:
    pid = os.getpid()
    env = {k: str(pid) if v == "SELF" else str(pid + 1) if v == "OTHER" else v for k, v in env.items()}
    assert sdnotify.watchdog_usec(env, pid) == expected


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "n"), "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environ(env).watchdog_interval() == 15.0
    env["WATCHDOG_PID"] = str(os.getpid() + 1)
    assert Notifier.from_environ(env).watchdog_interval() is None
    env["WATCHDOG_PID"] = "7"
    assert Notifier.from_environ(env, pid=7).watchdog_interval() == 15.0
    del env["NOTIFY_SOCKET"]  # nowhere to send pings to
    assert Notifier.from_environ(env, pid=7).watchdog_interval() is None


# ------------------------------------------------------------- real sockets


def test_every_message_reaches_a_filesystem_socket(fs_systemd: FakeSystemd) -> None:
    n = Notifier.from_environ()
    assert n.enabled
    assert n.ready("serving 3 monitors")
    data, pid = fs_systemd.recv()
    assert data == b"READY=1\nSTATUS=serving 3 monitors"
    assert pid == os.getpid()  # what NotifyAccess=main checks

    before = sdnotify.monotonic_usec()
    assert n.reloading()
    after = sdnotify.monotonic_usec()
    data, _ = fs_systemd.recv()
    assert re.fullmatch(rb"RELOADING=1\nMONOTONIC_USEC=\d+", data), data
    assert before <= int(_fields(data)["MONOTONIC_USEC"]) <= after

    assert n.ready()
    assert fs_systemd.recv()[0] == b"READY=1"
    assert n.status("reload refused: 2 problems")
    assert fs_systemd.recv()[0] == b"STATUS=reload refused: 2 problems"
    assert n.watchdog()
    assert fs_systemd.recv()[0] == b"WATCHDOG=1"
    assert n.stopping()
    assert fs_systemd.recv()[0] == b"STOPPING=1"
    assert fs_systemd.drain() == []
    assert n.sent == 6
    n.close()


def test_every_message_reaches_an_abstract_socket(abstract_systemd: FakeSystemd) -> None:
    n = Notifier.from_environ()
    assert n.address == b"\0" + os.environ["NOTIFY_SOCKET"][1:].encode()
    n.ready("up")
    n.reloading()
    n.ready("reloaded")
    n.watchdog()
    n.stopping()
    got = abstract_systemd.drain()
    assert got[0] == b"READY=1\nSTATUS=up"
    assert _fields(got[1])["RELOADING"] == "1" and int(_fields(got[1])["MONOTONIC_USEC"]) > 0
    assert got[2:] == [b"READY=1\nSTATUS=reloaded", b"WATCHDOG=1", b"STOPPING=1"]
    n.close()


def test_without_notify_socket_everything_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    for name in sdnotify.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    n = Notifier.from_environ()
    assert not n.enabled
    assert n.watchdog_interval() is None
    assert [n.ready("x"), n.reloading(), n.status("y"), n.watchdog(), n.stopping()] == [False] * 5
    asyncio.run(asyncio.wait_for(watchdog_loop(n, lambda: True), 1))  # returns at once
    assert not caplog.records


def test_a_send_failure_is_logged_once_and_never_raises(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="cronwarden.sdnotify"):
        for _ in range(5):
            assert not n.ready("x")
            assert not n.watchdog()
    assert len(caplog.records) == 1
    assert "cannot notify systemd" in caplog.records[0].getMessage()
    n.close()


def test_unset_keeps_the_variables_from_child_processes(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "n"), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "42",
           "PATH": "/bin"}
    n = Notifier.from_environ(env, unset=True, pid=42)
    assert n.enabled and n.watchdog_interval() == 0.5
    assert env == {"PATH": "/bin"}


def test_a_full_receive_queue_does_not_block(fs_systemd: FakeSystemd) -> None:
    fs_systemd.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    n = Notifier.from_environ()
    results = [n.status("x" * 200) for _ in range(2000)]  # nobody reads: the queue fills up
    assert results[0] and not all(results)  # EAGAIN instead of hanging
    n.close()


# ------------------------------------------------------------- watchdog loop


async def _pings_during(fake: FakeSystemd, seconds: float) -> list[bytes]:
    fake.drain()
    await asyncio.sleep(seconds)
    return fake.drain()


async def test_watchdog_loop_pings_only_while_healthy(fs_systemd: FakeSystemd,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier.from_environ()
    assert n.watchdog_interval() == pytest.approx(0.1)
    state = {"healthy": True}
    task = asyncio.create_task(watchdog_loop(n, lambda: state["healthy"]))
    try:
        got = await _pings_during(fs_systemd, 0.55)
        assert 3 <= got.count(b"WATCHDOG=1") <= 7, got

        state["healthy"] = False  # e.g. the timer task died
        await asyncio.sleep(0.15)  # let a ping already in flight land
        got = await _pings_during(fs_systemd, 0.5)
        assert b"WATCHDOG=1" not in got, got

        state["healthy"] = True
        got = await _pings_during(fs_systemd, 0.35)
        assert got.count(b"WATCHDOG=1") >= 2, got
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        n.close()


async def test_watchdog_loop_says_why_it_withholds_pings(fs_systemd: FakeSystemd,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    n = Notifier.from_environ()

    def broken() -> bool:
        raise RuntimeError("health check itself is broken")

    task = asyncio.create_task(watchdog_loop(n, broken))
    try:
        got = await _pings_during(fs_systemd, 0.35)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        n.close()
    assert b"WATCHDOG=1" not in got
    assert got == [b"STATUS=unhealthy: watchdog pings withheld"]  # said once, not every interval


async def test_watchdog_loop_ends_at_once_when_the_watchdog_is_meant_for_another_pid(
        fs_systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    n = Notifier.from_environ()
    await asyncio.wait_for(watchdog_loop(n, lambda: True), 1)
    assert fs_systemd.drain() == []
    n.close()


# ------------------------------------------------------------- the unit file

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def _unit_settings() -> list[tuple[str, str]]:
    settings = []
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.append((key, value))
    return settings


def test_unit_declares_notify_watchdog_reload_and_a_state_directory() -> None:
    settings = dict(_unit_settings())
    assert settings["Type"] == "notify"
    assert settings["NotifyAccess"] == "main"
    assert settings["WatchdogSec"] == "30"
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert settings["DynamicUser"] == "yes"
    assert settings["StateDirectory"] == "cronwarden"
    assert settings["ConfigurationDirectory"] == "cronwarden"
    assert settings["Restart"] == "on-failure"  # a watchdog kill is a failure: restarted
    assert settings["ExecStart"].split()[1:] == ["serve", "--config", "/etc/cronwarden/cronwarden.yaml"]


def _copy_unit(tmp_path: Path, replace: dict[str, str] | None = None) -> Path:
    """The unit with ExecStart pointing at a binary that exists here."""
    exe = shutil.which("cronwarden") or str(Path(sys.executable).with_name("cronwarden"))
    if not os.access(exe, os.X_OK):
        exe = "/bin/true"
    text = UNIT.read_text().replace("/opt/cronwarden/bin/cronwarden", exe)
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "cronwarden.service"
    path.write_text(text)
    return path


def _verify(unit: Path) -> tuple[int, list[str]]:
    assert SYSTEMD_ANALYZE
    proc = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    return proc.returncode, [line for line in lines if unit.name in line or str(unit.parent) in line]


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    code, problems = _verify(_copy_unit(tmp_path))
    assert code == 0 and problems == [], problems


@needs_systemd_analyze
def test_systemd_analyze_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """The check above is not vacuous: verify reports a misspelt value and key."""
    unit = _copy_unit(tmp_path, {"Type=notify\n": "Type=notfy\nWatchdogSecs=30\n"})
    _, problems = _verify(unit)
    assert any("notfy" in p for p in problems) and any("WatchdogSecs" in p for p in problems), problems


@needs_systemd_analyze
def test_systemd_analyze_security_rates_the_sandbox_ok(tmp_path: Path) -> None:
    unit = _copy_unit(tmp_path)
    proc = subprocess.run([str(SYSTEMD_ANALYZE), "security", "--offline=true", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout + proc.stderr)
    if match is None:
        pytest.skip(f"systemd-analyze security --offline not supported here: {proc.stderr.strip()[:200]}")
    assert float(match.group(1)) <= 2.0, proc.stdout


# ------------------------------------------------------------- the daemon under a fake systemd

def _daemon_speaks_sd_notify() -> bool:
    from cronwarden import daemon as daemon_module

    return hasattr(daemon_module, "sdnotify")


async def _next(fake: FakeSystemd, timeout: float = 10.0) -> tuple[bytes, int | None]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return fake.recv()
        except BlockingIOError:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no datagram within {timeout}s") from None
            await asyncio.sleep(0.01)


async def _next_not_watchdog(fake: FakeSystemd, timeout: float = 10.0) -> bytes:
    while True:
        data, _ = await _next(fake, timeout)
        if data != b"WATCHDOG=1":
            return data


@pytest.mark.skipif(not _daemon_speaks_sd_notify(), reason="daemon.py does not use cronwarden.sdnotify yet")
async def test_the_daemon_reports_ready_reloading_watchdog_and_stopping(daemon: DaemonFactory,
                                                                         tmp_path: Path) -> None:
    sock_path = tmp_path / "notify"
    fake = FakeSystemd(str(sock_path))
    config = """
        server:
          listen: 127.0.0.1:0
          database: ./cw.db
        monitors:
          job: {every: 1h}
        """
    try:
        d = await daemon(config, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
        data, pid = await _next(fake)
        assert pid == d.proc.pid  # the main process itself: NotifyAccess=main accepts it
        fields = _fields(data)
        assert fields["READY"] == "1"
        assert fields["STATUS"] == f"serving 1 monitors on {d.url}"

        watchdog = [(await _next(fake, 2))[0] for _ in range(3)]
        assert watchdog == [b"WATCHDOG=1"] * 3  # every 0.2 s: half of WATCHDOG_USEC

        d.config_path.write_text(d.config_path.read_text().replace("job: {every: 1h}",
                                                                   "job: {every: 1h}\n  other: {every: 1h}"))
        d.signal(signal.SIGHUP)
        reloading = _fields(await _next_not_watchdog(fake))
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        ready = _fields(await _next_not_watchdog(fake))
        assert ready == {"READY": "1", "STATUS": f"serving 2 monitors on {d.url}; configuration reloaded"}

        d.config_path.write_text("monitors:\n  job: {every: soon}\n")
        d.signal(signal.SIGHUP)
        assert _fields(await _next_not_watchdog(fake))["RELOADING"] == "1"
        ready = _fields(await _next_not_watchdog(fake))
        assert ready["READY"] == "1" and "reload refused" in ready["STATUS"]

        d.signal(signal.SIGTERM)
        assert await _next_not_watchdog(fake) == b"STOPPING=1"
        assert await d.wait() == 0
    finally:
        fake.close()
