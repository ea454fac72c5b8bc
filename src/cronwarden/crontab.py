"""``cronwarden import-crontab [FILE...]``: monitors and wrapped lines from an existing crontab.

For every job it prints a ``monitors:`` entry (a name made from the command,
the schedule, the time zone, a first-guess ``grace``) and the crontab line
rewritten to run the job under ``cronwarden run NAME -- ...``. Nothing is
installed: the output is for review (``crontab -l`` by default; ``FILE``
may be a user crontab, ``/etc/crontab`` or a file or directory like
``/etc/cron.d``, whose lines carry a user field).

How lines are treated:

* comments, blank lines and environment lines (``MAILTO=``, ``PATH=``,
  ``SHELL=``, ``CRON_TZ=``) are kept in place. ``CRON_TZ`` (else ``TZ``)
  gives the following jobs their ``timezone``; without either, jobs get the
  machine's zone, which is what cron uses (``--timezone`` overrides).
* a command that is one simple command is kept as written after ``--``; one
  with shell syntax (pipes, redirections, ``&&``, ``;``, ``$(...)``, a
  leading ``VAR=value``, a shell builtin) becomes ``SHELL -c 'COMMAND'``
  (``/bin/sh`` unless the crontab sets ``SHELL``), quoted with shlex.quote.
* ``%``: cron ends the command at the first unescaped ``%`` and feeds the
  rest to it as stdin. Such lines are converted exactly: only the part
  before that ``%`` is wrapped, the ``%...`` stdin part stays after it
  unchanged, and ``\\%`` escapes are kept as written (cron undoes them in the
  rewritten line the same way as in the original).
* ``@daily`` and the other macros stay macros (``@midnight`` and
  ``@annually`` are written as ``@daily`` and ``@yearly``).
* ``@reboot`` jobs have no schedule a monitor could expect them on; they
  stay unchanged under a ``# cronwarden:`` comment saying so.
* a line whose schedule does not parse (checked with the daemon's own cron
  validation) stays unchanged under ``# cronwarden: could not parse``.
* a line already running ``cronwarden run`` is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .jobcommand import (
    DEFAULT_SHELL, MAX_SLUG, program_name, split_percent, unescape_percent, unique_name, wrap_command,
)
from .schedule import next_cron_fire, validate_cron
from .units import format_duration

SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]*")
SEPARATOR = "#" * 72
MACROS = {"@hourly": "@hourly", "@daily": "@daily", "@midnight": "@daily", "@weekly": "@weekly",
          "@monthly": "@monthly", "@yearly": "@yearly", "@annually": "@yearly"}
UTC_NAMES = {"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu", "GMT",
             "Etc/GMT", "GMT0", "Etc/GMT0", "Greenwich"}

_ENV = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*")


# --------------------------------------------------------------------------
# Schedules (a job's command: jobcommand.py).


def default_grace(cron: str) -> str:
    """A first-guess grace from how often `cron` fires: 5m for less than hourly, 15m for up to daily,
    30m for daily, 1h for weekly or rarer."""
    when = datetime(2025, 1, 6, tzinfo=timezone.utc)
    fires = []
    for _ in range(8):
        when = next_cron_fire(cron, ZoneInfo("UTC"), when)
        fires.append(when)
    gap = min((b - a).total_seconds() for a, b in zip(fires, fires[1:]))
    for limit, grace in ((3600, 300), (86400, 900), (7 * 86400, 1800)):
        if gap < limit:
            return format_duration(grace)
    return format_duration(3600)


# --------------------------------------------------------------------------
# Lines and files.


@dataclass(frozen=True, slots=True)
class Monitor:
    """One ``monitors:`` entry."""

    name: str
    cron: str
    timezone: str | None
    grace: str
    command: str  # as written in the crontab
    source: str  # FILE:LINE
    user: str | None = None


@dataclass(slots=True)
class Converted:
    """One crontab file, converted: its monitors and its rewritten lines."""

    label: str
    monitors: list[Monitor] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    reboot: int = 0
    unparsed: int = 0
    already: int = 0


_USER_JOB = re.compile(r"(\s*(?:@\S+|\S+\s+\S+\s+\S+\s+\S+\s+\S+)\s+)(\S.*)", re.S)
_SYSTEM_JOB = re.compile(r"(\s*(?:@\S+|\S+\s+\S+\s+\S+\s+\S+\s+\S+)\s+(\S+)\s+)(\S.*)", re.S)


def _note(out: list[str], comment: str) -> None:
    if not out or out[-1] != comment:  # converting twice does not pile up the same note
        out.append(comment)


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def convert(text: str, *, label: str = "crontab", system: bool = False, prefix: str = "",
            used: set[str] | None = None, default_tz: str | None = None,
            program: str = "cronwarden") -> Converted:
    """Convert one crontab's text. Pure. `used` holds the names taken so far (across files) and is
    updated; `default_tz` is the zone of jobs without CRON_TZ/TZ (None: leave `timezone` out)."""
    used = set() if used is None else used
    result = Converted(label)
    out = result.lines
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            out.append(line)
            continue
        env_match = _ENV.fullmatch(line)
        if env_match:
            value = env_match.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[env_match.group(1)] = value
            out.append(line)
            continue
        match = (_SYSTEM_JOB if system else _USER_JOB).fullmatch(line)
        if not match:
            fields = "five time fields (or @macro), a user and a command" if system else \
                "five time fields (or @macro) and a command"
            _note(out, f"# cronwarden: could not parse (expected {fields}); left unchanged")
            out.append(line)
            result.unparsed += 1
            continue
        lead, command = match.group(1), match.groups()[-1]
        user = match.group(2) if system else None
        when = lead.split()[0]
        if when.lower() == "@reboot":
            _note(out, "# cronwarden: @reboot left as is: it runs once per boot, with no schedule a monitor "
                       "could expect it on; to watch it, have it ping a heartbeat monitor (every:)")
            out.append(line)
            result.reboot += 1
            continue
        schedule = MACROS.get(when.lower(), when) if when.startswith("@") else " ".join(lead.split()[:5])
        tz = env.get("CRON_TZ") or env.get("TZ") or default_tz
        problem = validate_cron(schedule)
        if problem is None and tz and not _known_zone(tz):
            problem = f"unknown time zone {tz!r} in {'CRON_TZ' if env.get('CRON_TZ') else 'TZ'}"
        head, _ = split_percent(command)
        if problem is None and not head.strip():
            problem = "empty command"
        if problem is not None:
            _note(out, f"# cronwarden: could not parse ({problem}); left unchanged")
            out.append(line)
            result.unparsed += 1
            continue
        words = _words(unescape_percent(head))
        if len(words) >= 3 and os.path.basename(words[0]) == "cronwarden" and words[1] == "run":
            used.update(w for w in words[2:3] if SLUG.fullmatch(w))  # already wrapped: keep it, and its name
            out.append(line)
            result.already += 1
            continue
        name = unique_name(_prefixed(prefix, program_name(unescape_percent(head))), used)
        shell = env.get("SHELL") or DEFAULT_SHELL
        out.append(lead + wrap_command(command, name, shell, program))
        result.monitors.append(Monitor(name, schedule, tz if tz else None, default_grace(schedule), command,
                                       f"{label}:{number}", user))
    return result


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return []


def _prefixed(prefix: str, slug: str) -> str:
    if prefix and prefix[-1] not in "-_.":
        prefix += "-"
    return (prefix + slug)[: MAX_SLUG + len(prefix)]


def _plain(name: str) -> str:
    """`name` as a plain YAML scalar, or quoted where YAML would read it as something else (``on``, ``1``)."""
    try:
        plain = yaml.safe_load(f"{name}: x")
    except yaml.YAMLError:
        plain = None
    return name if plain == {name: "x"} else json.dumps(name)


def render_yaml(monitors: Sequence[Monitor]) -> str:
    """The ``monitors:`` block; each entry carries its command as a comment."""
    lines = ["# cronwarden import-crontab: add these to the monitors: section of the config.",
             "# grace is a first guess: a run counts when it ends, so grace must cover how long it runs.",
             "monitors:" if monitors else "monitors: {}"]
    for m in monitors:
        who = f" ({m.user})" if m.user else ""
        lines.append(f"  {_plain(m.name)}:")
        lines.append(f"    # {m.source}{who}: {m.command}")
        lines.append(f"    cron: {json.dumps(m.cron)}")
        if m.timezone:
            lines.append(f"    timezone: {_plain(m.timezone)}")
        lines.append(f"    grace: {m.grace}")
    return "\n".join(lines) + "\n"


def render(files: Sequence[Converted], yaml_part: bool = True, crontab_part: bool = True) -> str:
    """The YAML block, a line of ``#``, then each rewritten crontab (headed by its name when several)."""
    parts: list[str] = []
    if yaml_part:
        parts.append(render_yaml([m for f in files for m in f.monitors]))
    if yaml_part and crontab_part:
        parts.append(SEPARATOR + "\n")
    if crontab_part:
        for converted in files:
            if len(files) > 1:
                parts.append(f"# ==> {converted.label} <==\n")
            parts.append("".join(line + "\n" for line in converted.lines))
    return "".join(parts)


# --------------------------------------------------------------------------
# Thin I/O.


class ImportFailed(Exception):
    pass


def is_system_crontab(path: str) -> bool:
    """Files cron reads with a user field: /etc/crontab and those under /etc/cron.d."""
    full = os.path.abspath(path)
    return full == "/etc/crontab" or full.startswith("/etc/cron.d/")


def local_timezone() -> str | None:
    """The machine's zone (what cron reads schedules in), None when it is UTC or unknown."""
    name = None
    try:
        name = Path("/etc/timezone").read_text().split()[0]
    except (OSError, IndexError):
        try:
            target = os.readlink("/etc/localtime")
            if "zoneinfo/" in target:
                name = target.split("zoneinfo/", 1)[1]
        except OSError:
            pass
    if not name or name in UTC_NAMES or not _known_zone(name):
        return None
    return name


def read_sources(files: Sequence[str], system: bool) -> list[tuple[str, str, bool]]:
    """(label, text, has user field) for each FILE; `crontab -l` when there is none; ``-`` is stdin.
    A directory stands for the files in it that cron would read."""
    if not files:
        try:
            proc = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ImportFailed(f"cannot run crontab -l: {exc}") from None
        if proc.returncode != 0:
            raise ImportFailed(f"crontab -l: {proc.stderr.strip() or f'exit status {proc.returncode}'}")
        return [("crontab -l", proc.stdout, system)]
    sources: list[tuple[str, str, bool]] = []
    for path in _expand(files):
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ImportFailed(f"{path}: {exc.strerror or exc}") from None
        sources.append(("stdin" if path == "-" else path, text, system or is_system_crontab(path)))
    return sources


def _expand(files: Iterable[str]) -> list[str]:
    out: list[str] = []
    for path in files:
        if path != "-" and os.path.isdir(path):  # like cron: names of letters, digits, - and _ only
            out.extend(os.path.join(path, n) for n in sorted(os.listdir(path))
                       if re.fullmatch(r"[A-Za-z0-9_-]+", n) and os.path.isfile(os.path.join(path, n)))
        else:
            out.append(path)
    return out


def cmd_import(args: argparse.Namespace) -> int:
    if args.prefix and not SLUG.fullmatch(args.prefix):
        print(f"cronwarden import-crontab: --prefix {args.prefix!r} must match [a-z0-9][a-z0-9_.-]*",
              file=sys.stderr)
        return 2
    if args.timezone and not _known_zone(args.timezone):
        print(f"cronwarden import-crontab: unknown time zone {args.timezone!r}", file=sys.stderr)
        return 2
    try:
        sources = read_sources(args.files, args.system)
    except ImportFailed as exc:
        print(f"cronwarden import-crontab: {exc}", file=sys.stderr)
        return 1
    tz = args.timezone or local_timezone()
    used: set[str] = set()
    files = [convert(text, label=label, system=system, prefix=args.prefix or "", used=used,
                     default_tz=tz, program=args.bin) for label, text, system in sources]
    sys.stdout.write(render(files, yaml_part=not args.crontab_only, crontab_part=not args.yaml_only))
    jobs = sum(len(f.monitors) for f in files)
    left = [f"{n} {what}" for n, what in ((sum(f.reboot for f in files), "@reboot"),
                                          (sum(f.unparsed for f in files), "unparsable"),
                                          (sum(f.already for f in files), "already wrapped")) if n]
    print(f"cronwarden import-crontab: {jobs} job(s) converted"
          + (f"; left unchanged: {', '.join(left)} (see the '# cronwarden:' comments)" if left else ""),
          file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``cronwarden import-crontab``."""
    parser = sub.add_parser(
        "import-crontab", help="print monitors and wrapped cron lines for an existing crontab",
        description="Print a monitors: YAML block for every job in a crontab, then a line of #, then the "
                    "crontab rewritten to run each job under 'cronwarden run NAME --'. Nothing is installed.")
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="crontab file(s) or directories like /etc/cron.d; '-' reads stdin "
                             "(default: the output of crontab -l)")
    parser.add_argument("--system", action="store_true",
                        help="the files have a user field, like /etc/crontab (automatic for /etc/crontab "
                             "and /etc/cron.d/*)")
    parser.add_argument("--prefix", default="", help="put this before every monitor name, e.g. web1-")
    parser.add_argument("--timezone", help="zone of jobs without CRON_TZ (default: this machine's zone)")
    parser.add_argument("--bin", default="cronwarden",
                        help="how the crontab calls cronwarden, e.g. /opt/cronwarden/bin/cronwarden "
                             "(default %(default)s: it must be on cron's PATH)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--yaml-only", action="store_true", help="print only the monitors: block")
    only.add_argument("--crontab-only", action="store_true", help="print only the rewritten crontab")
    parser.set_defaults(func=cmd_import)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cronwarden")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["import-crontab", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
