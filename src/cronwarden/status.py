"""``cronwarden status [NAME]``: the monitors as the running daemon sees them."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any, TextIO

from .config import Config
from .units import format_duration

COLOURS = {"down": "\033[1;31m", "late": "\033[33m", "up": "\033[32m", "running": "\033[36m",
           "new": "\033[2m", "paused": "\033[2m"}
RESET = "\033[0m"


class StatusError(Exception):
    pass


def daemon_url(config: Config | None, override: str | None) -> str:
    if override:
        return override.rstrip("/")
    if os.environ.get("CRONWARDEN_URL"):
        return os.environ["CRONWARDEN_URL"].rstrip("/")
    if config is None:
        return "http://127.0.0.1:8470"
    host = config.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{config.server.port}"


def fetch(url: str, path: str, token: str | None, method: str = "GET", ok_statuses: tuple[int, ...] = (),
          body: dict[str, Any] | None = None, raw: bool = False) -> Any:
    """One API call; JSON back (or text with `raw`); StatusError with the API's reason."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, method=method, data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.read().decode() if raw else json.load(resp)
    except urllib.error.HTTPError as exc:
        if exc.code in ok_statuses:
            return json.load(exc)
        try:
            reason = json.load(exc).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        raise StatusError(f"{url}{path}: {exc.code} {reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise StatusError(f"cannot reach the daemon at {url}: {getattr(exc, 'reason', exc)}") from None


def _dur(value: float | None) -> str:
    return "-" if value is None else format_duration(value)


def _ts(value: str | None) -> str:
    return "-" if not value else value.replace("T", " ").replace("Z", "")[:19]


def render_table(monitors: list[dict[str, Any]], colour: bool, out: TextIO) -> None:
    headers = ("MONITOR", "STATE", "LAST SUCCESS", "NEXT DUE", "LAST DURATION")
    rows = [(m["name"], m["status"], _ts(m["last_success"]), _ts(m["next_due"]), _dur(m["last_duration_s"]))
            for m in monitors]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip() + "\n")
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths)]
        if colour and row[1] in COLOURS:
            cells[1] = COLOURS[row[1]] + cells[1] + RESET
        out.write("  ".join(cells).rstrip() + "\n")


def render_monitor(data: dict[str, Any], max_runtime: int | None, colour: bool, out: TextIO) -> None:
    state = data["status"]
    shown = COLOURS[state] + state + RESET if colour and state in COLOURS else state
    sched = data["schedule"]
    when = f"every {format_duration(sched['every'])}" if sched.get("every") else \
        f"cron '{sched['cron']}' ({sched['timezone']})"
    out.write(f"{data['name']}: {shown}, {when}\n")
    out.write(f"  last success {_ts(data['last_success'])}, next due {_ts(data['next_due'])}, "
              f"last ping {_ts(data['last_ping'])}\n")
    if data.get("incident"):
        inc = data["incident"]
        out.write(f"  open incident {inc['id']}: {inc['event']} since {_ts(inc['opened_at'])}\n")
    durations = data.get("durations")
    if durations:
        current = format_duration(max_runtime) if max_runtime else "not set"
        out.write(f"  durations of the last {durations['count']} runs: p50 {_dur(durations['p50'])}, "
                  f"p95 {_dur(durations['p95'])}, max {_dur(durations['max'])}\n")
        out.write(f"  suggested max_runtime: {format_duration(durations['suggested_max_runtime'])} "
                  f"(3 x p95; now {current})\n")
    runs = data.get("runs") or []
    if runs:
        out.write("  recent runs:\n")
        for run in runs[:10]:
            tail = (run.get("output") or "").strip().splitlines()
            last = tail[-1][:60] if tail else ""
            exit_status = "-" if run["exit_status"] is None else str(run["exit_status"])
            out.write(f"    {_ts(run['ended_at'])}  {_dur(run['duration_s']):>8}  exit {exit_status:>3}  {last}\n")


def test_alert(config: Config | None, channel: str, url: str | None, out: TextIO = sys.stdout) -> int:
    """`cronwarden test-alert CHANNEL`: the daemon sends a test alert and reports the answer."""
    base = daemon_url(config, url)
    token = config.server.api_token() if config else os.environ.get("CRONWARDEN_TOKEN")
    try:
        result = fetch(base, f"/api/v1/channels/{urllib.request.quote(channel)}/test", token, method="POST",
                       ok_statuses=(502,))
    except StatusError as exc:
        print(f"cronwarden test-alert: {exc}", file=sys.stderr)
        return 1
    if result["delivered"]:
        out.write(f"{channel} ({result['type']}): delivered; the service answered: "
                  f"{result.get('answer') or result.get('status') or 'OK'}\n")
        return 0
    out.write(f"{channel} ({result['type']}): NOT delivered ({result['state']}): {result['error']}\n")
    if result.get("answer"):
        out.write(f"  the service answered: {result['answer']}\n")
    return 1


def main(config: Config | None, name: str | None, url: str | None, out: TextIO = sys.stdout) -> int:
    base = daemon_url(config, url)
    token = config.server.api_token() if config else os.environ.get("CRONWARDEN_TOKEN")
    colour = out.isatty() and not os.environ.get("NO_COLOR")
    try:
        if name is None:
            render_table(fetch(base, "/api/v1/monitors", token)["monitors"], colour, out)
        else:
            data = fetch(base, f"/api/v1/monitors/{urllib.request.quote(name)}?runs=50", token)
            cfg = config.monitors.get(name) if config else None
            render_monitor(data, cfg.max_runtime if cfg else None, colour, out)
    except StatusError as exc:
        print(f"cronwarden status: {exc}", file=sys.stderr)
        return 1
    return 0
