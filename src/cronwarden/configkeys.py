"""Every configuration key, declared once, and the converters that read its value.

Each ``*_KEYS`` table maps a key to ``(converter, description)``; the tables
drive validation, the "did you mean" suggestions and the README key check
(:func:`cronwarden.config.all_documented_keys`). A converter takes a value and
the loader context and returns the converted value or raises ``ValueError``;
:func:`_read_section` turns that into a problem at the value's position. The
section builders in :mod:`cronwarden.config` assemble the converted values
into the dataclasses of :mod:`cronwarden.configtypes`.

There are two contexts, and every converter and builder runs unchanged in
both, through the few methods they share (``scalar``, ``items``, ``mapping``,
``kind``, ``problem`` ...):

* :class:`_DataCtx`, the fast path: the values are the plain Python data
  libyaml's parser produced (dicts, lists, scalars). It has no positions, so
  its first problem raises :class:`Fallback`, and the caller loads the file
  again with
* :class:`_Ctx`, the node walk: the values are pyyaml nodes, and every problem
  is recorded with the line and column of its node.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Callable
from zoneinfo import ZoneInfoNotFoundError

import yaml

from . import schedule
from .configtypes import Escalation, Severity, zone
from .rules import Rule, RuleError, parse_rule
from .units import parse_duration, parse_size

SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]*")
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# --------------------------------------------------------------------------
# Key tables. Each entry: key -> (converter, description). A converter takes
# (value, loader context) and returns the converted value or raises ValueError;
# the value is a YAML node (_Ctx) or plain data (_DataCtx), and converters only
# look at it through the context.

Converter = Callable[[Any, "_Ctx | _DataCtx"], Any]


class Fallback(Exception):
    """The fast path met a problem (or something it does not handle): walk the nodes instead."""


class _Ctx:
    """The node walk: carries the loader and the problem list; values are yaml nodes."""

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

    @staticmethod
    def kind(node: yaml.Node) -> str:
        return _kind(node)

    @staticmethod
    def items(node: yaml.Node) -> list[yaml.Node] | None:
        """The items of a list, None for anything else."""
        return node.value if isinstance(node, yaml.SequenceNode) else None

    @staticmethod
    def is_mapping(node: yaml.Node) -> bool:
        return isinstance(node, yaml.MappingNode)

    @staticmethod
    def keys(node: yaml.Node) -> set[str]:
        """The keys a mapping spells out (also those whose values are wrong)."""
        return {k.value for k, _ in node.value} if isinstance(node, yaml.MappingNode) else set()

    @staticmethod
    def quote_width(node: yaml.Node) -> int:
        """1 for a quoted scalar: a column inside its text is one further right."""
        return 1 if getattr(node, "style", None) in ("'", '"') else 0

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """(key, key node, value node) of a mapping, reporting duplicates and non-string keys."""
        if isinstance(node, yaml.ScalarNode):
            try:
                if self.scalar(node) is None:
                    return []
            except ValueError:
                pass
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{what} must be a mapping, found a {_kind(node)}")
            return []
        seen: dict[str, yaml.Node] = {}
        triples = []
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.problem(key_node, f"keys of {what} must be strings")
                continue
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.problem(key_node, f"duplicate key '{key}' in {what} (first defined on line {first})")
                continue
            seen[key] = key_node
            triples.append((key, key_node, value_node))
        return triples

    def convert(self, converter: Converter, node: yaml.Node) -> Any:
        return converter(node, self)


class _DataCtx:
    """The fast path: values are plain data, with mapping keys as written (see
    config._load_data); the first problem raises Fallback.

    Converted scalar values are cached by (converter, type, value): a value met
    100,000 times is checked once, and equal results are one shared object."""

    def __init__(self) -> None:
        self.cache: dict[tuple[Any, ...], Any] = {}

    def problem(self, value: Any, message: str, col_offset: int = 0) -> None:
        raise Fallback(message)

    @staticmethod
    def scalar(value: Any) -> Any:
        if type(value) is dict or type(value) is list:
            raise ValueError(f"expected a single value, found a {_DataCtx.kind(value)}")
        return value

    @staticmethod
    def kind(value: Any) -> str:
        return "mapping" if type(value) is dict else "list" if type(value) is list else "value"

    @staticmethod
    def items(value: Any) -> list[Any] | None:
        return value if type(value) is list else None

    @staticmethod
    def is_mapping(value: Any) -> bool:
        return type(value) is dict

    @staticmethod
    def keys(value: Any) -> Any:
        return value if type(value) is dict else ()

    @staticmethod
    def quote_width(value: Any) -> int:
        return 0

    def mapping(self, value: Any, what: str) -> Any:
        if type(value) is dict:
            return zip(value, value, value.values())  # (key, key, value)
        if value is None:
            return []
        raise Fallback(f"{what} must be a mapping")

    def convert(self, converter: Converter, value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            return converter(value, self)
        if kind is list:
            if not all(type(item) is str for item in value):
                return converter(value, self)
            key: tuple[Any, ...] = (converter, kind, *value)
        else:
            key = (converter, kind, value)
        try:
            return self.cache[key]
        except KeyError:
            result = self.cache[key] = converter(value, self)
            return result


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
    items = ctx.items(node)
    if items is None:
        if ctx.kind(node) == "value":
            return (_str(node, ctx),)
        raise ValueError(f"expected a list of strings, found a {ctx.kind(node)}")
    return tuple(_str(item, ctx) for item in items)


def _timezone(node: yaml.Node, ctx: _Ctx) -> str:
    name = _str(node, ctx)
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
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
    items = ctx.items(node)
    if items is None:
        raise ValueError(f"expected a list like [{{after: 15m, channels: [pager]}}], found a {ctx.kind(node)}")
    steps = []
    for item in items:
        values = _read_section(item, ctx, "an escalation step", ESCALATION_KEYS)
        if "after" not in values or "channels" not in values:
            ctx.problem(item, "an escalation step needs 'after' and 'channels'")
            continue
        steps.append(Escalation(values["after"][0], values["channels"][0]))
    return tuple(sorted(steps, key=lambda e: e.after))


def _rules(node: yaml.Node, ctx: _Ctx) -> tuple[Rule, ...]:
    items = ctx.items(node)
    if items is None:
        raise ValueError(f"expected a list of rules, found a {ctx.kind(node)}")
    rules = []
    for item in items:
        try:
            rules.append(parse_rule(_str(item, ctx)))
        except RuleError as exc:
            # Point at the offending character inside the quoted rule.
            ctx.problem(item, str(exc), exc.col + ctx.quote_width(item))
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


def _read_section(
    node: yaml.Node, ctx: _Ctx, what: str, table: dict[str, tuple[Converter, str]]
) -> dict[str, tuple[Any, yaml.Node]]:
    """Convert a mapping with `table` into key -> (value, its node); unknown keys get a suggestion."""
    out: dict[str, tuple[Any, yaml.Node]] = {}
    for key, key_node, value_node in ctx.mapping(node, what):
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
            out[key] = (ctx.convert(converter, value_node), value_node)
        except ValueError as exc:
            ctx.problem(value_node, f"{key}: {exc}")
    return out
