"""Compact JSON for what is written per ping and per alert (state rows, payloads).

orjson encodes a monitor's state in about 1 us and an alert payload in a few,
where the standard library takes ten times that; the daemon writes one per
ping and one per alert. What orjson refuses (integers wider than 64 bits in a
job's metadata, say) goes through the standard library, so nothing a client
sends can fail a write.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_compact = json.JSONEncoder(separators=(",", ":")).encode


def dumps(value: Any) -> str:
    """`value` as compact JSON text."""
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):
        return _compact(value)


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # NaN and the like, which the standard library writes
