"""Parsers for the human units used in the YAML file: durations and sizes.

Both are pure and raise ``ValueError`` with a one-line reason on bad input.
"""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
}


def parse_duration(value: object) -> int:
    """Whole seconds from ``90``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"1d"``."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: expected seconds or a string like '5m'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"bad duration {value}: must not be negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"bad duration {value!r}: expected seconds or a string like '5m'")
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    pos, total = 0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"bad duration {value!r}: use whole seconds or units s, m, h, d, w (e.g. '90s', '1h30m')"
        )
    return total


def parse_size(value: object) -> int:
    """Bytes from ``1024``, ``"100KiB"``, ``"1MiB"``."""
    if isinstance(value, bool):
        raise ValueError(f"bad size {value!r}: expected bytes or a string like '100KiB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"bad size {value}: must not be negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"bad size {value!r}: expected bytes or a string like '100KiB'")
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"bad size {value!r}: use bytes or KiB/MiB/GiB (e.g. '100KiB')")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]


def format_duration(seconds: float) -> str:
    """``5400`` -> ``"1h30m"``, ``2.5`` -> ``"2.5s"``, ``0.004`` -> ``"4ms"``; used in
    human-readable alert text. Whole seconds (every duration in a config) come out in
    the config's own units."""
    seconds = max(0.0, seconds)  # a clock stepped back: no negative durations in text
    if 0 < seconds and (ms := round(seconds * 1000)) < 1000:
        return f"{max(1, ms)}ms"
    if 1 <= seconds < 9.95 and seconds != int(seconds):
        return f"{seconds:.1f}".removesuffix(".0") + "s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)
