"""Signed one-click acknowledgement links.

``links.ack`` in every alert is ``{base_url}/ack/{incident}/{token}`` where
the token is an HMAC-SHA256 of the incident id under a secret the daemon
keeps in its database (made once, never configured, never shown). The link
works from a phone without an API token; it cannot be forged (no secret, no
valid token) and stops working when the incident closes (the daemon checks
the incident is still open), so a leaked old link is useless.
"""

from __future__ import annotations

import base64
import hmac
import secrets


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def token(secret: bytes, incident_id: int) -> str:
    digest = hmac.digest(secret, f"ack:{incident_id}".encode(), "sha256")  # one C call
    return base64.urlsafe_b64encode(digest[:18]).decode().rstrip("=")


def verify(secret: bytes, incident_id: int, given: str) -> bool:
    return hmac.compare_digest(token(secret, incident_id).encode(), given.encode())


def url(base_url: str, secret: bytes, incident_id: int) -> str:
    return f"{base_url.rstrip('/')}/ack/{incident_id}/{token(secret, incident_id)}"
