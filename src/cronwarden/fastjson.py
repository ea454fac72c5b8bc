"""Compact JSON for what is written per ping and per alert (state rows, payloads).

orjson encodes a monitor's state in about 1 us and an alert payload in a few,
where the standard library takes ten times that; the daemon writes one per
ping and one per alert. What orjson refuses (integers wider than 64 bits in a
job's metadata, say) goes through the standard library, so nothing a client
sends can fail a write, and text that may hold such a number is read by the
standard library too (orjson would turn it into a float). NaN and infinities,
which JSON does not have, are written as null.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_compact = json.JSONEncoder(separators=(",", ":")).encode
_LONG_NUMBER = re.compile(r"\d{19}")  # 19 digits or more may not fit in 64 bits


def dumps(value: Any) -> str:
    """`value` as compact JSON text."""
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):
        return _compact(value)


def loads_own(text: str) -> Any:
    """Text cronwarden wrote from its own values only (a monitor's state row): orjson alone."""
    return orjson.loads(text)


def loads(text: str) -> Any:
    """Text that may hold what a client sent (payloads with job metadata)."""
    if _LONG_NUMBER.search(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # NaN and the like, which the standard library writes
