"""``type: command``: run a local program for each alert.

``command`` is an argv list run without a shell
(:func:`asyncio.create_subprocess_exec`), with the alert (or digest) JSON on
stdin and the daemon's environment plus ``CRONWARDEN_EVENT``,
``CRONWARDEN_MONITOR`` (empty for a digest), ``CRONWARDEN_SEVERITY`` and
``CRONWARDEN_DELIVERY_ID`` (stable across retries, for dropping repeats).

The program runs in its own session (process group); if it has not finished
after the channel's ``timeout`` seconds the whole group is killed with
SIGKILL and the attempt is a transient failure. Exit 0 means delivered. A
program that cannot be started (not found, not executable, bad interpreter)
is a permanent failure; any other exit status, or death by a signal, is
transient, with the last lines of its stderr in the message. Its stdout is
discarded and only the last 4 KB of stderr kept. Returns None (no HTTP
status).
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from .. import fastjson
from ..config import ChannelConfig
from . import DeliveryError, SendContext

STDERR_KEEP = 4096  # bytes of stderr kept
STDERR_LINES = 5  # lines of it shown in an error
DRAIN_AFTER_EXIT = 1.0  # seconds to wait for stderr EOF once the program has exited


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    try:
        stdin.write(data)
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the program did not read its input: its exit status decides
    finally:
        stdin.close()


async def _tail(stream: asyncio.StreamReader) -> bytes:
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-STDERR_KEEP:]
    return kept


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _last_lines(data: bytes) -> str:
    lines = data.decode("utf-8", errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in lines[-STDERR_LINES:] if line.strip())


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> None:
    argv = [str(arg) for arg in channel.command]
    if not argv:
        raise DeliveryError(f"channel {channel.name}: command is empty", permanent=True)
    env = {**os.environ,
           "CRONWARDEN_EVENT": str(payload.get("event", "")),
           "CRONWARDEN_MONITOR": str(payload.get("monitor") or ""),
           "CRONWARDEN_SEVERITY": str(payload.get("severity", "")),
           "CRONWARDEN_DELIVERY_ID": delivery_id}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
    except FileNotFoundError:
        raise DeliveryError(f"command {argv[0]!r} not found", permanent=True) from None
    except PermissionError:
        raise DeliveryError(f"command {argv[0]!r} is not executable", permanent=True) from None
    except OSError as exc:
        raise DeliveryError(f"command {argv[0]!r} cannot be started: {exc.strerror or exc}",
                            permanent=True) from None
    assert proc.stdin and proc.stderr
    feeder = asyncio.create_task(_feed(proc.stdin, fastjson.dumps(payload).encode() + b"\n"))
    reader = asyncio.create_task(_tail(proc.stderr))
    try:
        await asyncio.wait_for(proc.wait(), channel.timeout)
    except asyncio.TimeoutError:
        _kill_group(proc)
        await proc.wait()
        feeder.cancel()
        reader.cancel()
        await asyncio.gather(feeder, reader, return_exceptions=True)
        ctx.answer = f"killed after {channel.timeout}s"
        raise DeliveryError(f"command {argv[0]!r} did not finish within {channel.timeout}s; killed") from None
    except BaseException:  # cancelled: leave nothing running
        _kill_group(proc)
        feeder.cancel()
        reader.cancel()
        raise
    await asyncio.wait([feeder, reader], timeout=DRAIN_AFTER_EXIT)
    for task in (feeder, reader):
        task.cancel()
    results = await asyncio.gather(feeder, reader, return_exceptions=True)
    stderr = results[1] if isinstance(results[1], bytes) else b""
    detail = _last_lines(stderr)
    ctx.answer = f"exit {proc.returncode}{': ' + detail if detail else ''}"
    if proc.returncode == 0:
        return None
    if proc.returncode is not None and proc.returncode < 0:
        what = f"was killed by signal {-proc.returncode}"
    else:
        what = f"exited with status {proc.returncode}"
    raise DeliveryError(f"command {argv[0]!r} {what}{': ' + detail if detail else ''}")
