"""Fixtures that start real parts: the daemon as a subprocess on a loopback
port, and a real HTTP receiver for webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import textwrap
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


def ts(iso: str) -> float:
    """An alert's ISO 8601 UTC time (`occurred_at`, ...) as epoch seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class Received:
    at: float  # wall-clock epoch seconds at receipt
    body: dict[str, Any]
    headers: dict[str, str]
    url_channel: str = ""  # the receiver URL's ?ch= (several channels can share one receiver)


@dataclass
class Receiver:
    """A webhook endpoint that records what it receives; `status` sets its answer."""

    url: str = ""
    got: list[Received] = field(default_factory=list)
    status: int = 200
    event: asyncio.Event = field(default_factory=asyncio.Event)
    delay: float = 0.0  # seconds between receiving a request (recorded at once) and answering it

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.got.append(Received(time.time(), body, dict(request.headers), request.query.get("ch", "")))
        self.event.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text="ok")

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> Received:
        deadline = time.monotonic() + timeout
        while True:
            for item in self.got:
                if predicate(item.body):
                    return item
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching webhook within {timeout}s; got {[g.body for g in self.got]}")
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def events(self, monitor: str | None = None) -> list[str]:
        return [g.body["event"] + ("+reminder" if g.body.get("reminder") else "")
                for g in self.got if monitor is None or g.body["monitor"] == monitor]


@contextlib.asynccontextmanager
async def local_app(app: web.Application, port: int = 0) -> AsyncIterator[int]:
    """Serve `app` on 127.0.0.1 (a free port unless given) for the block; yields the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()


class DaemonProcess:
    """`cronwarden serve` in a subprocess; its log is collected line by line."""

    def __init__(self, config_path: Path, env: dict[str, str]) -> None:
        self.config_path = config_path
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._new_line = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None

    async def start(self, timeout: float = 20.0) -> "DaemonProcess":
        self.lines = []
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cronwarden", "serve", "--config", str(self.config_path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=self.env)
        self._reader = asyncio.create_task(self._read())
        line = await self.wait_for_log(LISTENING.pattern, timeout)
        match = LISTENING.search(line)
        assert match
        self.url = match.group(1)
        if self.session is None:
            self.session = aiohttp.ClientSession()
        return self

    async def _read(self) -> None:
        assert self.proc and self.proc.stderr
        while True:
            raw = await self.proc.stderr.readline()
            if not raw:
                self._new_line.set()
                return
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._new_line.set()

    async def wait_for_log(self, pattern: str, timeout: float = 10.0, start: int = 0) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for line in self.lines[seen:]:
                if regex.search(line):
                    return line
            seen = len(self.lines)
            if self.proc and self.proc.returncode is not None and self._reader and self._reader.done():
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before logging {pattern!r}:\n"
                                     + "\n".join(self.lines))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no log line matching {pattern!r} within {timeout}s:\n"
                                     + "\n".join(self.lines))
            self._new_line.clear()
            try:
                await asyncio.wait_for(self._new_line.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, str]:
        assert self.session
        async with self.session.request(method, self.url + path, **kw) as resp:
            return resp.status, await resp.text()

    async def ping(self, path: str, **kw: Any) -> tuple[int, str]:
        return await self.request(kw.pop("method", "GET"), "/ping/" + path, **kw)

    async def api(self, path: str) -> Any:
        status, text = await self.request("GET", "/api/v1/" + path)
        assert status == 200, text
        return json.loads(text)

    def signal(self, sig: int) -> None:
        assert self.proc
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 15.0) -> int:
        assert self.proc
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader:
            await asyncio.wait_for(self._reader, timeout)
        return code

    async def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        await self.wait()

    async def close(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await self.wait()
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.session:
            await self.session.close()
            self.session = None


DaemonFactory = Callable[..., Awaitable[DaemonProcess]]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[DaemonFactory]:
    """`await daemon(yaml_text)` starts the real daemon on a free loopback port."""
    started: list[DaemonProcess] = []

    async def start(config: str, env: dict[str, str] | None = None) -> DaemonProcess:
        path = tmp_path / "cronwarden.yaml"
        path.write_text(textwrap.dedent(config).lstrip())
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("JOURNAL_STREAM", None)
        proc = DaemonProcess(path, full_env)
        started.append(proc)
        return await proc.start()

    yield start
    for proc in started:
        await proc.close()
