"""CLI commands that act on incidents through the running daemon's API:
``ack``, ``note``, ``resolve``, ``pause``, ``resume``, ``incidents``, ``postmortem``."""

from __future__ import annotations

import getpass
import os
import sys
import urllib.parse
from typing import Any, TextIO

from .config import Config
from .status import StatusError, daemon_url, fetch


class Client:
    def __init__(self, config: Config | None, url: str | None) -> None:
        self.base = daemon_url(config, url)
        self.token = config.server.api_token() if config else os.environ.get("CRONWARDEN_TOKEN")
        self.user = os.environ.get("CRONWARDEN_USER") or getpass.getuser()

    def get(self, path: str, raw: bool = False) -> Any:
        return fetch(self.base, path, self.token, raw=raw)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return fetch(self.base, path, self.token, method="POST", body={"by": self.user, **body})

    def open_incident(self, name: str) -> int:
        data = self.get(f"/api/v1/monitors/{urllib.parse.quote(name)}?runs=1")
        if not data.get("incident"):
            raise StatusError(f"{name} has no open incident")
        return int(data["incident"]["id"])


def _ident(client: Client, ident: str) -> int:
    """A monitor name standing for its open incident, or an incident id. A name made
    of digits is a valid monitor name: a monitor of that name wins."""
    if not ident.isdigit():
        return client.open_incident(ident)
    try:
        return client.open_incident(ident)
    except StatusError:
        return int(ident)


def run(command: str, config: Config | None, url: str | None, args: Any, out: TextIO = sys.stdout) -> int:
    client = Client(config, url)
    try:
        if command == "ack":
            incident = _ident(client, args.target)
            client.post(f"/api/v1/incidents/{incident}/ack", {"via": "cli", "note": args.note})
            out.write(f"incident {incident} acknowledged: reminders and escalation stop\n")
        elif command == "note":
            incident = _ident(client, args.target)
            client.post(f"/api/v1/incidents/{incident}/notes", {"text": " ".join(args.text)})
            out.write(f"note added to incident {incident}\n")
        elif command == "resolve":
            incident = _ident(client, args.target)
            client.post(f"/api/v1/incidents/{incident}/resolve", {"note": args.note})
            out.write(f"incident {incident} resolved\n")
        elif command == "pause":
            result = client.post(f"/api/v1/monitors/{urllib.parse.quote(args.name)}/pause",
                                 {"for": getattr(args, "for"), "reason": args.reason})
            until = f" until {result['until']}" if result.get("until") else " until resumed"
            out.write(f"{args.name} paused{until}\n")
        elif command == "resume":
            client.post(f"/api/v1/monitors/{urllib.parse.quote(args.name)}/resume", {})
            out.write(f"{args.name} resumed\n")
        elif command == "incidents":
            query = urllib.parse.urlencode({k: v for k, v in (("monitor", args.name), ("open", "1" if args.open
                                                                                       else None)) if v})
            incidents = client.get(f"/api/v1/incidents?{query}")["incidents"]
            for inc in incidents:
                state = "OPEN  " if inc["open"] else "closed"
                out.write(f"{inc['id']:>6}  {state}  {inc['opened_at'][:19].replace('T', ' ')}  "
                          f"{inc['severity']:<8}  {inc['monitor']}: {inc['summary']}\n")
            if not incidents:
                out.write("no incidents\n")
        elif command == "postmortem":
            incident = _ident(client, args.target)
            out.write(client.get(f"/api/v1/incidents/{incident}/postmortem", raw=True))
        else:
            raise StatusError(f"unknown command {command}")
    except StatusError as exc:
        print(f"cronwarden {command}: {exc}", file=sys.stderr)
        return 1
    return 0
