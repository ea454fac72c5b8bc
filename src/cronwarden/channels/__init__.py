"""Notification channels: one module per type behind one small interface.

A sender is ``async def send(channel, payload, delivery_id, ctx) -> int | None``
(the HTTP status when there is one). It raises :class:`DeliveryError` on
failure, saying whether a retry can help and how long the far end asked us to
wait (``Retry-After``). The registry is a plain dict from ``type:`` to the sender's module.

``payload`` is one alert (the webhook JSON of SPEC section 5) or a digest:
``{"event": "digest", "count": N, "severity": ..., "summary": ..., "alerts":
[alert, ...]}``; :mod:`.render` turns either into text for people.

HTTP senders go through :func:`post`: no redirects followed, a per-attempt
timeout, answers classified as permanent (400, 401, 403, 404, 410 and other
4xx: stop and say why) or transient (408, 425, 429, 5xx, timeouts, refused
connections: retry), and secrets redacted from every error message.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit
from typing import Any, Awaitable, Callable, Iterable

import aiohttp

from ..config import ChannelConfig

# yarl encodes a URL's host name with the idna codec, whose module (and stringprep) Python
# imports on first use: ~2 ms on the way to the first alert after start-up, a burst's too.
codecs.lookup("idna")

TRANSIENT_STATUSES = frozenset({408, 425, 429})
MAX_ANSWER = 2000  # characters of a service's answer kept for the attempt record


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status


@dataclass
class SendContext:
    session: aiohttp.ClientSession
    now: float  # epoch seconds of this attempt
    answer: str = ""  # what the service said (set by post(); shown by test-alert)


Sender = Callable[[ChannelConfig, dict[str, Any], str, SendContext], Awaitable[int | None]]


# type -> module in this package; modules are imported when a channel of that type exists.
REGISTRY = {name: name for name in (
    "log", "webhook", "email", "slack", "discord", "teams", "telegram", "ntfy", "pushover", "gotify",
    "pagerduty", "command")}


def sender_for(kind: str) -> Sender:
    module = importlib.import_module(f"{__name__}.{REGISTRY[kind]}")
    return module.send  # type: ignore[no-any-return]


def redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def webhook_url(channel: ChannelConfig) -> str:
    """The URL a chat webhook channel posts to: `url`, or the variable `url_env` names
    (a missing variable is transient: set it and the retry goes through)."""
    url = channel.target_url()
    if not url:
        raise DeliveryError(f"channel {channel.name}: no webhook URL (url, or url_env set)",
                            permanent=not channel.url_env)
    return url


def url_secrets(url: str | None) -> list[str]:
    """The parts of a webhook URL that hold its secret (the URL, its path, last
    segment and query), for redaction: a server may echo the path in an error."""
    if not url:
        return []
    parts = urlsplit(url)
    return [url, f"{parts.path}?{parts.query}" if parts.query else parts.path, parts.path,
            parts.path.rstrip("/").rsplit("/", 1)[-1], parts.query]


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - (now or time.time()))
    except (TypeError, ValueError, IndexError):
        return None


def require(channel: ChannelConfig, attr: str) -> str:
    """A secret named by a ``*_env`` key; a missing variable is a transient error
    (the operator can set it and the retry then succeeds)."""
    value = channel.secret(attr)
    if not value:
        raise DeliveryError(f"channel {channel.name}: environment variable {getattr(channel, attr)} "
                            f"({attr}) is not set")
    return value


async def post(channel: ChannelConfig, ctx: SendContext, url: str, *, json: Any = None,
               data: bytes | str | None = None, headers: dict[str, str] | None = None,
               secrets: Iterable[str | None] = ()) -> int:
    """POST once; return the 2xx status or raise a classified DeliveryError."""
    secrets = [*secrets, *url_secrets(channel.secret("url_env"))]
    shown = redact(url, secrets)
    try:
        async with ctx.session.post(url, json=json, data=data, headers=headers, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=channel.timeout)) as resp:
            body = redact((await resp.content.read(64 * 1024)).decode("utf-8", errors="replace"), secrets)
            ctx.answer = f"{resp.status} {body[:MAX_ANSWER]}".strip()
            if 200 <= resp.status < 300:
                return resp.status
            if 300 <= resp.status < 400:
                raise DeliveryError(f"{shown} answered {resp.status} redirect to "
                                    f"{redact(resp.headers.get('Location', '?'), secrets)}; redirects are "
                                    f"not followed: fix the URL", permanent=True, status=resp.status)
            transient = resp.status in TRANSIENT_STATUSES or resp.status >= 500
            detail = body.strip().replace("\n", " ")[:200]
            raise DeliveryError(f"HTTP {resp.status} from {shown}{': ' + detail if detail else ''}",
                                permanent=not transient,
                                retry_after=retry_after_seconds(resp.headers.get("Retry-After"), ctx.now),
                                status=resp.status)
    except asyncio.TimeoutError:
        raise DeliveryError(f"no answer from {shown} within {channel.timeout}s") from None
    except aiohttp.ClientError as exc:
        raise DeliveryError(redact(f"cannot reach {shown}: {exc}", secrets)) from None
