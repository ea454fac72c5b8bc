"""``type: webhook``: the alert as a JSON POST, signed per Standard Webhooks.

Signing (https://www.standardwebhooks.com/): ``webhook-id`` is the stable
delivery id (the same on every retry, so a receiver can drop a repeat),
``webhook-timestamp`` the attempt's epoch seconds, and ``webhook-signature``
is ``v1,`` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")). A secret
written ``whsec_<base64>`` is decoded as the spec says; any other value is
used as raw bytes. The body is serialised once and those exact bytes are both
signed and sent.

A digest (``event: "digest"`` with its ``alerts``) goes out as-is. Redirects,
timeouts and the classification of answers are :func:`.post`'s job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

from ..config import ChannelConfig
from .. import fastjson
from . import DeliveryError, SendContext, post, require

SECRET_PREFIX = "whsec_"


def secret_bytes(secret: str) -> bytes:
    """The HMAC key: base64-decoded after ``whsec_`` (padding optional, as in
    the reference implementation), otherwise the UTF-8 bytes of the value."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    encoded = secret[len(SECRET_PREFIX):]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ValueError("a whsec_ secret must be followed by non-empty base64")
    return key


def sign(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    message = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def send(channel: ChannelConfig, payload: dict[str, Any], delivery_id: str, ctx: SendContext) -> int:
    url = channel.target_url()
    if not url:
        # url_env names a variable that is not set; like a missing secret, retry.
        raise DeliveryError(f"channel {channel.name}: no URL (is {channel.url_env or 'url'} set?)")
    body = fastjson.dumps(payload).encode()
    timestamp = int(ctx.now)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "cronwarden",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
    }
    secret: str | None = None
    if channel.secret_env:
        secret = require(channel, "secret_env")
        try:
            headers["webhook-signature"] = sign(secret, delivery_id, timestamp, body)
        except ValueError as exc:
            # Never echo the value; fixing the variable and restarting lets the retry succeed.
            raise DeliveryError(f"channel {channel.name}: {channel.secret_env} (secret_env): {exc}") from None
    return await post(channel, ctx, url, data=body, headers=headers, secrets=[secret])
