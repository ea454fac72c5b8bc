"""systemd's notify protocol (sd_notify(3), sd_watchdog_enabled(3)) without libsystemd.

A service of ``Type=notify`` tells systemd how it is doing by sending small
datagrams of ``KEY=VALUE`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET``: ``READY=1`` once it serves, ``RELOADING=1`` and then
``READY=1`` again around a reload, ``STOPPING=1`` when it shuts down,
``STATUS=...`` for ``systemctl status``, and ``WATCHDOG=1`` at least every
``$WATCHDOG_USEC`` microseconds when ``WatchdogSec=`` is set (systemd kills
and, with ``Restart=on-failure``, restarts a service that stops pinging).

Everything here is a no-op when ``$NOTIFY_SOCKET`` is unset (not under
systemd, or ``Type=simple``), and nothing here ever raises: a failed send is
logged once and the daemon carries on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Callable, Mapping, MutableMapping

log = logging.getLogger("cronwarden.sdnotify")

ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

# ------------------------------------------------------------- pure helpers


def socket_address(value: str | None) -> str | bytes | None:
    """The sendto() address for a ``$NOTIFY_SOCKET`` value: a filesystem path as
    is, ``@name`` as the abstract-namespace name ``\\0name``; None when unset or
    of a kind this module does not speak (``vsock:``)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return value
    return None


def format_message(*fields: tuple[str, object]) -> bytes:
    """``KEY=VALUE`` lines joined by newlines. Values are made single-line
    (a newline would start a new assignment); keys must be plain names."""
    lines = []
    for key, value in fields:
        if not key or not key.replace("_", "").isalnum() or not key.isupper():
            raise ValueError(f"bad sd_notify key {key!r}")
        text = str(value).replace("\r", " ").replace("\n", " ")
        lines.append(f"{key}={text}")
    return "\n".join(lines).encode("utf-8", errors="replace")


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd reads MONOTONIC_USEC= in."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def ready_message(status: str | None = None) -> bytes:
    fields: list[tuple[str, object]] = [("READY", 1)]
    if status:
        fields.append(("STATUS", status))
    return format_message(*fields)


def reloading_message(now_usec: int | None = None) -> bytes:
    """RELOADING=1 with MONOTONIC_USEC=, which systemd >= 253 requires for
    Type=notify-reload (older systemd and Type=notify ignore the extra field)."""
    return format_message(("RELOADING", 1), ("MONOTONIC_USEC", monotonic_usec() if now_usec is None else now_usec))


def watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    """The watchdog period in microseconds as sd_watchdog_enabled(3) decides it:
    ``$WATCHDOG_USEC`` a positive integer, and ``$WATCHDOG_PID``, when set, this
    process's pid (so a child that inherited the variables does not ping)."""
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = environ.get("WATCHDOG_PID")
    if raw_pid:
        try:
            if int(raw_pid) != pid:
                return None
        except ValueError:
            return None
    return usec


# ------------------------------------------------------------- the notifier


class Notifier:
    """Sends sd_notify messages; every method is safe to call when not under systemd."""

    def __init__(self, address: str | bytes | None, watchdog_usec: int | None = None,
                 label: str = "") -> None:
        self.address = address
        self.label = label or (repr(address) if address is not None else "")
        self._watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._failed = False
        self.sent = 0  # datagrams sent successfully

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = False,
                     pid: int | None = None) -> "Notifier":
        """Built from ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``.
        With ``unset``, the variables are removed from `environ` afterwards so
        programs started later (``command`` channels) do not inherit them."""
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET")
        address = socket_address(raw)
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%s: unsupported address; not notifying systemd", raw)
        usec = watchdog_usec(env, os.getpid() if pid is None else pid) if address is not None else None
        if unset:
            for name in ENV_VARS:
                env.pop(name, None)
        return cls(address, usec, raw or "")

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC, as systemd
        recommends; None when the watchdog is off for this process."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def send(self, message: bytes) -> bool:
        """One non-blocking datagram; False (logged the first time) on failure."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # close-on-exec by default
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd at %s: %s (further failures are not logged)",
                            self.label, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send(ready_message(status))

    def reloading(self) -> bool:
        return self.send(reloading_message())

    def stopping(self) -> bool:
        return self.send(format_message(("STOPPING", 1)))

    def status(self, text: str) -> bool:
        return self.send(format_message(("STATUS", text)))

    def watchdog(self) -> bool:
        return self.send(format_message(("WATCHDOG", 1)))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def watchdog_loop(notifier: Notifier, healthy: Callable[[], bool]) -> None:
    """Ping WATCHDOG=1 every :meth:`Notifier.watchdog_interval` while `healthy()`
    is true; while it is false (or raises) pings are withheld, so systemd
    restarts a daemon whose timer is wedged. Returns at once when the watchdog
    is off; otherwise runs until cancelled."""
    interval = notifier.watchdog_interval()
    if interval is None or not notifier.enabled:
        return
    was_healthy = True
    while True:
        try:
            ok = bool(healthy())
        except Exception:
            log.exception("health check failed")
            ok = False
        if ok:
            notifier.watchdog()
            if not was_healthy:
                log.warning("healthy again: watchdog pings resumed")
                notifier.status("healthy again: watchdog pings resumed")
        elif was_healthy:
            log.error("unhealthy: withholding watchdog pings; systemd will restart the daemon "
                      "if this lasts past WatchdogSec")
            notifier.status("unhealthy: watchdog pings withheld")
        was_healthy = ok
        await asyncio.sleep(interval)
