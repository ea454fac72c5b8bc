"""The configuration as one frozen, typed structure: ``Config`` and its parts.

Only the shapes and what can be asked of them (a monitor's time zone, the
windows covering a monitor, the secrets a channel names). Reading a file into
them is :mod:`cronwarden.config`'s job, and every key a file may use is
declared in :mod:`cronwarden.configkeys`. :mod:`cronwarden.config` re-exports
every name here; import them from there.
"""

from __future__ import annotations

import functools

import ipaddress
import os
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .rules import Rule


@functools.lru_cache(maxsize=None)
def zone(name: str) -> ZoneInfo:
    """A ZoneInfo kept for good: zoneinfo's own cache holds only the 8 most recent
    zones, and re-reading a zone file costs ~75 us (every cron deadline needs one)."""
    return ZoneInfo(name)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class ConfigError(Exception):
    """A file with problems; ``problems`` are ready-to-print ``PATH:LINE:COL: msg`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8470
    base_url: str = "http://localhost:8470"
    database: Path = Path("cronwarden.db")
    api_token_env: str | None = None
    max_body: int = 100 * 1024
    retention_runs: int = 1000
    retention_days: int = 90
    ping_key: str | None = None
    heartbeat_url: str | None = None
    heartbeat_every: int = 60
    rate_limit: int = 20
    rate_burst: int = 200

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def api_token(self) -> str | None:
        return os.environ.get(self.api_token_env) or None if self.api_token_env else None


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    name: str
    type: str
    url: str | None = None  # webhook, chat webhooks, or the service's base URL
    url_env: str | None = None  # the URL itself is a secret (Slack, Discord, Teams webhooks)
    secret_env: str | None = None  # webhook signing secret
    token_env: str | None = None  # telegram bot token, ntfy/gotify/pushover app token
    user_key_env: str | None = None  # pushover user key
    routing_key_env: str | None = None  # pagerduty integration key
    chat_id: str | None = None  # telegram
    topic: str | None = None  # ntfy
    command: tuple[str, ...] = ()  # command: argv; the alert JSON on stdin
    timeout: int = 15  # seconds per delivery attempt
    group_window: int = 5  # seconds in which a burst of alerts folds into one digest
    concurrency: int = 4  # deliveries in flight at once on this channel
    give_up_after: int = 86400  # stop retrying an alert this long after it was raised
    to: tuple[str, ...] = ()  # email
    sender: str | None = None  # email "from"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_tls: str = "none"
    smtp_username: str | None = None
    smtp_password_env: str | None = None
    smtp_ca_file: str | None = None

    def secret(self, attr: str) -> str | None:
        """The value of the environment variable named by `attr` (e.g. "token_env")."""
        name = getattr(self, attr)
        return os.environ.get(name) if name else None

    def target_url(self) -> str | None:
        """`url`, or the variable `url_env` names (a webhook URL that is itself a secret)."""
        return self.secret("url_env") or self.url


@dataclass(frozen=True, slots=True)
class Escalation:
    after: int  # seconds after the incident opened, while unacknowledged
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    name: str
    every: int | None = None
    cron: str | None = None
    timezone: str = "UTC"
    grace: int = 300
    max_runtime: int | None = None
    slow_after: int | None = None
    severity: Severity = Severity.WARNING
    channels: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    runbook: str | None = None
    key: str | None = None
    alert_after: int = 1
    recover_after: int = 1
    max_silence: int | None = None
    repeat: int = 3600
    depends_on: tuple[str, ...] = ()
    escalate: tuple[Escalation, ...] = ()
    tags: tuple[str, ...] = ()
    description: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    @property
    def schedule_text(self) -> str:
        return f"every {self.every}s" if self.every is not None else f"cron '{self.cron}' ({self.timezone})"


def frozen_builder(cls: type) -> Any:
    """A function taking the arguments of frozen slots dataclass `cls`'s __init__ and
    returning the same instance, ~5x faster. A frozen class's generated __init__ sets
    each field through object.__setattr__ (2 us for MonitorState's 14 fields, 40% of
    building a MonitorConfig). The builder makes the object with a plain slots
    dataclass of the same fields in the same order, which stores them directly, and
    then gives it `cls` as its class: CPython allows that between classes of the same
    layout, and the result is an instance of `cls` like any other (equal, hashable,
    frozen). Used where many are built at once: the loader's MonitorConfigs, stored
    states at start-up. (No field may have a default factory, and `cls` no
    __post_init__; tests compare the result with __init__'s.)"""
    specs: list[Any] = []
    params: list[str] = []
    namespace: dict[str, Any] = {"cls": cls}
    for f in fields(cls):
        assert f.init and f.default_factory is MISSING, f.name
        if f.default is MISSING:
            specs.append((f.name, f.type))
            params.append(f.name)
        else:
            specs.append((f.name, f.type, field(default=f.default)))
            params.append(f"{f.name}=default_{f.name}")
            namespace[f"default_{f.name}"] = f.default
    assert not hasattr(cls, "__post_init__")
    namespace["twin"] = twin = make_dataclass(f"_{cls.__name__}Builder", specs, slots=True)
    assert twin.__slots__ == cls.__slots__, cls  # type: ignore[attr-defined]
    names = ", ".join(spec[0] for spec in specs)
    exec(f"def build({', '.join(params)}):\n    self = twin({names})\n    self.__class__ = cls\n"
         "    return self\n", namespace)
    build = namespace["build"]
    build.twin = twin
    return build


def frozen_replacer(cls: type, build: Any, changed: tuple[str, ...]) -> Any:
    """``dataclasses.replace(obj, **dict(zip(changed, values)))`` for an instance of frozen
    slots dataclass `cls` as a function ``(obj, *values)``, built like `build`
    (frozen_builder(cls)) builds, in one frame: the fields not in `changed` are read
    straight off `obj` (no attrgetter, no list, no keyword arguments)."""
    names = [f.name for f in fields(cls)]
    if not set(changed) <= set(names):
        raise ValueError(f"not fields of {cls.__name__}: {sorted(set(changed) - set(names))}")
    if len(set(changed)) != len(changed) or {"obj", "cls", "twin", "self"} & set(names):
        raise ValueError(f"cannot build a replacer of {cls.__name__} for {changed}")
    values = ", ".join(name if name in changed else f"obj.{name}" for name in names)
    namespace: dict[str, Any] = {"cls": cls, "twin": build.twin}
    exec(f"def replace(obj, {', '.join(changed)}):\n    self = twin({values})\n    self.__class__ = cls\n"
         "    return self\n", namespace)
    return namespace["replace"]


# MonitorConfig(...), for the loader, which builds 100,000 of them at 100,000 monitors.
new_monitor_config = frozen_builder(MonitorConfig)


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """Alerts of the matching monitors are held while a window is open."""

    cron: str  # when a window opens
    duration: int  # seconds it stays open
    timezone: str = "UTC"
    monitors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def applies_to(self, monitor: "MonitorConfig") -> bool:
        return monitor.name in self.monitors or any(tag in self.tags for tag in monitor.tags)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    server: ServerConfig
    channels: dict[str, ChannelConfig] = field(default_factory=dict)
    monitors: dict[str, MonitorConfig] = field(default_factory=dict)
    maintenance: tuple[MaintenanceWindow, ...] = ()

    def windows_by_monitor(self) -> dict[str, list[MaintenanceWindow]]:
        out: dict[str, list[MaintenanceWindow]] = {}
        for window in self.maintenance:
            for monitor in self.monitors.values():
                if window.applies_to(monitor):
                    out.setdefault(monitor.name, []).append(window)
        return out

    def monitor_by_key(self) -> dict[str, str]:
        return {m.key.lower(): m.name for m in self.monitors.values() if m.key}

    def dependents(self) -> dict[str, list[str]]:
        """monitor -> the monitors whose `depends_on` names it."""
        out: dict[str, list[str]] = {}
        for monitor in self.monitors.values():
            for other in monitor.depends_on:
                out.setdefault(other, []).append(monitor.name)
        return out

    def depends_depth(self) -> dict[str, int]:
        """monitor with `depends_on` -> 1 + the depth of the deepest monitor it depends on
        (a monitor without is 0, and a cycle is cut where it closes): Ticking monitors due
        at the same instant in this order lets a dependency's outage silence its dependents."""
        depth: dict[str, int] = {}
        for top in self.monitors.values():
            if not top.depends_on or top.name in depth:
                continue
            # Depth-first with a stack of (monitor, its depends_on still to look at), so a
            # chain of any length is fine; a monitor on the stack is a cycle closing: depth 0.
            on_path = {top.name}
            stack = [(top.name, list(top.depends_on), 0)]
            while stack:
                name, todo, deepest = stack[-1]
                if not todo:
                    stack.pop()
                    on_path.discard(name)
                    depth[name] = deepest + 1
                    if stack:
                        parent, rest, best = stack[-1]
                        stack[-1] = (parent, rest, max(best, deepest + 1))
                    continue
                other = todo.pop()
                monitor = self.monitors.get(other)
                if other in depth:
                    found = depth[other]
                elif monitor is None or not monitor.depends_on or other in on_path:
                    found = 0
                else:
                    on_path.add(other)
                    stack.append((other, list(monitor.depends_on), 0))
                    continue
                stack[-1] = (name, todo, max(deepest, found))
        return depth
