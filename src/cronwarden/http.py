"""HTTP surface: ping URLs, /healthz and the application (the API is in api.py)."""

from __future__ import annotations

import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import web

from . import actions, api, badges, dashboard, health, metrics, openapi
from .api import DAEMON
from .monitor import PingKind
from .store import StoreError

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("cronwarden.http")

MAX_RID = 128


class PingPathError(ValueError):
    """A ping URL that does not name a monitor and an action; ``status`` is 400 or 404."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PingTarget:
    ident: str  # a monitor name or a Healthchecks-style UUID key
    kind: PingKind
    exit_status: int | None = None


# What each action a ping URL usually ends in means: one look-up per ping. (Calling
# PingKind(action) goes through the enum's metaclass, ~1 us.) Other spellings of an exit
# status, such as "007", take parse_action's longer way.
_ACTIONS: dict[str, tuple[PingKind, int | None]] = {
    "": (PingKind.SUCCESS, None),
    **{kind.value: (kind, None) for kind in (PingKind.START, PingKind.FAIL, PingKind.LOG)},
    **{str(code): (PingKind.SUCCESS if code == 0 else PingKind.FAIL, code) for code in range(256)},
}


def parse_action(action: str) -> tuple[PingKind, int | None]:
    known = _ACTIONS.get(action)
    if known is not None:
        return known
    if action.isdigit() and len(action) <= 3 and int(action) <= 255:
        code = int(action)
        return (PingKind.SUCCESS if code == 0 else PingKind.FAIL), code
    shown = action[:40].encode("unicode_escape").decode("ascii")  # one line, whatever was sent
    raise PingPathError(f"unknown ping action '{shown}': use start, fail, log or an exit status 0-255")


def parse_ping_path(tail: str, ping_key: str | None) -> PingTarget:
    """Split what follows ``/ping/`` into monitor and action. Pure; raises PingPathError.

    Forms: ``NAME``, ``NAME/ACTION``, ``PING_KEY/NAME``, ``PING_KEY/NAME/ACTION``
    (where a monitor has a ``key``, the UUID stands in for NAME)."""
    return PingTarget(*split_ping_path(tail, ping_key))


def split_ping_path(tail: str, ping_key: str | None) -> tuple[str, PingKind, int | None]:
    """parse_ping_path's fields as a plain tuple (what the ping handler reads: no object to build)."""
    if ping_key is None:  # the usual form first: NAME or NAME/ACTION, an action of the table
        name, _, action = tail.partition("/")
        known = _ACTIONS.get(action)
        if known is not None and name:
            return name, known[0], known[1]
    parts = tail.split("/")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()  # tolerate one trailing slash
    if ping_key is not None and len(parts) >= 2 and hmac.compare_digest(parts[0].encode(), ping_key.encode()):
        parts = parts[1:]
    if not parts or parts[0] == "":
        raise PingPathError("missing monitor name: use /ping/NAME")
    if len(parts) > 2:
        raise PingPathError("too many path segments: use /ping/NAME or /ping/NAME/ACTION", 404)
    kind, code = parse_action(parts[1] if len(parts) == 2 else "")
    return parts[0], kind, code


async def read_tail(request: web.BaseRequest, limit: int) -> bytes:
    """Read the body, keeping at most the last `limit` bytes (never buffering it all)."""
    if not request.body_exists:
        return b""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        while chunks and size - len(chunks[0]) >= limit:
            size -= len(chunks.pop(0))
    body = b"".join(chunks)
    return body[-limit:] if limit else b""


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n" if status != 200 else message)


async def handle_ping(request: web.Request) -> web.Response:
    """The routed ping handler (methods other than the fast path's reach it too)."""
    return await answer_ping(request.app[DAEMON], request, request.match_info["tail"])


def _no_constant(name: str) -> None:
    """NaN, Infinity and -Infinity in a job's JSON (Python's json writes them; JSON has
    none) become null, as they are stored: every channel then gets the same payload."""
    return None


async def answer_ping(daemon: "Daemon", request: web.BaseRequest, tail: str) -> web.Response:
    """Record the ping `tail` (what follows /ping/) names and answer it. Any unexpected error
    is answered 500 here: the fast path (with_fast_pings) has no middleware around it."""
    try:
        server = daemon.config.server
        limiter = daemon.limiter
        remote = request.remote
        if not limiter.allow(remote, time.monotonic()):
            wait = limiter.retry_after(remote or "")
            return web.Response(status=429, text=f"too many pings from {remote}: at most "
                                                 f"{server.rate_limit}/s (server.rate_limit)\n",
                                headers={"Retry-After": str(max(1, round(wait)))})
        try:
            ident, kind, exit_status = split_ping_path(tail, server.ping_key)
        except PingPathError as exc:
            return _text(exc.status, str(exc))
        name = daemon.resolve(ident)
        if name is None:
            return _text(404, f"unknown monitor '{ident[:80]}': no monitor or key of that name in the config")
        rid = (request.query.get("rid") or None) if request.query_string else None
        if rid is not None and len(rid) > MAX_RID:
            return _text(400, f"rid is longer than {MAX_RID} characters")
        body = await read_tail(request, server.max_body) if request.body_exists else b""
        metadata = None
        if body and kind in (PingKind.SUCCESS, PingKind.FAIL) and request.content_type == "application/json":
            truncated = request.content_length is not None and request.content_length > len(body)
            if not truncated:
                # Healthchecks clients send plain output labelled application/json, and
                # Healthchecks keeps it: so does cronwarden. Only a JSON object is metadata.
                try:
                    parsed = json.loads(body, parse_constant=_no_constant)
                except (ValueError, UnicodeDecodeError):
                    parsed = None
                    log.info("ping for %s: body labelled JSON is not JSON; kept as output, no metadata", name)
                if isinstance(parsed, dict):
                    metadata = parsed
        try:
            await daemon.ping(name, kind, exit_status=exit_status, rid=rid, metadata=metadata,
                              body=body, remote=remote)
        except StoreError as exc:
            return _text(503, f"ping not recorded: {exc}")
        except KeyError:  # daemon.UnknownMonitor: removed by a reload meanwhile
            return _text(404, f"unknown monitor '{name}': it was removed from the config")
        return _text(200, "OK")
    except web.HTTPException:
        raise  # aiohttp answers it with its own status, as it does for every handler
    except Exception:
        return _internal_error(request)


async def healthz(request: web.Request) -> web.Response:
    body = await health.report(request.app[DAEMON])
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


def _internal_error(request: web.BaseRequest) -> web.Response:
    log.exception("error handling %s %s", request.method, request.path)
    return web.Response(status=500, text="internal error; see the daemon's log\n")


@web.middleware
async def errors_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every failure becomes a one-line answer; nothing a client sends kills the daemon."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and not exc.text:
            exc.text = f"{exc.status} {exc.reason}\n"
        raise
    except Exception:
        return _internal_error(request)


PING_PREFIX = "/ping/"
PING_METHODS = frozenset({"GET", "POST", "HEAD"})


def with_fast_pings(app_handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
                    daemon: "Daemon") -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The server's request handler: a ping (GET/POST/HEAD under /ping/) is answered
    directly, everything else goes through the application. Routing and the
    middleware chain cost a ping about as much as the state machine does, and a
    `:00` burst is all pings. The answers are the same as through the route. A
    request with an ``Expect`` header takes the route, which answers it (``100
    Continue`` before a large body, 417 for what it cannot meet)."""

    def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        # A plain function returning the awaitable aiohttp awaits: no coroutine frame of its
        # own to resume on every ping's way back from its commit.
        if request.method in PING_METHODS and "Expect" not in request.headers:
            path = request.path
            if path.startswith(PING_PREFIX):
                return answer_ping(daemon, request, path[len(PING_PREFIX):])
        return app_handler(request)

    return handle


def build_app(daemon: "Daemon") -> web.Application:
    app = web.Application(middlewares=[errors_middleware])
    app[DAEMON] = daemon
    for method in ("GET", "POST", "HEAD"):
        app.router.add_route(method, "/ping/{tail:.*}", handle_ping)
    app.router.add_get("/healthz", healthz)
    api.add_routes(app)
    actions.add_routes(app)
    dashboard.add_routes(app)
    badges.add_routes(app)
    openapi.add_routes(app)
    metrics.add_routes(app, daemon)
    return app
