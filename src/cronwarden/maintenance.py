"""Maintenance windows: pure helpers over :class:`MaintenanceWindow` config."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable

from .config import MaintenanceWindow
from .configtypes import zone
from .schedule import next_cron_fire

MAX_CHAIN = 1000  # windows chained into one at most (a window opening every minute)


def window_end(window: MaintenanceWindow, now: datetime) -> datetime | None:
    """The end of `window`'s occurrence that contains `now`, or None.

    Each cron fire opens the window for `duration`; occurrences that overlap or
    touch count as one, so the end returned is when alerts flow again."""
    span = timedelta(seconds=window.duration)
    tz = zone(window.timezone)
    fire = next_cron_fire(window.cron, tz, now - span)  # opened strictly after now - span
    if fire > now:
        return None
    end = fire + span
    for _ in range(MAX_CHAIN):
        fire = next_cron_fire(window.cron, tz, fire)
        if fire > end:
            break
        end = fire + span
    return end


def maintenance_until(windows: Iterable[MaintenanceWindow], now: datetime) -> datetime | None:
    """When the latest window a monitor is in ends; None when it is in none."""
    ends = [end for window in windows if (end := window_end(window, now)) is not None]
    return max(ends) if ends else None
