"""``type: webhook``: the alert as a JSON POST, signed per Standard Webhooks.

Signing (https://www.standardwebhooks.com/): ``webhook-id`` is the stable
delivery id, ``webhook-timestamp`` the attempt's epoch seconds, and
``webhook-signature`` is ``v1,`` + base64(HMAC-SHA256(secret,
"{id}.{timestamp}.{body}")). A secret written ``whsec_<base64>`` is decoded as
the spec says; any other value is used as raw bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
from typing import Any

import aiohttp

from ..config import ChannelConfig
from . import DeliveryError, SendContext


def secret_bytes(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def sign(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    message = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            import time

            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> int:
    assert channel.url
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(ctx.now)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "cronwarden",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
    }
    if channel.secret_env:
        secret = os.environ.get(channel.secret_env)
        if not secret:
            raise DeliveryError(f"environment variable {channel.secret_env} (secret_env) is not set",
                                permanent=False)
        headers["webhook-signature"] = sign(secret, delivery_id, timestamp, body)
    try:
        async with ctx.session.post(channel.url, data=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=channel.timeout)) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                return resp.status
            transient = resp.status in (408, 425, 429) or resp.status >= 500
            raise DeliveryError(f"HTTP {resp.status} from {channel.url}", permanent=not transient,
                                retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
                                status=resp.status)
    except asyncio.TimeoutError:
        raise DeliveryError(f"no answer from {channel.url} within {channel.timeout}s") from None
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"cannot reach {channel.url}: {exc}") from None
