"""Notification channels: one module per type behind one small interface.

A sender is ``async def send(channel, payload, delivery_id, ctx) -> int | None``
(the HTTP status when there is one). It raises :class:`DeliveryError` on
failure, saying whether a retry can help and how long the far end asked us to
wait (``Retry-After``). The registry is a plain dict from ``type:`` to sender.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import aiohttp

from ..config import ChannelConfig


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


Sender = Callable[[ChannelConfig, dict[str, Any], str, SendContext], Awaitable[int | None]]


def registry() -> dict[str, Sender]:
    from . import email, log, webhook

    return {"log": log.send, "webhook": webhook.send, "email": email.send}
