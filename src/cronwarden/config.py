"""The YAML configuration: loaded into one frozen, typed structure.

A file is loaded twice over only when it has a problem. The fast path builds
plain Python data straight from libyaml's parser events and validates that;
it has no positions, so at its first problem (or anything it does not handle:
explicit tags, duplicate keys, several documents ...) the file is loaded again
by walking pyyaml's node tree, so that every problem carries the line and
column it came from. Both run the same builders and converters, through the
two contexts of :mod:`cronwarden.configkeys`, so a valid file gives the same
Config either way. Problems are collected, never raised one at a time:
``cronwarden check`` prints all of them at once as ``PATH:LINE:COL:
message``, and a file with any problem is never applied.

Every key is declared once in the ``*_KEYS`` tables of
:mod:`cronwarden.configkeys`, next to the converters that read the values; the
tables drive validation, the "did you mean" suggestions and the README key
check. The frozen dataclasses a file becomes are in
:mod:`cronwarden.configtypes`. This module reads the file and builds them, one
section at a time, and re-exports the names of both, so callers import
everything configuration from here.
"""

from __future__ import annotations

import difflib
import gc
import os
from pathlib import Path
from typing import Any

import yaml

from .configkeys import (
    CHANNEL_KEYS,
    CHANNEL_TYPES,
    DEFAULT_KEYS,
    ESCALATION_KEYS,
    MAINTENANCE_KEYS,
    MONITOR_KEYS,
    NO_DIGEST_TYPES,
    RETENTION_KEYS,
    ROUTE_KEYS,
    SERVER_KEYS,
    SLUG,
    SMTP_KEYS,
    TOP_KEYS,
    UUID,
    Converter,
    Fallback,
    _Ctx,
    _DataCtx,
    _read_section,
)
from .configtypes import (
    ChannelConfig,
    Config,
    ConfigError,
    Escalation,
    MaintenanceWindow,
    MonitorConfig,
    ServerConfig,
    Severity,
    new_monitor_config,
)

__all__ = [
    # the structure, from .configtypes
    "ChannelConfig", "Config", "ConfigError", "Escalation", "MaintenanceWindow", "MonitorConfig",
    "ServerConfig", "Severity",
    # the key tables, from .configkeys
    "CHANNEL_KEYS", "CHANNEL_TYPES", "DEFAULT_KEYS", "ESCALATION_KEYS", "MAINTENANCE_KEYS", "MONITOR_KEYS",
    "NO_DIGEST_TYPES", "RETENTION_KEYS", "ROUTE_KEYS", "SERVER_KEYS", "SLUG", "SMTP_KEYS", "TOP_KEYS", "UUID",
    "Converter",
    # loading, defined here
    "all_documented_keys", "load_config", "parse_config",
]


# libyaml's parser when pyyaml was built with it: ten times faster on big files,
# with the same node marks.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    # What loading creates is acyclic: the cyclic collector has nothing to find in
    # it, but would scan it again and again while it grows (2/3 of the time at
    # 100,000 monitors).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            config = _build(_load_data(text), _DataCtx(), path)
        except (Fallback, yaml.YAMLError, RecursionError):
            config = None
        return config if config is not None else _parse_nodes(text, path)
    finally:
        if gc_was_enabled:
            gc.enable()


_STR = "tag:yaml.org,2002:str"


def _load_data(text: str) -> Any:
    """The document as plain data, from libyaml's events (pyyaml's own parser without libyaml).

    Scalar values are resolved and constructed by the loader exactly as in the
    node walk (cached: a config repeats the same few values), and mapping keys
    are kept as written, as the node walk reads them (an unquoted ``on:`` is
    the key 'on'). Raises Fallback for what the node walk reports or handles
    differently: explicit tags, anchors on keys, non-scalar and duplicate keys,
    undefined or recursive aliases, no or several documents.
    """
    loader = _Loader(text)
    get_event, resolve, construct = loader.get_event, loader.resolve, loader.construct_object
    plain: dict[str, Any] = {}  # plain scalar -> its value (quoted ones are strings as they are)
    anchors: dict[str, Any] = {}
    Scalar, MappingStart, MappingEnd = yaml.ScalarEvent, yaml.MappingStartEvent, yaml.MappingEndEvent
    SequenceStart, SequenceEnd = yaml.SequenceStartEvent, yaml.SequenceEndEvent

    def resolved(raw: str) -> Any:
        tag = resolve(yaml.ScalarNode, raw, (True, False))
        try:
            value = raw if tag == _STR else construct(yaml.ScalarNode(tag, raw))
        except Exception:  # the node walk reports it where it is
            raise Fallback("scalar") from None
        plain[raw] = value
        return value

    # Scalars without tag or anchor (nearly all of them) are read inline: this
    # loop runs for every one of the ~6 events per monitor.
    def value_of(event: yaml.Event) -> Any:
        kind = type(event)
        if kind is yaml.AliasEvent:
            if event.anchor not in anchors:
                raise Fallback("alias")
            return anchors[event.anchor]
        if event.tag is not None:
            raise Fallback("explicit tag")
        if kind is Scalar:
            if not event.implicit[0]:
                value = event.value
            else:
                value = plain[event.value] if event.value in plain else resolved(event.value)
        elif kind is MappingStart:
            value = {}
            while True:
                key_event = get_event()
                if type(key_event) is not Scalar or key_event.anchor is not None:
                    if type(key_event) is MappingEnd:
                        break
                    raise Fallback("key")
                key = key_event.value
                if key in value:
                    raise Fallback("duplicate key")
                item = get_event()
                if type(item) is Scalar and item.anchor is None and item.tag is None:
                    if not item.implicit[0]:
                        value[key] = item.value
                    else:
                        raw = item.value
                        value[key] = plain[raw] if raw in plain else resolved(raw)
                else:
                    value[key] = value_of(item)
        elif kind is SequenceStart:
            value = []
            while True:
                item = get_event()
                if type(item) is SequenceEnd:
                    break
                value.append(value_of(item))
        else:
            raise Fallback(f"unexpected {kind.__name__}")
        if event.anchor is not None:
            anchors[event.anchor] = value
        return value

    try:
        get_event()  # the stream's start
        if type(get_event()) is not yaml.DocumentStartEvent:
            raise Fallback("no document")
        root = value_of(get_event())
        get_event()  # the document's end
        if type(get_event()) is not yaml.StreamEndEvent:
            raise Fallback("several documents")
        return root
    finally:
        loader.dispose()
        # value_of refers to itself, a cycle that keeps these tables alive: empty them, as
        # start-up runs without the cyclic GC and then freezes what is left.
        plain.clear()
        anchors.clear()


def _parse_nodes(text: str, path: Path) -> Config:
    """The node walk: the same building, with every problem at its line and column."""
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
        ctx.problem(None, "the file is empty: it needs at least a 'monitors' section")
        return None
    sections = {}
    for key, key_node, value_node in ctx.mapping(root, "the top level"):
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(key, TOP_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(TOP_KEYS)})"
            ctx.problem(key_node, f"unknown key '{key}' at the top level{hint}")
        else:
            sections[key] = value_node
    if not ctx.is_mapping(root):
        return None

    # (A section that is there but empty is not one that is missing: `server:` reads as
    # an empty mapping, `maintenance:` is not a list.)
    server = _build_server(sections["server"], ctx, path) if "server" in sections else \
        ServerConfig(database=path.parent / "cronwarden.db")
    defaults = _read_section(sections["defaults"], ctx, "defaults",
                             {k: MONITOR_KEYS[k] for k in DEFAULT_KEYS}) if "defaults" in sections else {}
    deferred_defaults = defaults.get("channels")

    channels: dict[str, ChannelConfig] = {}
    for name, name_node, body in ctx.mapping(sections["channels"], "channels") if "channels" in sections else ():
        channel = _build_channel(name, name_node, body, ctx)
        if channel:
            channels[channel.name] = channel

    if deferred_defaults:
        _check_channels(deferred_defaults[0], deferred_defaults[1], channels, ctx, "defaults")
    if "escalate" in defaults:
        for step in defaults["escalate"][0]:
            _check_channels(step.channels, defaults["escalate"][1], channels, ctx, "defaults escalate")
    routes = _read_section(sections["routes"], ctx, "routes", ROUTE_KEYS) if "routes" in sections else {}
    for route_channels, node in routes.values():
        _check_channels(route_channels, node, channels, ctx, "routes")
    monitors: dict[str, MonitorConfig] = {}
    keys_seen: dict[str, str] = {}
    if "monitors" not in sections:
        ctx.problem(root, "no 'monitors' section: nothing to watch")
    else:
        monitors_node = sections["monitors"]
        same_body: dict[tuple[Any, ...], dict[str, Any]] | None = {} if isinstance(ctx, _DataCtx) else None
        for name, name_node, body in ctx.mapping(monitors_node, "monitors"):
            monitor = _build_monitor(name, name_node, body, defaults, routes, channels, ctx, same_body)
            if monitor is None:
                continue
            if monitor.key and monitor.key in keys_seen:
                ctx.problem(name_node, f"monitor '{monitor.name}' reuses the key of '{keys_seen[monitor.key]}'")
            elif monitor.key:
                keys_seen[monitor.key] = monitor.name
            monitors[monitor.name] = monitor
        _check_depends(monitors_node, monitors, ctx)
    maintenance = _build_maintenance(sections["maintenance"], monitors, ctx) if "maintenance" in sections else ()
    return Config(path=path, server=server, channels=channels, monitors=monitors, maintenance=maintenance)


def _build_maintenance(node: yaml.Node, monitors: dict[str, MonitorConfig],
                       ctx: _Ctx) -> tuple[MaintenanceWindow, ...]:
    items = ctx.items(node)
    if items is None:
        ctx.problem(node, "maintenance must be a list of windows like "
                          "[{monitors: [backup], cron: '0 3 * * 0', duration: 2h}]")
        return ()
    windows = []
    for item in items:
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


def _build_server(node: yaml.Node, ctx: _Ctx, path: Path) -> ServerConfig:
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


def _build_channel(name: str, name_node: yaml.Node, body: yaml.Node, ctx: _Ctx) -> ChannelConfig | None:
    if not SLUG.fullmatch(name):
        ctx.problem(name_node, f"channel name '{name}' must match [a-z0-9][a-z0-9_.-]*")
        return None
    values = _read_section(body, ctx, f"channel '{name}'", CHANNEL_KEYS)
    kind = values.get("type", (None,))[0]
    if kind is None:
        if ctx.is_mapping(body):
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


# Bodies kept by the fast path at most: a file whose bodies are all different (each
# with its own description, say) holds this many keys and settings, not one per monitor.
SAME_BODY_LIMIT = 10_000


def _build_monitor(
    name: str,
    name_node: yaml.Node,
    body: yaml.Node,
    defaults: dict[str, tuple[Any, yaml.Node]],
    routes: dict[str, tuple[Any, yaml.Node]],
    channels: dict[str, ChannelConfig],
    ctx: _Ctx,
    same_body: dict[tuple[Any, ...], dict[str, Any]] | None = None,
) -> MonitorConfig | None:
    """`same_body`, on the fast path: the settings read from each body of plain values so
    far. Monitors written alike (most of a big file: `{every: 1h}`, a few cron lines)
    get the same settings, so such a body is read once; a problem is reported where it
    is by the node walk, which passes no `same_body`."""
    if not SLUG.fullmatch(name):
        ctx.problem(name_node, f"monitor name '{name}' must be a slug matching [a-z0-9][a-z0-9_.-]*")
        return None
    shape = None
    if same_body is not None and type(body) is dict and "key" not in body:  # (a key is never repeated)
        # (key, type, value): 1, 1.0 and true are equal and hash alike, but are not the same setting
        shape = tuple([(key, type(value), value) for key, value in body.items()])
        try:
            known = same_body.get(shape)
        except TypeError:  # a list or mapping in the body: read it on its own
            shape = known = None
        if known is not None:
            return new_monitor_config(name=name, **known)
    values = _read_section(body, ctx, f"monitor '{name}'", MONITOR_KEYS)
    present = ctx.keys(body)
    if ("every" in present) == ("cron" in present):
        which = "both" if "every" in present else "neither"
        ctx.problem(name_node, f"monitor '{name}' has {which} of 'every' and 'cron': it needs exactly one")
    merged = {**defaults, **values}
    # Channels: the monitor's own, else the route for its severity, else the defaults'.
    if routes and "channels" not in values:
        severity = merged.get("severity", (Severity.WARNING,))[0]
        if severity.value in routes:
            merged["channels"] = routes[severity.value]
    kwargs = {key: value for key, (value, _node) in merged.items()}
    if "channels" in values:
        _check_channels(values["channels"][0], values["channels"][1], channels, ctx, f"monitor '{name}'")
    if "escalate" in values:
        for step in values["escalate"][0]:
            _check_channels(step.channels, values["escalate"][1], channels, ctx, f"monitor '{name}' escalate")
    monitor = new_monitor_config(name=name, **kwargs)
    if shape is not None and len(same_body) < SAME_BODY_LIMIT:  # type: ignore[arg-type]
        same_body[shape] = kwargs  # type: ignore[index]  # (shape is set only with same_body)
    return monitor


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
