"""The YAML configuration: loaded into one frozen, typed structure.

Loading walks pyyaml's node tree (not the plain dicts) so that every problem
carries the line and column it came from. Problems are collected, never
raised one at a time: ``cronwarden check`` prints all of them at once as
``PATH:LINE:COL: message``, and a file with any problem is never applied.

Every key is declared once in the ``*_KEYS`` tables below; the tables drive
validation, the "did you mean" suggestions and the README key check.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from . import schedule
from .rules import Rule, RuleError, parse_rule
from .units import parse_duration, parse_size

SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]*")
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# libyaml's parser when pyyaml was built with it: ten times faster on big files,
# with the same node marks.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        return ZoneInfo(self.timezone)

    @property
    def schedule_text(self) -> str:
        return f"every {self.every}s" if self.every is not None else f"cron '{self.cron}' ({self.timezone})"


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


# --------------------------------------------------------------------------
# Key tables. Each entry: key -> (converter, description). A converter takes
# (node, loader context) and returns the value or raises ValueError.

Converter = Callable[[yaml.Node, "_Ctx"], Any]


class _Ctx:
    """Carries the loader and the problem list through the walk."""

    def __init__(self, path: str, loader: yaml.SafeLoader) -> None:  # or CSafeLoader
        self.path = path
        self.loader = loader
        self.problems: list[tuple[int, int, str]] = []

    def problem(self, node: yaml.Node | None, message: str, col_offset: int = 0) -> None:
        line, col = (node.start_mark.line + 1, node.start_mark.column + 1) if node else (1, 1)
        self.problems.append((line, col + col_offset, message))

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise ValueError(f"expected a single value, found a {_kind(node)}")
        try:
            return self.loader.construct_object(node)
        except yaml.YAMLError as exc:  # an unknown tag, a bad timestamp, ...
            problem = getattr(exc, "problem", None) or str(exc)
            raise ValueError(" ".join(str(problem).split())) from None


def _kind(node: yaml.Node) -> str:
    return {yaml.MappingNode: "mapping", yaml.SequenceNode: "list"}.get(type(node), "value")


def _str(node: yaml.Node, ctx: _Ctx) -> str:
    value = ctx.scalar(node)
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a string, found {value!r}")
    return value


def _opt_str(node: yaml.Node, ctx: _Ctx) -> str | None:
    value = ctx.scalar(node)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a string, found {value!r}")
    return value


def _env_name(node: yaml.Node, ctx: _Ctx) -> str | None:
    value = _opt_str(node, ctx)
    if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(
            f"{value!r} is not an environment variable name (secrets are read from the variable it names)"
        )
    return value


def _int(minimum: int, maximum: int | None = None) -> Converter:
    def convert(node: yaml.Node, ctx: _Ctx) -> int:
        value = ctx.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, found {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise ValueError(f"expected a whole number {bound}, found {value}")
        return value

    return convert


def _duration(node: yaml.Node, ctx: _Ctx) -> int:
    return parse_duration(ctx.scalar(node))


def _positive_duration(node: yaml.Node, ctx: _Ctx) -> int:
    value = _duration(node, ctx)
    if value <= 0:
        raise ValueError("must be longer than 0s")
    return value


def _opt_duration(node: yaml.Node, ctx: _Ctx) -> int | None:
    return None if ctx.scalar(node) is None else _positive_duration(node, ctx)


def _size(node: yaml.Node, ctx: _Ctx) -> int:
    return parse_size(ctx.scalar(node))


def _str_list(node: yaml.Node, ctx: _Ctx) -> tuple[str, ...]:
    if isinstance(node, yaml.ScalarNode):
        return (_str(node, ctx),)
    if not isinstance(node, yaml.SequenceNode):
        raise ValueError(f"expected a list of strings, found a {_kind(node)}")
    return tuple(_str(item, ctx) for item in node.value)


def _timezone(node: yaml.Node, ctx: _Ctx) -> str:
    name = _str(node, ctx)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, _zone_names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown timezone '{name}'{hint}") from None
    return name


def _zone_names() -> list[str]:
    import zoneinfo

    return sorted(zoneinfo.available_timezones())


def _cron(node: yaml.Node, ctx: _Ctx) -> str:
    expr = _str(node, ctx)
    reason = schedule.validate_cron(expr)
    if reason:
        raise ValueError(reason)
    return expr


def _severity(node: yaml.Node, ctx: _Ctx) -> Severity:
    value = _str(node, ctx)
    try:
        return Severity(value)
    except ValueError:
        raise ValueError(f"severity must be info, warning or critical, found '{value}'") from None


def _listen(node: yaml.Node, ctx: _Ctx) -> tuple[str, int]:
    value = _str(node, ctx)
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be host:port, found '{value}'")
    return host.strip("[]") or "127.0.0.1", int(port)


def _key(node: yaml.Node, ctx: _Ctx) -> str:
    value = _str(node, ctx)
    if not UUID.fullmatch(value):
        raise ValueError(f"key must be a UUID (as Healthchecks uses), found '{value}'")
    return value.lower()


def _escalate(node: yaml.Node, ctx: _Ctx) -> tuple[Escalation, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise ValueError(f"expected a list like [{{after: 15m, channels: [pager]}}], found a {_kind(node)}")
    steps = []
    for item in node.value:
        values = _read_section(item, ctx, "an escalation step", ESCALATION_KEYS)
        if "after" not in values or "channels" not in values:
            ctx.problem(item, "an escalation step needs 'after' and 'channels'")
            continue
        steps.append(Escalation(values["after"][0], values["channels"][0]))
    return tuple(sorted(steps, key=lambda e: e.after))


def _rules(node: yaml.Node, ctx: _Ctx) -> tuple[Rule, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise ValueError(f"expected a list of rules, found a {_kind(node)}")
    rules = []
    for item in node.value:
        try:
            rules.append(parse_rule(_str(item, ctx)))
        except RuleError as exc:
            # Point at the offending character inside the quoted rule.
            quoted = 1 if getattr(item, "style", None) in ("'", '"') else 0
            ctx.problem(item, str(exc), exc.col + quoted)
        except ValueError as exc:
            ctx.problem(item, str(exc))
    return tuple(rules)


SERVER_KEYS: dict[str, tuple[Converter, str]] = {
    "listen": (_listen, "host:port to serve HTTP on"),
    "base_url": (_str, "public URL of this daemon, used for links inside alerts"),
    "database": (_str, "SQLite file, created if missing (relative to the config file)"),
    "api_token_env": (_env_name, "environment variable holding the bearer token for the API"),
    "max_body": (_size, "largest ping body kept; longer bodies keep their tail"),
    "retention": (None, "how much run history to keep: {runs: N, days: N}"),  # type: ignore[dict-item]
    "ping_key": (_str, "server-wide key enabling /ping/<ping_key>/NAME URLs"),
    "heartbeat_url": (_str, "URL pinged every heartbeat_every while the daemon is healthy"),
    "heartbeat_every": (_positive_duration, "how often heartbeat_url is pinged (default 1m)"),
    "rate_limit": (_int(0), "pings per second allowed per non-loopback client (0 = no limit)"),
    "rate_burst": (_int(1), "pings a non-loopback client may send at once before rate_limit applies"),
}
RETENTION_KEYS: dict[str, tuple[Converter, str]] = {
    "runs": (_int(1), "runs kept per monitor"),
    "days": (_int(1), "days of runs kept"),
}
# Keys a monitor may set; `defaults` may set the inheritable subset.
MONITOR_KEYS: dict[str, tuple[Converter, str]] = {
    "every": (_positive_duration, "heartbeat period (instead of cron)"),
    "cron": (_cron, "five-field cron expression, evaluated in timezone"),
    "timezone": (_timezone, "IANA time zone for cron"),
    "grace": (_duration, "how late a ping may be before 'missed'"),
    "max_runtime": (_opt_duration, "a run open longer than this is 'hung'"),
    "slow_after": (_opt_duration, "a run longer than this is 'slow'"),
    "severity": (_severity, "info, warning or critical"),
    "channels": (_str_list, "channels alerted"),
    "rules": (_rules, "metadata rules that raise 'rule' on success pings"),
    "runbook": (_opt_str, "runbook URL included in alerts"),
    "key": (_key, "Healthchecks-style UUID accepted in ping URLs"),
    "alert_after": (_int(1), "consecutive failures before 'failed'"),
    "recover_after": (_int(1), "consecutive successes before 'recovered'"),
    "max_silence": (_opt_duration, "a running job silent this long is 'hung'"),
    "repeat": (_duration, "re-notify interval while down (0 = never)"),
    "depends_on": (_str_list, "monitors whose outage silences this one"),
    "escalate": (_escalate, "[{after: 15m, channels: [pager]}]: more channels while unacknowledged"),
    "tags": (_str_list, "labels for grouping"),
    "description": (_opt_str, "free text shown in alerts"),
}
ESCALATION_KEYS: dict[str, tuple[Converter, str]] = {
    "after": (_positive_duration, "time since the incident opened"),
    "channels": (_str_list, "channels added at that point"),
}
ROUTE_KEYS: dict[str, tuple[Converter, str]] = {
    severity.value: (_str_list, f"channels for {severity.value} monitors without their own") for severity in Severity
}
DEFAULT_KEYS = ("timezone", "grace", "alert_after", "recover_after", "repeat", "channels", "severity",
                "max_runtime", "max_silence", "slow_after", "escalate")
CHANNEL_KEYS: dict[str, tuple[Converter, str]] = {
    "type": (_str, "the channel type"),
    "url": (_str, "where alerts go (webhook URL, or the service's base URL)"),
    "url_env": (_env_name, "variable holding the URL when the URL is itself a secret"),
    "secret_env": (_env_name, "webhook: variable holding the signing secret"),
    "token_env": (_env_name, "variable holding the service's token"),
    "user_key_env": (_env_name, "pushover: variable holding the user key"),
    "routing_key_env": (_env_name, "pagerduty: variable holding the integration key"),
    "chat_id": (_str, "telegram: chat to post in"),
    "topic": (_str, "ntfy: topic to publish to"),
    "command": (_str_list, "command: program and arguments; the alert JSON arrives on stdin"),
    "timeout": (_positive_duration, "how long one delivery attempt may take"),
    "group_window": (_duration, "alerts within this window after the first fold into one digest"),
    "concurrency": (_int(1, 64), "deliveries in flight at once"),
    "give_up_after": (_positive_duration, "stop retrying an alert this long after it was raised"),
    "to": (_str_list, "email: recipients"),
    "from": (_str, "email: sender address"),
    "smtp": (None, "email: {host, port, tls, username, password_env}"),  # type: ignore[dict-item]
}
SMTP_KEYS: dict[str, tuple[Converter, str]] = {
    "host": (_str, "SMTP server"),
    "port": (_int(1, 65535), "SMTP port"),
    "tls": (_str, "none, starttls or implicit"),
    "username": (_opt_str, "SMTP login"),
    "password_env": (_env_name, "variable holding the SMTP password"),
    "ca_file": (_str, "CA bundle to verify the server's certificate (default: the system's)"),
}
# type -> keys it requires ("a|b": one of them). Defaults differing by type follow.
CHANNEL_TYPES: dict[str, tuple[str, ...]] = {
    "log": (),
    "webhook": ("url",),
    "email": ("to", "from"),
    "slack": ("url|url_env",),
    "discord": ("url|url_env",),
    "teams": ("url|url_env",),
    "telegram": ("token_env", "chat_id"),
    "ntfy": ("topic",),
    "pushover": ("token_env", "user_key_env"),
    "gotify": ("url", "token_env"),
    "pagerduty": ("routing_key_env",),
    "command": ("command",),
}
# PagerDuty deduplicates by incident itself, and a command gets one alert per run.
NO_DIGEST_TYPES = ("pagerduty", "command")
MAINTENANCE_KEYS: dict[str, tuple[Converter, str]] = {
    "cron": (_cron, "when the window opens (five-field cron)"),
    "duration": (_positive_duration, "how long it stays open"),
    "timezone": (_timezone, "zone the cron is read in (default UTC)"),
    "monitors": (_str_list, "monitors it covers, by name"),
    "tags": (_str_list, "monitors it covers, by tag"),
}
TOP_KEYS = ("server", "defaults", "channels", "routes", "monitors", "maintenance")


def _mapping(node: yaml.Node, ctx: _Ctx, what: str) -> list[tuple[yaml.Node, yaml.Node]]:
    """Key/value node pairs of a mapping, reporting duplicates and non-string keys."""
    if isinstance(node, yaml.ScalarNode):
        try:
            if ctx.scalar(node) is None:
                return []
        except ValueError:
            pass
    if not isinstance(node, yaml.MappingNode):
        ctx.problem(node, f"{what} must be a mapping, found a {_kind(node)}")
        return []
    seen: dict[str, yaml.Node] = {}
    pairs = []
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            ctx.problem(key_node, f"keys of {what} must be strings")
            continue
        if key in seen:
            first = seen[key].start_mark.line + 1
            ctx.problem(key_node, f"duplicate key '{key}' in {what} (first defined on line {first})")
            continue
        seen[key] = key_node
        pairs.append((key_node, value_node))
    return pairs


def _read_section(
    node: yaml.Node, ctx: _Ctx, what: str, table: dict[str, tuple[Converter, str]]
) -> dict[str, tuple[Any, yaml.Node]]:
    """Convert a mapping with `table`; unknown keys get a suggestion."""
    out: dict[str, tuple[Any, yaml.Node]] = {}
    for key_node, value_node in _mapping(node, ctx, what):
        key = key_node.value
        if key not in table:
            close = difflib.get_close_matches(key, list(table), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(table)})"
            ctx.problem(key_node, f"unknown key '{key}' in {what}{hint}")
            continue
        converter = table[key][0]
        if converter is None:  # nested mapping handled by the caller
            out[key] = (value_node, value_node)
            continue
        try:
            out[key] = (converter(value_node, ctx), value_node)
        except ValueError as exc:
            ctx.problem(value_node, f"{key}: {exc}")
    return out


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate `path`; raises :class:`ConfigError` listing every problem."""
    path = Path(path)
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{label}:1:1: cannot read the file: {exc}"]) from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> Config:
    label = str(path)
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(str(exc.problem or exc).split())
        raise ConfigError([f"{label}:{line}:{col}: YAML syntax error: {what}"]) from None
    except yaml.reader.ReaderError as exc:
        before = text[:exc.position]
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        raise ConfigError([f"{label}:{line}:{col}: the file contains a character YAML does not allow "
                           f"({exc.character!r}); save it as plain UTF-8 text"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{label}:1:1: YAML error: {' '.join(str(exc).split())}"]) from None
    finally:
        loader.dispose()
    ctx = _Ctx(label, loader)
    try:
        config = _build(root, ctx, path)
    except RecursionError:
        ctx.problems.append((1, 1, "the file is nested too deeply"))
        config = None
    if ctx.problems or config is None:
        ctx.problems.sort()
        raise ConfigError([f"{label}:{line}:{col}: {_one_line(msg)}" for line, col, msg in ctx.problems])
    return config


def _one_line(message: str) -> str:
    """Problems print one per line: control characters from the file are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _build(root: yaml.Node | None, ctx: _Ctx, path: Path) -> Config | None:
    if root is None:
        ctx.problems.append((1, 1, "the file is empty: it needs at least a 'monitors' section"))
        return None
    sections = {}
    for key_node, value_node in _mapping(root, ctx, "the top level"):
        if key_node.value not in TOP_KEYS:
            close = difflib.get_close_matches(key_node.value, TOP_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(TOP_KEYS)})"
            ctx.problem(key_node, f"unknown key '{key_node.value}' at the top level{hint}")
        else:
            sections[key_node.value] = value_node
    if not isinstance(root, yaml.MappingNode):
        return None

    server = _build_server(sections.get("server"), ctx, path)
    defaults = _read_section(sections["defaults"], ctx, "defaults",
                             {k: MONITOR_KEYS[k] for k in DEFAULT_KEYS}) if "defaults" in sections else {}
    deferred_defaults = defaults.get("channels")

    channels: dict[str, ChannelConfig] = {}
    for name_node, body in _mapping(sections.get("channels", yaml.ScalarNode("tag:yaml.org,2002:null", "")),
                                    ctx, "channels"):
        channel = _build_channel(name_node, body, ctx)
        if channel:
            channels[channel.name] = channel

    if deferred_defaults:
        _check_channels(deferred_defaults[0], deferred_defaults[1], channels, ctx, "defaults")
    routes = _read_section(sections["routes"], ctx, "routes", ROUTE_KEYS) if "routes" in sections else {}
    for route_channels, node in routes.values():
        _check_channels(route_channels, node, channels, ctx, "routes")
    monitors: dict[str, MonitorConfig] = {}
    keys_seen: dict[str, str] = {}
    monitors_node = sections.get("monitors")
    if monitors_node is None:
        ctx.problem(root, "no 'monitors' section: nothing to watch")
    else:
        for name_node, body in _mapping(monitors_node, ctx, "monitors"):
            monitor = _build_monitor(name_node, body, defaults, routes, channels, ctx)
            if monitor is None:
                continue
            if monitor.key and monitor.key in keys_seen:
                ctx.problem(name_node, f"monitor '{monitor.name}' reuses the key of '{keys_seen[monitor.key]}'")
            elif monitor.key:
                keys_seen[monitor.key] = monitor.name
            monitors[monitor.name] = monitor
        _check_depends(monitors_node, monitors, ctx)
    maintenance = _build_maintenance(sections.get("maintenance"), monitors, ctx)
    return Config(path=path, server=server, channels=channels, monitors=monitors, maintenance=maintenance)


def _build_maintenance(node: yaml.Node | None, monitors: dict[str, MonitorConfig],
                       ctx: _Ctx) -> tuple[MaintenanceWindow, ...]:
    if node is None:
        return ()
    if not isinstance(node, yaml.SequenceNode):
        ctx.problem(node, "maintenance must be a list of windows like "
                          "[{monitors: [backup], cron: '0 3 * * 0', duration: 2h}]")
        return ()
    windows = []
    for item in node.value:
        values = _read_section(item, ctx, "a maintenance window", MAINTENANCE_KEYS)
        missing = [k for k in ("cron", "duration") if k not in values]
        if missing or not ("monitors" in values or "tags" in values):
            need = ", ".join(f"'{k}'" for k in missing) or "'monitors' or 'tags'"
            ctx.problem(item, f"a maintenance window needs {need}")
            continue
        for name in values.get("monitors", ((),))[0]:
            if name not in monitors:
                ctx.problem(values["monitors"][1], f"maintenance window names unknown monitor '{name}'")
        windows.append(MaintenanceWindow(
            cron=values["cron"][0], duration=values["duration"][0],
            timezone=values.get("timezone", ("UTC",))[0],
            monitors=values.get("monitors", ((),))[0], tags=values.get("tags", ((),))[0]))
    return tuple(windows)


def _build_server(node: yaml.Node | None, ctx: _Ctx, path: Path) -> ServerConfig:
    if node is None:
        return ServerConfig(database=path.parent / "cronwarden.db")
    values = _read_section(node, ctx, "server", SERVER_KEYS)
    kwargs: dict[str, Any] = {}
    if "listen" in values:
        kwargs["host"], kwargs["port"] = values["listen"][0]
    for key in ("base_url", "api_token_env", "max_body", "ping_key", "heartbeat_url", "heartbeat_every",
                "rate_limit", "rate_burst"):
        if key in values:
            kwargs[key] = values[key][0]
    database = Path(values["database"][0]) if "database" in values else Path("cronwarden.db")
    kwargs["database"] = database if database.is_absolute() else path.parent / database
    if "retention" in values:
        retention = _read_section(values["retention"][0], ctx, "server.retention", RETENTION_KEYS)
        if "runs" in retention:
            kwargs["retention_runs"] = retention["runs"][0]
        if "days" in retention:
            kwargs["retention_days"] = retention["days"][0]
    return ServerConfig(**kwargs)


def _build_channel(name_node: yaml.Node, body: yaml.Node, ctx: _Ctx) -> ChannelConfig | None:
    name = name_node.value
    if not SLUG.fullmatch(name):
        ctx.problem(name_node, f"channel name '{name}' must match [a-z0-9][a-z0-9_.-]*")
        return None
    values = _read_section(body, ctx, f"channel '{name}'", CHANNEL_KEYS)
    kind = values.get("type", (None,))[0]
    if kind is None:
        if isinstance(body, yaml.MappingNode):
            ctx.problem(name_node, f"channel '{name}' needs a type: {', '.join(CHANNEL_TYPES)}")
        return None
    if kind not in CHANNEL_TYPES:
        close = difflib.get_close_matches(kind, list(CHANNEL_TYPES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(CHANNEL_TYPES)})"
        ctx.problem(values["type"][1], f"unknown channel type '{kind}'{hint}")
        return None
    for required in CHANNEL_TYPES[kind]:
        if not any(option in values for option in required.split("|")):
            wanted = " or ".join(f"'{o}'" for o in required.split("|"))
            ctx.problem(name_node, f"channel '{name}' of type {kind} needs {wanted}")
    kwargs: dict[str, Any] = {"name": name, "type": kind}
    if kind in NO_DIGEST_TYPES:
        kwargs["group_window"] = 0
    for key in CHANNEL_KEYS:
        if key in values and key not in ("type", "smtp"):
            kwargs["sender" if key == "from" else key] = values[key][0]
    if "smtp" in values:
        smtp = _read_section(values["smtp"][0], ctx, f"channel '{name}' smtp", SMTP_KEYS)
        for key in SMTP_KEYS:
            if key in smtp:
                kwargs[f"smtp_{key}"] = smtp[key][0]
        if "tls" in smtp and smtp["tls"][0] not in ("none", "starttls", "implicit"):
            ctx.problem(smtp["tls"][1], "tls must be none, starttls or implicit")
    return ChannelConfig(**kwargs)


def _build_monitor(
    name_node: yaml.Node,
    body: yaml.Node,
    defaults: dict[str, tuple[Any, yaml.Node]],
    routes: dict[str, tuple[Any, yaml.Node]],
    channels: dict[str, ChannelConfig],
    ctx: _Ctx,
) -> MonitorConfig | None:
    name = name_node.value
    if not SLUG.fullmatch(name):
        ctx.problem(name_node, f"monitor name '{name}' must be a slug matching [a-z0-9][a-z0-9_.-]*")
        return None
    values = _read_section(body, ctx, f"monitor '{name}'", MONITOR_KEYS)
    present = {k.value for k, _ in body.value} if isinstance(body, yaml.MappingNode) else set()
    if ("every" in present) == ("cron" in present):
        which = "both" if "every" in present else "neither"
        ctx.problem(name_node, f"monitor '{name}' has {which} of 'every' and 'cron': it needs exactly one")
    merged = {**defaults, **values}
    # Channels: the monitor's own, else the route for its severity, else the defaults'.
    severity = merged.get("severity", (Severity.WARNING,))[0]
    if "channels" not in values and severity.value in routes:
        merged["channels"] = routes[severity.value]
    kwargs = {key: value for key, (value, _node) in merged.items()}
    if "channels" in values:
        _check_channels(values["channels"][0], values["channels"][1], channels, ctx, f"monitor '{name}'")
    if "escalate" in values:
        for step in values["escalate"][0]:
            _check_channels(step.channels, values["escalate"][1], channels, ctx, f"monitor '{name}' escalate")
    return MonitorConfig(name=name, **kwargs)


def _check_channels(names: tuple[str, ...], node: yaml.Node, channels: dict[str, ChannelConfig], ctx: _Ctx,
                    where: str) -> None:
    for channel in names:
        if channel not in channels:
            close = difflib.get_close_matches(channel, list(channels), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            ctx.problem(node, f"{where} uses unknown channel '{channel}'{hint}")


def _check_depends(node: yaml.Node, monitors: dict[str, MonitorConfig], ctx: _Ctx) -> None:
    for monitor in monitors.values():
        for other in monitor.depends_on:
            if other not in monitors:
                ctx.problem(node, f"monitor '{monitor.name}' depends on unknown monitor '{other}'")
            elif other == monitor.name:
                ctx.problem(node, f"monitor '{monitor.name}' depends on itself")


def all_documented_keys() -> dict[str, list[str]]:
    """Every configuration key by section; the README test checks each is documented."""
    return {
        "server": list(SERVER_KEYS) + [f"retention.{k}" for k in RETENTION_KEYS],
        "defaults": list(DEFAULT_KEYS),
        "channels": list(CHANNEL_KEYS) + [f"smtp.{k}" for k in SMTP_KEYS],
        "monitors": list(MONITOR_KEYS) + [f"escalate.{k}" for k in ESCALATION_KEYS],
        "routes": list(ROUTE_KEYS),
        "maintenance": list(MAINTENANCE_KEYS),
    }
