"""A per-client token bucket for pings (pure; the clock is a parameter).

Each client address gets `burst` tokens, refilled at `rate` per second; a
ping takes one, and with none left it is answered 429. Loopback clients (the
box's own cron jobs) are never limited. The table of clients is bounded: the
least recently seen are forgotten first.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import OrderedDict

MAX_CLIENTS = 10_000


@functools.lru_cache(maxsize=1024)
def is_loopback(address: str | None) -> bool:
    if not address:
        return True  # a UNIX socket or a test transport
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, at)

    def allow(self, address: str | None, now: float) -> bool:
        """Take a token for `address` at monotonic time `now`; False when it has none."""
        if self.rate <= 0 or is_loopback(address):
            return True
        assert address is not None
        tokens, at = self._buckets.pop(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[address] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return allowed

    def retry_after(self, address: str) -> float:
        tokens, _ = self._buckets.get(address, (0.0, 0.0))
        return max(0.0, (1.0 - tokens) / self.rate) if self.rate > 0 else 0.0
