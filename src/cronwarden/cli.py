"""Command line: ``cronwarden serve | check | status | test-alert | ack | note | resolve | pause |
resume | incidents | postmortem | run | import-crontab | backup`` (``python -m cronwarden`` is the same)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys

from . import __version__
from .config import Config, ConfigError, load_config

DEFAULT_CONFIG = os.environ.get("CRONWARDEN_CONFIG", "/etc/cronwarden/cronwarden.yaml")


def setup_logging(level: str = "INFO") -> None:
    """One line per event on stderr; no timestamps under journald, which adds its own."""
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=fmt, stream=sys.stderr,
                        force=True)


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s); nothing was applied", file=sys.stderr)
        return None


def _raise_fd_limit() -> None:
    """Idle and slow clients each hold a socket: allow as many as the hard limit."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    print(f"{args.config}: OK ({len(config.monitors)} monitors, {len(config.channels)} channels)")
    return 0


def loop_factory():  # type: ignore[no-untyped-def]
    """uvloop's event loop when it is installed (the `fast` extra) and not turned off
    with CRONWARDEN_LOOP=asyncio; the standard loop otherwise (None)."""
    if os.environ.get("CRONWARDEN_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def cmd_serve(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    # Loading a big config creates millions of long-lived objects; the cyclic
    # garbage collector would scan them over and over (half the start-up time at
    # 100,000 monitors). The daemon freezes them and turns it back on once started.
    gc.disable()
    config = _load(args.config)
    if config is None:
        return 2
    if not config.server.is_loopback and not config.server.api_token():
        print(f"{args.config}: refusing to listen on {config.server.host} without an API token: set "
              f"server.api_token_env and that environment variable, or listen on 127.0.0.1",
              file=sys.stderr)
        return 2
    from .daemon import Daemon

    _raise_fd_limit()
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(Daemon(config).run(args.config))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"cronwarden: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from . import status

    config = None
    if args.config and (os.path.exists(args.config) or args.config != DEFAULT_CONFIG):
        config = _load(args.config)
        if config is None:
            return 2
    return status.main(config, args.name, args.url)


def cmd_test_alert(args: argparse.Namespace) -> int:
    from . import status

    config = _load(args.config)
    if config is None:
        return 2
    if args.channel not in config.channels:
        print(f"{args.config}: no channel '{args.channel}' (channels: {', '.join(config.channels) or 'none'})",
              file=sys.stderr)
        return 2
    return status.test_alert(config, args.channel, args.url)


def cmd_incident_op(args: argparse.Namespace) -> int:
    from . import commands

    config = None
    if os.path.exists(args.config) or args.config != DEFAULT_CONFIG:
        config = _load(args.config)
        if config is None:
            return 2
    return commands.run(args.command, config, args.url, args)


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="YAML file (default %(default)s)")
    parser.add_argument("--url", help="daemon URL (default: from the config's listen, or $CRONWARDEN_URL)")
    parser.set_defaults(func=cmd_incident_op)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cronwarden", description="Monitor cron jobs and background jobs.")
    parser.add_argument("--version", action="version", version=f"cronwarden {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="YAML file (default %(default)s)")
    serve.add_argument("--log-level", default=os.environ.get("CRONWARDEN_LOG_LEVEL", "INFO"))
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate a config file and print every problem")
    check.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="YAML file (default %(default)s)")
    check.set_defaults(func=cmd_check)

    status = sub.add_parser("status", help="show monitors (or one monitor's runs and duration statistics)")
    status.add_argument("name", nargs="?", help="one monitor: recent runs, p50/p95/max and a suggested max_runtime")
    status.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="YAML file (default %(default)s)")
    status.add_argument("--url", help="daemon URL (default: from the config's listen, or $CRONWARDEN_URL)")
    status.set_defaults(func=cmd_status)

    test = sub.add_parser("test-alert", help="send a test alert through a channel and print the answer")
    test.add_argument("channel")
    test.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="YAML file (default %(default)s)")
    test.add_argument("--url", help="daemon URL (default: from the config's listen, or $CRONWARDEN_URL)")
    test.set_defaults(func=cmd_test_alert)

    ack = sub.add_parser("ack", help="acknowledge an incident (by id, or a monitor's open one)")
    ack.add_argument("target", help="incident id or monitor name")
    ack.add_argument("--note", help="a note for the timeline")
    _client_options(ack)
    note = sub.add_parser("note", help="add a note to an incident's timeline")
    note.add_argument("target", help="incident id or monitor name")
    note.add_argument("text", nargs="+")
    _client_options(note)
    resolve = sub.add_parser("resolve", help="close an incident by hand")
    resolve.add_argument("target", help="incident id or monitor name")
    resolve.add_argument("--note", help="a note for the timeline")
    _client_options(resolve)
    pause = sub.add_parser("pause", help="pause a monitor: it raises nothing until resumed or --for ends")
    pause.add_argument("name")
    pause.add_argument("--for", help="how long, e.g. 2h (default: until resumed)")
    pause.add_argument("--reason")
    _client_options(pause)
    resume = sub.add_parser("resume", help="resume a paused monitor")
    resume.add_argument("name")
    _client_options(resume)
    incidents = sub.add_parser("incidents", help="list incidents")
    incidents.add_argument("name", nargs="?", help="only this monitor's")
    incidents.add_argument("--open", action="store_true", help="only open ones")
    _client_options(incidents)
    pm = sub.add_parser("postmortem", help="print a post-mortem draft (Markdown) for an incident")
    pm.add_argument("target", help="incident id or monitor name")
    _client_options(pm)

    from . import backup, crontab, runwrap

    runwrap.register(sub)
    crontab.register(sub)
    backup.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
