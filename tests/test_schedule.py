"""Tests for cronwarden.schedule: cron matching, DST handling, validation.

DST transitions used throughout (2026):

* Europe/Riga     spring 03-29: 03:00 EET (01:00Z) -> 04:00 EEST, wall 03:00-03:59 missing
                  autumn 10-25: 04:00 EEST (01:00Z) -> 03:00 EET, wall 03:00-03:59 twice
* America/New_York spring 03-08: 02:00 EST (07:00Z) -> 03:00 EDT, wall 02:00-02:59 missing
                  autumn 11-01: 02:00 EDT (06:00Z) -> 01:00 EST, wall 01:00-01:59 twice
* Australia/Lord_Howe (30-minute DST)
                  autumn 04-05: 02:00 +11 (04-04 15:00Z) -> 01:30 +10:30, wall 01:30-01:59 twice
                  spring 10-04: 02:00 +10:30 (10-03 15:30Z) -> 02:30 +11, wall 02:00-02:29 missing

A missing wall time is due at the gap end for a fixed-time job and skipped for a
wildcard job (minute or hour field starting with "*"), as Debian's cron does; a
repeated wall time is due once, in its first pass, for both kinds of job.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from cronsim import CronSim, CronSimError

from cronwarden.schedule import next_cron_fire, next_every, validate_cron

UTC = timezone.utc
RIGA = ZoneInfo("Europe/Riga")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
TOKYO = ZoneInfo("Asia/Tokyo")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def every(first: datetime, last: datetime, minutes: int) -> list[datetime]:
    """first, first + minutes, ... up to and including last."""
    out = []
    while first <= last:
        out.append(first)
        first += timedelta(minutes=minutes)
    return out


def fires(expr: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Every fire in [start, end), found by chaining next_cron_fire.

    Asserts on the way that each fire is aware UTC and strictly later than the
    previous one, so a list from here never holds duplicates.
    """
    out: list[datetime] = []
    after = start.astimezone(UTC) - timedelta(microseconds=1)
    while True:
        fire = next_cron_fire(expr, tz, after)
        assert fire.tzinfo is UTC
        assert fire > after
        if fire >= end:
            return out
        out.append(fire)
        after = fire


def fires_on_local_days(expr: str, tz: ZoneInfo, first: date, last: date) -> list[datetime]:
    """Every fire from `first` 00:00 to `last` 24:00, wall time of `tz`."""
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    end_day = last + timedelta(days=1)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz)
    return fires(expr, tz, start, end)


# --- daily jobs around the transitions -----------------------------------------

D = date
DAILY_JOBS_AROUND_DST = [
    # Riga spring forward: 03:00-03:59 does not exist on 03-29.
    pytest.param(
        RIGA, "30 3 * * *", D(2026, 3, 28), D(2026, 3, 30),
        [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
        id="riga 03:30 inside the gap fires at 04:00 EEST",
    ),
    pytest.param(
        RIGA, "0 3 * * *", D(2026, 3, 28), D(2026, 3, 30),
        [utc(2026, 3, 28, 1, 0), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 0)],
        id="riga 03:00 at the gap start fires at 04:00 EEST",
    ),
    pytest.param(
        RIGA, "59 3 * * *", D(2026, 3, 28), D(2026, 3, 30),
        [utc(2026, 3, 28, 1, 59), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 59)],
        id="riga 03:59 at the gap end fires at 04:00 EEST",
    ),
    pytest.param(
        RIGA, "0 4 * * *", D(2026, 3, 28), D(2026, 3, 30),
        [utc(2026, 3, 28, 2, 0), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 1, 0)],
        id="riga 04:00 right after the gap is unaffected",
    ),
    pytest.param(
        RIGA, "30 2 * * *", D(2026, 3, 28), D(2026, 3, 30),
        [utc(2026, 3, 28, 0, 30), utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 23, 30)],
        id="riga 02:30 before the gap is unaffected",
    ),
    pytest.param(
        RIGA, "0 12 * * *", D(2026, 3, 28), D(2026, 3, 30),
        [utc(2026, 3, 28, 10, 0), utc(2026, 3, 29, 9, 0), utc(2026, 3, 30, 9, 0)],
        id="riga noon only changes its utc offset",
    ),
    pytest.param(
        RIGA, "0,15,30,45 3 * * *", D(2026, 3, 28), D(2026, 3, 30),
        every(utc(2026, 3, 28, 1, 0), utc(2026, 3, 28, 1, 45), 15)
        + [utc(2026, 3, 29, 1, 0)]
        + every(utc(2026, 3, 30, 0, 0), utc(2026, 3, 30, 0, 45), 15),
        id="riga four fixed-time matches inside the gap collapse into one fire",
    ),
    pytest.param(
        RIGA, "0-59/15 3 * * *", D(2026, 3, 28), D(2026, 3, 30),
        every(utc(2026, 3, 28, 1, 0), utc(2026, 3, 28, 1, 45), 15)
        + [utc(2026, 3, 29, 1, 0)]
        + every(utc(2026, 3, 30, 0, 0), utc(2026, 3, 30, 0, 45), 15),
        id="riga 0-59/15 is a fixed-time job: one fire at the gap end",
    ),
    pytest.param(
        RIGA, "*/15 3 * * *", D(2026, 3, 28), D(2026, 3, 30),
        every(utc(2026, 3, 28, 1, 0), utc(2026, 3, 28, 1, 45), 15)
        + every(utc(2026, 3, 30, 0, 0), utc(2026, 3, 30, 0, 45), 15),
        id="riga wildcard */15 3 has no fire on the day its hour is skipped",
    ),
    pytest.param(
        RIGA, "30 */3 * * *", D(2026, 3, 28), D(2026, 3, 30),
        every(utc(2026, 3, 27, 22, 30), utc(2026, 3, 28, 19, 30), 180)
        + [utc(2026, 3, 28, 22, 30)]  # 00:30 EET; 03:30 does not exist
        + every(utc(2026, 3, 29, 3, 30), utc(2026, 3, 29, 18, 30), 180)  # 06:30 EEST on
        + every(utc(2026, 3, 29, 21, 30), utc(2026, 3, 30, 18, 30), 180),
        id="riga wildcard 30 */3 skips 03:30 inside the gap",
    ),
    pytest.param(
        RIGA, "0,30 3,4 * * *", D(2026, 3, 28), D(2026, 3, 30),
        every(utc(2026, 3, 28, 1, 0), utc(2026, 3, 28, 2, 30), 30)
        + [utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)]
        + every(utc(2026, 3, 30, 0, 0), utc(2026, 3, 30, 1, 30), 30),
        id="riga gap matches and the matching gap end are one fire",
    ),
    # Riga fall back: 03:00-03:59 happens twice on 10-25 (EEST, then EET).
    pytest.param(
        RIGA, "30 3 * * *", D(2026, 10, 24), D(2026, 10, 26),
        [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        id="riga 03:30 in the repeated hour fires at its first occurrence",
    ),
    pytest.param(
        RIGA, "0 3 * * *", D(2026, 10, 24), D(2026, 10, 26),
        [utc(2026, 10, 24, 0, 0), utc(2026, 10, 25, 0, 0), utc(2026, 10, 26, 1, 0)],
        id="riga 03:00 in the repeated hour fires at its first occurrence",
    ),
    pytest.param(
        RIGA, "59 3 * * *", D(2026, 10, 24), D(2026, 10, 26),
        [utc(2026, 10, 24, 0, 59), utc(2026, 10, 25, 0, 59), utc(2026, 10, 26, 1, 59)],
        id="riga 03:59 in the repeated hour fires at its first occurrence",
    ),
    pytest.param(
        RIGA, "*/20 3 * * *", D(2026, 10, 24), D(2026, 10, 26),
        every(utc(2026, 10, 24, 0, 0), utc(2026, 10, 24, 0, 40), 20)
        + every(utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 40), 20)
        + every(utc(2026, 10, 26, 1, 0), utc(2026, 10, 26, 1, 40), 20),
        id="riga every 20 minutes in the repeated hour fires in the first pass only",
    ),
    pytest.param(
        RIGA, "0-59/20 3 * * *", D(2026, 10, 24), D(2026, 10, 26),
        every(utc(2026, 10, 24, 0, 0), utc(2026, 10, 24, 0, 40), 20)
        + every(utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 40), 20)
        + every(utc(2026, 10, 26, 1, 0), utc(2026, 10, 26, 1, 40), 20),
        id="riga the same minutes as a fixed-time job also fire in the first pass only",
    ),
    pytest.param(
        RIGA, "30 2 * * *", D(2026, 10, 24), D(2026, 10, 26),
        [utc(2026, 10, 23, 23, 30), utc(2026, 10, 24, 23, 30), utc(2026, 10, 26, 0, 30)],
        id="riga 02:30 before the repeated hour is unaffected",
    ),
    pytest.param(
        RIGA, "0 4 * * *", D(2026, 10, 24), D(2026, 10, 26),
        [utc(2026, 10, 24, 1, 0), utc(2026, 10, 25, 2, 0), utc(2026, 10, 26, 2, 0)],
        id="riga 04:00 after the repeated hour is unaffected",
    ),
    # New York spring forward: 02:00-02:59 does not exist on 03-08.
    pytest.param(
        NEW_YORK, "30 2 * * *", D(2026, 3, 7), D(2026, 3, 9),
        [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)],
        id="new york 02:30 inside the gap fires at 03:00 EDT",
    ),
    pytest.param(
        NEW_YORK, "0 2 * * *", D(2026, 3, 7), D(2026, 3, 9),
        [utc(2026, 3, 7, 7, 0), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 0)],
        id="new york 02:00 at the gap start fires at 03:00 EDT",
    ),
    pytest.param(
        NEW_YORK, "0 3 * * *", D(2026, 3, 7), D(2026, 3, 9),
        [utc(2026, 3, 7, 8, 0), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 7, 0)],
        id="new york 03:00 right after the gap is unaffected",
    ),
    pytest.param(
        NEW_YORK, "30 1 * * *", D(2026, 3, 7), D(2026, 3, 9),
        [utc(2026, 3, 7, 6, 30), utc(2026, 3, 8, 6, 30), utc(2026, 3, 9, 5, 30)],
        id="new york 01:30 before the gap is unaffected",
    ),
    pytest.param(
        NEW_YORK, "*/30 2 * * *", D(2026, 3, 7), D(2026, 3, 9),
        [utc(2026, 3, 7, 7, 0), utc(2026, 3, 7, 7, 30),
         utc(2026, 3, 9, 6, 0), utc(2026, 3, 9, 6, 30)],
        id="new york wildcard */30 2 has no fire on the day its hour is skipped",
    ),
    pytest.param(
        NEW_YORK, "0 */2 * * *", D(2026, 3, 8), D(2026, 3, 8),
        [utc(2026, 3, 8, 5, 0)]  # 00:00 EST; 02:00 does not exist
        + every(utc(2026, 3, 8, 8, 0), utc(2026, 3, 9, 2, 0), 120),  # 04:00 EDT on
        id="new york wildcard 0 */2 skips 02:00 inside the gap",
    ),
    pytest.param(
        NEW_YORK, "0 0-23/2 * * *", D(2026, 3, 8), D(2026, 3, 8),
        [utc(2026, 3, 8, 5, 0), utc(2026, 3, 8, 7, 0)]  # 02:00 is due at 03:00 EDT
        + every(utc(2026, 3, 8, 8, 0), utc(2026, 3, 9, 2, 0), 120),
        id="new york fixed-time 0 0-23/2 fires 02:00 at the gap end",
    ),
    # New York fall back: 01:00-01:59 happens twice on 11-01 (EDT, then EST).
    pytest.param(
        NEW_YORK, "30 1 * * *", D(2026, 10, 31), D(2026, 11, 2),
        [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        id="new york 01:30 in the repeated hour fires at its first occurrence",
    ),
    pytest.param(
        NEW_YORK, "0 1 * * *", D(2026, 10, 31), D(2026, 11, 2),
        [utc(2026, 10, 31, 5, 0), utc(2026, 11, 1, 5, 0), utc(2026, 11, 2, 6, 0)],
        id="new york 01:00 in the repeated hour fires at its first occurrence",
    ),
    pytest.param(
        NEW_YORK, "*/30 1 * * *", D(2026, 10, 31), D(2026, 11, 2),
        [utc(2026, 10, 31, 5, 0), utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 0),
         utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 0), utc(2026, 11, 2, 6, 30)],
        id="new york wildcard */30 1 fires in the first pass of the repeated hour only",
    ),
    pytest.param(
        NEW_YORK, "0 2 * * *", D(2026, 10, 31), D(2026, 11, 2),
        [utc(2026, 10, 31, 6, 0), utc(2026, 11, 1, 7, 0), utc(2026, 11, 2, 7, 0)],
        id="new york 02:00 after the repeated hour is unaffected",
    ),
    pytest.param(
        NEW_YORK, "30 0 * * *", D(2026, 10, 31), D(2026, 11, 2),
        [utc(2026, 10, 31, 4, 30), utc(2026, 11, 1, 4, 30), utc(2026, 11, 2, 5, 30)],
        id="new york 00:30 before the repeated hour is unaffected",
    ),
    # Lord Howe: half-hour transitions.
    pytest.param(
        LORD_HOWE, "15 2 * * *", D(2026, 10, 3), D(2026, 10, 5),
        [utc(2026, 10, 2, 15, 45), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 15)],
        id="lord howe 02:15 inside the half-hour gap fires at 02:30",
    ),
    pytest.param(
        LORD_HOWE, "*/15 2 * * *", D(2026, 10, 3), D(2026, 10, 5),
        every(utc(2026, 10, 2, 15, 30), utc(2026, 10, 2, 16, 15), 15)  # +10:30
        + [utc(2026, 10, 3, 15, 30), utc(2026, 10, 3, 15, 45)]  # 02:30, 02:45 +11
        + every(utc(2026, 10, 4, 15, 0), utc(2026, 10, 4, 15, 45), 15),
        id="lord howe wildcard */15 2 skips 02:00 and 02:15 but fires at 02:30 and 02:45",
    ),
    pytest.param(
        LORD_HOWE, "45 1 * * *", D(2026, 4, 4), D(2026, 4, 6),
        [utc(2026, 4, 3, 14, 45), utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)],
        id="lord howe 01:45 in the repeated half hour fires at its first occurrence",
    ),
    pytest.param(
        LORD_HOWE, "*/15 1 * * *", D(2026, 4, 4), D(2026, 4, 6),
        every(utc(2026, 4, 3, 14, 0), utc(2026, 4, 3, 14, 45), 15)  # +11
        + every(utc(2026, 4, 4, 14, 0), utc(2026, 4, 4, 14, 45), 15)  # +11, first pass
        + every(utc(2026, 4, 5, 14, 30), utc(2026, 4, 5, 15, 15), 15),  # +10:30
        id="lord howe wildcard */15 1 fires in the first pass of the repeated half hour only",
    ),
]


@pytest.mark.parametrize("tz, expr, first_day, last_day, expected", DAILY_JOBS_AROUND_DST)
def test_daily_jobs_around_dst_transitions_fire_once_per_local_day_at_the_expected_instant(
    tz, expr, first_day, last_day, expected
):
    assert fires_on_local_days(expr, tz, first_day, last_day) == expected


def test_a_daily_job_inside_the_spring_gap_fires_once_at_the_gap_end():
    assert fires_on_local_days("30 3 * * *", RIGA, D(2026, 3, 29), D(2026, 3, 29)) == [
        utc(2026, 3, 29, 1, 0)  # 04:00 EEST, the first instant after 03:00 EET
    ]


def test_a_wildcard_job_inside_the_spring_gap_is_skipped_like_cron_does():
    # The case that raised a false "missed" alarm: cron runs 30 * * * * at
    # 02:30 EET and 04:30 EEST, never at 04:00.
    assert fires("30 * * * *", RIGA, utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 2, 0)) == [
        utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30)]
    # And */15 3 * * * does not run at all on that day.
    assert fires_on_local_days("*/15 3 * * *", RIGA, D(2026, 3, 29), D(2026, 3, 29)) == []


def test_30_3_in_riga_fires_exactly_once_on_the_autumn_transition_day():
    # croniter 7.0.0 with aware datetimes reports both 00:30Z and 01:30Z here.
    assert fires_on_local_days("30 3 * * *", RIGA, D(2026, 10, 25), D(2026, 10, 25)) == [
        utc(2026, 10, 25, 0, 30)  # 03:30 EEST, the first of the two 03:30s
    ]


# --- hourly jobs over a whole DST day --------------------------------------------

# These are all wildcard jobs: in a spring-forward gap their wall times are
# skipped, as cron skips them (a fixed-time job would be due at the gap end).
HOURLY_JOBS_OVER_DST_DAYS = [
    # Riga 2026-03-29 runs from 00:00 EET (03-28 22:00Z) to 24:00 EEST (21:00Z).
    pytest.param(
        RIGA, "0 * * * *", D(2026, 3, 29), 23,
        # 03:00 does not exist and is skipped; 04:00 EEST (01:00Z) exists and
        # fires as usual: hourly in UTC without a hole.
        every(utc(2026, 3, 28, 22), utc(2026, 3, 29, 20), 60),
        id="riga spring 0 * * * *",
    ),
    pytest.param(
        RIGA, "30 * * * *", D(2026, 3, 29), 23,
        every(utc(2026, 3, 28, 22, 30), utc(2026, 3, 29, 0, 30), 60)
        # 03:30 does not exist: skipped, nothing due at 04:00 EEST (01:00Z).
        + every(utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 20, 30), 60),
        id="riga spring 30 * * * *",
    ),
    pytest.param(
        RIGA, "*/15 * * * *", D(2026, 3, 29), 92,
        # 03:00-03:45 are skipped; 04:00 EEST = 01:00Z follows 02:45 EET = 00:45Z.
        every(utc(2026, 3, 28, 22), utc(2026, 3, 29, 20, 45), 15),
        id="riga spring */15 * * * *",
    ),
    pytest.param(
        RIGA, "@hourly", D(2026, 3, 29), 23,
        every(utc(2026, 3, 28, 22), utc(2026, 3, 29, 20), 60),
        id="riga spring @hourly",
    ),
    # Riga 2026-10-25 runs from 00:00 EEST (10-24 21:00Z) to 24:00 EET (22:00Z);
    # the repeated 03:00-03:59 EET is 01:00-01:59Z and fires nothing.
    pytest.param(
        RIGA, "0 * * * *", D(2026, 10, 25), 24,
        every(utc(2026, 10, 24, 21), utc(2026, 10, 25, 0), 60)
        + every(utc(2026, 10, 25, 2), utc(2026, 10, 25, 21), 60),
        id="riga autumn 0 * * * *",
    ),
    pytest.param(
        RIGA, "30 * * * *", D(2026, 10, 25), 24,
        every(utc(2026, 10, 24, 21, 30), utc(2026, 10, 25, 0, 30), 60)
        + every(utc(2026, 10, 25, 2, 30), utc(2026, 10, 25, 21, 30), 60),
        id="riga autumn 30 * * * *",
    ),
    pytest.param(
        RIGA, "*/15 * * * *", D(2026, 10, 25), 96,
        every(utc(2026, 10, 24, 21), utc(2026, 10, 25, 0, 45), 15)
        + every(utc(2026, 10, 25, 2), utc(2026, 10, 25, 21, 45), 15),
        id="riga autumn */15 * * * *",
    ),
    # New York 2026-03-08 runs from 00:00 EST (05:00Z) to 24:00 EDT (03-09 04:00Z).
    pytest.param(
        NEW_YORK, "0 * * * *", D(2026, 3, 8), 23,
        every(utc(2026, 3, 8, 5), utc(2026, 3, 9, 3), 60),
        id="new york spring 0 * * * *",
    ),
    pytest.param(
        NEW_YORK, "30 * * * *", D(2026, 3, 8), 23,
        every(utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 6, 30), 60)
        # 02:30 does not exist: skipped, nothing due at 03:00 EDT (07:00Z).
        + every(utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 3, 30), 60),
        id="new york spring 30 * * * *",
    ),
    pytest.param(
        NEW_YORK, "*/15 * * * *", D(2026, 3, 8), 92,
        every(utc(2026, 3, 8, 5), utc(2026, 3, 9, 3, 45), 15),
        id="new york spring */15 * * * *",
    ),
    # New York 2026-11-01 runs from 00:00 EDT (04:00Z) to 24:00 EST (11-02 05:00Z);
    # the repeated 01:00-01:59 EST is 06:00-06:59Z and fires nothing.
    pytest.param(
        NEW_YORK, "0 * * * *", D(2026, 11, 1), 24,
        every(utc(2026, 11, 1, 4), utc(2026, 11, 1, 5), 60)
        + every(utc(2026, 11, 1, 7), utc(2026, 11, 2, 4), 60),
        id="new york autumn 0 * * * *",
    ),
    pytest.param(
        NEW_YORK, "30 * * * *", D(2026, 11, 1), 24,
        every(utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 5, 30), 60)
        + every(utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 4, 30), 60),
        id="new york autumn 30 * * * *",
    ),
    pytest.param(
        NEW_YORK, "*/15 * * * *", D(2026, 11, 1), 96,
        every(utc(2026, 11, 1, 4), utc(2026, 11, 1, 5, 45), 15)
        + every(utc(2026, 11, 1, 7), utc(2026, 11, 2, 4, 45), 15),
        id="new york autumn */15 * * * *",
    ),
    # Lord Howe 2026-10-04 runs from 00:00 +10:30 (10-03 13:30Z) to 24:00 +11
    # (10-04 13:00Z); 02:00-02:29 does not exist, 02:30 +11 is 10-03 15:30Z.
    pytest.param(
        LORD_HOWE, "0 * * * *", D(2026, 10, 4), 23,
        every(utc(2026, 10, 3, 13, 30), utc(2026, 10, 3, 14, 30), 60)
        # 02:00 does not exist: skipped, nothing due at 02:30 +11 (15:30Z).
        + every(utc(2026, 10, 3, 16), utc(2026, 10, 4, 12), 60),
        id="lord howe spring 0 * * * *",
    ),
    pytest.param(
        LORD_HOWE, "30 * * * *", D(2026, 10, 4), 24,
        # 02:30 exists (the gap's end) and fires as usual.
        every(utc(2026, 10, 3, 14), utc(2026, 10, 3, 15), 60)
        + every(utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 12, 30), 60),
        id="lord howe spring 30 * * * *",
    ),
    pytest.param(
        LORD_HOWE, "*/15 * * * *", D(2026, 10, 4), 94,
        # 02:00 and 02:15 are skipped; 02:30 +11 = 15:30Z follows 01:45 +10:30 = 15:15Z.
        every(utc(2026, 10, 3, 13, 30), utc(2026, 10, 4, 12, 45), 15),
        id="lord howe spring */15 * * * *",
    ),
    # Lord Howe 2026-04-05 runs from 00:00 +11 (04-04 13:00Z) to 24:00 +10:30
    # (04-05 13:30Z); the repeated 01:30-01:59 +10:30 is 15:00-15:29Z and fires nothing.
    pytest.param(
        LORD_HOWE, "*/15 * * * *", D(2026, 4, 5), 96,
        every(utc(2026, 4, 4, 13), utc(2026, 4, 4, 14, 45), 15)
        + every(utc(2026, 4, 4, 15, 30), utc(2026, 4, 5, 13, 15), 15),
        id="lord howe autumn */15 * * * *",
    ),
    pytest.param(
        LORD_HOWE, "45 * * * *", D(2026, 4, 5), 24,
        every(utc(2026, 4, 4, 13, 45), utc(2026, 4, 4, 14, 45), 60)  # +11
        + every(utc(2026, 4, 4, 16, 15), utc(2026, 4, 5, 13, 15), 60),  # +10:30
        id="lord howe autumn 45 * * * *",
    ),
]


@pytest.mark.parametrize("tz, expr, day, count, expected", HOURLY_JOBS_OVER_DST_DAYS)
def test_hourly_jobs_fire_once_per_existing_wall_clock_slot_over_a_dst_day(
    tz, expr, day, count, expected
):
    got = fires_on_local_days(expr, tz, day, day)
    assert len(expected) == count  # the table itself is what the comment says
    assert got == expected
    assert len(set(got)) == len(got)
    assert all(a < b for a, b in zip(got, got[1:]))


# --- "strictly after", in UTC ------------------------------------------------------


@pytest.mark.parametrize(
    "tz, expr, after, expected",
    [
        # `after` in the second pass of Riga's repeated hour (03:10 EET = 01:10Z).
        (RIGA, "30 3 * * *", utc(2026, 10, 25, 1, 10), utc(2026, 10, 26, 1, 30)),
        (RIGA, "*/15 3 * * *", utc(2026, 10, 25, 1, 10), utc(2026, 10, 26, 1, 0)),
        (RIGA, "*/15 * * * *", utc(2026, 10, 25, 1, 10), utc(2026, 10, 25, 2, 0)),
        (RIGA, "0 4 * * *", utc(2026, 10, 25, 1, 10), utc(2026, 10, 25, 2, 0)),
        (RIGA, "* * * * *", utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 2, 0)),
        (RIGA, "* * * * *", utc(2026, 10, 25, 1, 59) + timedelta(seconds=30), utc(2026, 10, 25, 2, 0)),
        # New York's second pass (01:10 EST = 06:10Z).
        (NEW_YORK, "30 1 * * *", utc(2026, 11, 1, 6, 10), utc(2026, 11, 2, 6, 30)),
        (NEW_YORK, "0 * * * *", utc(2026, 11, 1, 6, 10), utc(2026, 11, 1, 7, 0)),
        # Lord Howe's repeated half hour (01:40 +10:30 = 04-04 15:10Z).
        (LORD_HOWE, "45 1 * * *", utc(2026, 4, 4, 15, 10), utc(2026, 4, 5, 15, 15)),
    ],
)
def test_after_inside_the_repeated_hour_never_refires_its_wall_times(tz, expr, after, expected):
    assert next_cron_fire(expr, tz, after) == expected
    # The same instant, given as a local time with fold=1, is the same `after`.
    local = after.astimezone(tz)
    assert local.fold == 1
    assert next_cron_fire(expr, tz, local) == expected


JUST_BEFORE_RIGA_GAP = utc(2026, 3, 29, 0, 59) + timedelta(seconds=59)  # 02:59:59 EET


@pytest.mark.parametrize(
    "expr, after, expected",
    [
        # `after` in the first pass of Riga's repeated hour (03:40 EEST = 00:40Z).
        ("30 3 * * *", utc(2026, 10, 25, 0, 40), utc(2026, 10, 26, 1, 30)),
        ("50 3 * * *", utc(2026, 10, 25, 0, 40), utc(2026, 10, 25, 0, 50)),
        ("0 4 * * *", utc(2026, 10, 25, 0, 40), utc(2026, 10, 25, 2, 0)),
        ("*/15 * * * *", utc(2026, 10, 25, 0, 40), utc(2026, 10, 25, 0, 45)),
        # `after` exactly at the end of Riga's spring gap (04:00 EEST = 01:00Z).
        ("*/15 3 * * *", utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 0)),
        ("0 4 * * *", utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 1, 0)),
        ("0 * * * *", utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0)),
        # `after` just before the gap: a fixed-time job is due at its end, a
        # wildcard job's gap times are skipped.
        ("0,15,30,45 3 * * *", JUST_BEFORE_RIGA_GAP, utc(2026, 3, 29, 1, 0)),
        ("*/15 3 * * *", JUST_BEFORE_RIGA_GAP, utc(2026, 3, 30, 0, 0)),
        ("30 * * * *", JUST_BEFORE_RIGA_GAP, utc(2026, 3, 29, 1, 30)),
        ("* * * * *", JUST_BEFORE_RIGA_GAP, utc(2026, 3, 29, 1, 0)),
        ("*/7 3,4 * * *", utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1, 0)),
        ("*/7 3,5 * * *", utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 2, 0)),
    ],
)
def test_the_next_fire_around_riga_transitions_is_the_first_instant_strictly_after(
    expr, after, expected
):
    assert next_cron_fire(expr, RIGA, after) == expected


# The wall time 03:30 on Riga's spring-forward day does not exist: which job is a
# wildcard job is decided by the text of the minute and hour fields alone.
@pytest.mark.parametrize(
    "expr, expected",
    [
        ("30 3 * * *", utc(2026, 3, 29, 1, 0)),  # fixed-time: due at the gap end
        ("0-59/30 3 * * *", utc(2026, 3, 29, 1, 0)),
        ("0/30 3 * * *", utc(2026, 3, 29, 1, 0)),
        ("30 3 */1 * *", utc(2026, 3, 29, 1, 0)),  # day fields do not count
        ("30 0-23 * * *", utc(2026, 3, 29, 1, 0)),
        ("30 3-4 * * *", utc(2026, 3, 29, 1, 0)),  # gap end and 04:30 are two fires
        ("*/30 3 * * *", utc(2026, 3, 30, 0, 0)),  # minute starts with "*": skipped
        ("*/30 3,4 * * *", utc(2026, 3, 29, 1, 0)),  # ... but 04:00 exists
        ("30 * * * *", utc(2026, 3, 29, 1, 30)),  # hour starts with "*": skipped
        ("30 */1 * * *", utc(2026, 3, 29, 1, 30)),
        ("30 */3 * * *", utc(2026, 3, 29, 3, 30)),  # next is 06:30 EEST
    ],
)
def test_wildcard_jobs_are_the_ones_whose_minute_or_hour_field_starts_with_a_star(
    expr, expected
):
    after = utc(2026, 3, 29, 0, 40)  # 02:40 EET
    assert next_cron_fire(expr, RIGA, after) == expected


@pytest.mark.parametrize(
    "expr, after, expected",
    [
        # Lord Howe's gap is 02:00-02:29 on 2026-10-04; 02:30 +11 = 10-03 15:30Z.
        ("0 * * * *", utc(2026, 10, 3, 15, 0), utc(2026, 10, 3, 16, 0)),
        ("@hourly", utc(2026, 10, 3, 15, 0), utc(2026, 10, 3, 16, 0)),
        ("0 0-23 * * *", utc(2026, 10, 3, 15, 0), utc(2026, 10, 3, 15, 30)),
        ("10,40 * * * *", utc(2026, 10, 3, 15, 11), utc(2026, 10, 3, 15, 40)),
        ("10,40 0-23 * * *", utc(2026, 10, 3, 15, 11), utc(2026, 10, 3, 15, 30)),
        ("*/15 * * * *", utc(2026, 10, 3, 15, 15), utc(2026, 10, 3, 15, 30)),
        ("* * * * *", utc(2026, 10, 3, 15, 29) + timedelta(seconds=59), utc(2026, 10, 3, 15, 30)),
        ("*/20 2 * * *", utc(2026, 10, 3, 15, 0), utc(2026, 10, 3, 15, 40)),
    ],
)
def test_wildcard_jobs_in_lord_howes_half_hour_gap_resume_at_its_end(expr, after, expected):
    assert next_cron_fire(expr, LORD_HOWE, after) == expected


def test_a_fire_time_given_as_after_is_not_returned_again():
    fire = next_cron_fire("30 3 * * *", RIGA, utc(2026, 10, 24, 12))
    assert fire == utc(2026, 10, 25, 0, 30)
    assert next_cron_fire("30 3 * * *", RIGA, fire) == utc(2026, 10, 26, 1, 30)
    assert next_cron_fire("30 3 * * *", RIGA, fire - timedelta(microseconds=1)) == fire


def test_after_may_be_given_in_any_zone_and_the_result_is_always_utc():
    instant = utc(2026, 6, 15, 12, 34) + timedelta(seconds=56)
    expected = utc(2026, 6, 16, 0, 0)  # 09:00 JST
    for zone in [UTC, TOKYO, RIGA, NEW_YORK, timezone(timedelta(hours=-3, minutes=-30))]:
        result = next_cron_fire("0 9 * * *", TOKYO, instant.astimezone(zone))
        assert result == expected
        assert result.tzinfo is UTC


def test_seconds_and_microseconds_of_after_are_respected():
    assert next_cron_fire("* * * * *", UTC, utc(2026, 1, 1, 0, 0)) == utc(2026, 1, 1, 0, 1)
    half_past = utc(2026, 1, 1, 0, 0) + timedelta(seconds=30, microseconds=5)
    assert next_cron_fire("* * * * *", UTC, half_past) == utc(2026, 1, 1, 0, 1)


def test_a_naive_after_is_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_cron_fire("* * * * *", UTC, datetime(2026, 1, 1))


def test_an_invalid_expression_raises_value_error_with_the_validation_reason():
    with pytest.raises(ValueError) as excinfo:
        next_cron_fire("61 * * * *", UTC, utc(2026, 1, 1))
    assert str(excinfo.value) == validate_cron("61 * * * *")


# --- sanity in zones without DST ---------------------------------------------------


@pytest.mark.parametrize(
    "tz, expr, after, expected",
    [
        (ZoneInfo("UTC"), "0 0 * * *", utc(2026, 6, 15, 12), utc(2026, 6, 16)),
        (ZoneInfo("UTC"), "*/10 * * * *", utc(2026, 6, 15, 12, 5), utc(2026, 6, 15, 12, 10)),
        (ZoneInfo("UTC"), "0 0 1 1 *", utc(2026, 12, 31, 23, 59), utc(2027, 1, 1)),
        (UTC, "59 23 31 12 *", utc(2026, 1, 1), utc(2026, 12, 31, 23, 59)),
        (TOKYO, "0 9 * * *", utc(2026, 6, 15, 12), utc(2026, 6, 16, 0)),
        (TOKYO, "0 0 * * *", utc(2026, 6, 15, 12), utc(2026, 6, 15, 15)),
        # Riga's and New York's transition days mean nothing in Tokyo.
        (TOKYO, "30 3 * * *", utc(2026, 3, 28, 12), utc(2026, 3, 28, 18, 30)),
        (TOKYO, "30 3 * * *", utc(2026, 10, 24, 12), utc(2026, 10, 24, 18, 30)),
        (TOKYO, "30 2 * * *", utc(2026, 3, 7, 12), utc(2026, 3, 7, 17, 30)),
    ],
)
def test_zones_without_dst_fire_at_a_fixed_offset_from_utc(tz, expr, after, expected):
    assert next_cron_fire(expr, tz, after) == expected


def test_a_job_every_minute_fires_every_minute_across_a_day_in_tokyo():
    got = fires("* * * * *", TOKYO, utc(2026, 3, 28, 15), utc(2026, 3, 29, 15))
    assert got == every(utc(2026, 3, 28, 15), utc(2026, 3, 29, 14, 59), 1)


# --- day of week, day of month, months ---------------------------------------------

# June 2026 starts on a Monday.
@pytest.mark.parametrize(
    "expr, expected",
    [
        ("0 9 * * 1-5", [utc(2026, 6, 1, 9), utc(2026, 6, 2, 9), utc(2026, 6, 3, 9),
                         utc(2026, 6, 4, 9), utc(2026, 6, 5, 9), utc(2026, 6, 8, 9)]),
        ("0 9 * * mon-fri", [utc(2026, 6, 1, 9), utc(2026, 6, 2, 9), utc(2026, 6, 3, 9),
                             utc(2026, 6, 4, 9), utc(2026, 6, 5, 9), utc(2026, 6, 8, 9)]),
        ("0 0 * * 0", [utc(2026, 6, 7), utc(2026, 6, 14), utc(2026, 6, 21)]),
        ("0 0 * * 7", [utc(2026, 6, 7), utc(2026, 6, 14), utc(2026, 6, 21)]),
        ("0 0 * * SUN", [utc(2026, 6, 7), utc(2026, 6, 14), utc(2026, 6, 21)]),
        ("0 0 * * 5-7", [utc(2026, 6, 5), utc(2026, 6, 6), utc(2026, 6, 7), utc(2026, 6, 12)]),
        ("0 0 * * */2", [utc(2026, 6, 2), utc(2026, 6, 4), utc(2026, 6, 6), utc(2026, 6, 7)]),
        ("0 0 1,15 * *", [utc(2026, 6, 15), utc(2026, 7, 1), utc(2026, 7, 15)]),
        # Day 31 only exists in long months.
        ("0 0 31 * *", [utc(2026, 7, 31), utc(2026, 8, 31), utc(2026, 10, 31)]),
        ("0 0 1 jan,Jul *", [utc(2026, 7, 1), utc(2027, 1, 1), utc(2027, 7, 1)]),
        ("0 0 29 2 *", [utc(2028, 2, 29), utc(2032, 2, 29)]),
        # Both day fields restricted: cron fires when EITHER matches (13th or Fridays).
        ("0 0 13 * 5", [utc(2026, 6, 5), utc(2026, 6, 12), utc(2026, 6, 13),
                        utc(2026, 6, 19), utc(2026, 6, 26), utc(2026, 7, 3)]),
        ("0 0 1-3 * mon", [utc(2026, 6, 2), utc(2026, 6, 3), utc(2026, 6, 8), utc(2026, 6, 15)]),
        # A day field starting with "*" makes cron require BOTH (odd days that are Mondays).
        ("0 0 */2 * 1", [utc(2026, 6, 15), utc(2026, 6, 29), utc(2026, 7, 13), utc(2026, 7, 27)]),
        ("0 0 1 * */7", [utc(2026, 11, 1), utc(2027, 8, 1), utc(2028, 10, 1)]),
        ("30 8-10/2 * * *", [utc(2026, 6, 1, 8, 30), utc(2026, 6, 1, 10, 30), utc(2026, 6, 2, 8, 30)]),
        ("45/5 * * * *", [utc(2026, 6, 1, 0, 45), utc(2026, 6, 1, 0, 50), utc(2026, 6, 1, 0, 55),
                          utc(2026, 6, 1, 1, 45)]),
        ("5-5 * * * *", [utc(2026, 6, 1, 0, 5), utc(2026, 6, 1, 1, 5)]),
    ],
)
def test_day_of_week_day_of_month_and_month_fields_follow_cron(expr, expected):
    after = utc(2026, 6, 1)  # a Monday; a fire exactly then is not "after"
    got = []
    for _ in expected:
        after = next_cron_fire(expr, UTC, after)
        got.append(after)
    assert got == expected


# --- macros -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "macro, equivalent",
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        (" @Daily ", "0 0 * * *"),
    ],
)
def test_macros_are_accepted_and_fire_like_their_five_field_form(macro, equivalent):
    assert validate_cron(macro) is None
    for tz in [UTC, RIGA, NEW_YORK]:
        for after in [utc(2026, 3, 28, 23, 17), utc(2026, 10, 24, 22), utc(2026, 12, 31, 22)]:
            assert next_cron_fire(macro, tz, after) == next_cron_fire(equivalent, tz, after)


def test_the_hourly_macro_fires_at_the_top_of_every_hour():
    assert next_cron_fire("@hourly", UTC, utc(2026, 6, 1, 10, 59)) == utc(2026, 6, 1, 11)


# --- validate_cron ------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "* * * * *",
        "0 0 * * *",
        "*/5 * * * *",
        "0 9-17/2 * * mon-fri",
        "15,45 * 1,15 * *",
        "0 0 * JAN,Jul *",
        "0 0 * * 7",
        "0 0 * * 0-7",
        "5/10 * * * *",
        "59 23 31 12 *",
        "0 0 29 2 *",
        "0 0 30 1-2 *",
        "0 0 31 2 mon",  # never the 31st, but every Monday in February
        "00 09 * * *",
        "0\t0 * * *",
        "  0 0 * * *\n",
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
    ],
)
def test_validate_cron_accepts_five_field_expressions_and_macros(expr):
    assert validate_cron(expr) is None


def test_validate_cron_gives_the_field_and_range_for_an_out_of_range_value():
    assert (
        validate_cron("61 * * * *")
        == "bad cron expression '61 * * * *': minute 61 out of range 0-59"
    )


@pytest.mark.parametrize(
    "expr, fragment",
    [
        ("* 24 * * *", "hour 24 out of range 0-23"),
        ("* * 0 * *", "day-of-month 0 out of range 1-31"),
        ("* * 32 * *", "day-of-month 32 out of range 1-31"),
        ("* * * 0 *", "month 0 out of range 1-12"),
        ("* * * 13 *", "month 13 out of range 1-12"),
        ("* * * * 8", "day-of-week 8 out of range 0-7"),
        ("0-60 * * * *", "minute 60 out of range 0-59"),
        ("", "expected 5 fields (minute hour day-of-month month day-of-week), got 0"),
        ("   ", "got 0"),
        ("* * * *", "got 4"),
        ("0 * * * * *", "got 6"),
        ("0 0 0 * * * 2026", "got 7"),
        ("0 0 * * * /usr/bin/backup", "got 6"),
        ("@reboot", "@reboot has no schedule"),
        ("@every 5m", "unknown macro"),
        ("@weekdays", "unknown macro"),
        ("a * * * *", "minute 'a' is not a number"),
        ("* * * foo *", "month 'foo' is not a number or name"),
        ("* * * * funday", "day-of-week 'funday' is not a number or name"),
        ("* mon * * *", "hour 'mon' is not a number"),
        ("hello world", "got 2"),
        ("*/0 * * * *", "minute step in '*/0' must be at least 1"),
        ("*/x * * * *", "minute step 'x'"),
        ("*/ * * * *", "minute step ''"),
        ("5-1 * * * *", "minute range '5-1' is backwards"),
        ("0 0 * * sat-sun", "day-of-week range 'sat-sun' is backwards"),
        ("1,,2 * * * *", "empty list item"),
        ("1, * * * *", "empty list item"),
        ("1- * * * *", "minute '1-' is missing a number"),
        ("-1 * * * *", "minute '-1' is missing a number"),
        ("1-2-3 * * * *", "minute '2-3' is not a number"),
        ("0 0 31 2 *", "never fires: day-of-month 31 does not occur in month 2"),
        ("0 0 30,31 feb *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        # Extensions of other cron dialects that Vixie/Debian cron rejects.
        ("0 0 L * *", "day-of-month 'L' is not a number"),
        ("0 0 15W * *", "day-of-month '15W' is not a number"),
        ("0 0 ? * *", "day-of-month '?' is not a number"),
        ("0 0 * * 5#2", "day-of-week '5#2' is not a number or name"),
        ("0 0 * * 5L", "day-of-week '5L' is not a number or name"),
        ("H * * * *", "minute 'H' is not a number"),
        ("\u0663 * * * *", "is not a number"),  # ARABIC-INDIC DIGIT THREE
        ("1\u00a02 * * * *", "is not a number"),  # no-break space separates nothing
    ],
)
def test_validate_cron_rejects_bad_expressions_with_a_one_line_reason(expr, fragment):
    reason = validate_cron(expr)
    assert isinstance(reason, str)
    assert reason.startswith(f"bad cron expression {expr!r}: ")
    assert fragment in reason
    assert "\n" not in reason
    with pytest.raises(ValueError) as excinfo:
        next_cron_fire(expr, UTC, utc(2026, 1, 1))
    assert str(excinfo.value) == reason


@pytest.mark.parametrize("value", [None, 5, 1.5, b"* * * * *", ["* * * * *"], object()])
def test_validate_cron_never_raises_for_values_that_are_not_strings(value):
    reason = validate_cron(value)  # type: ignore[arg-type]
    assert isinstance(reason, str)
    assert reason.startswith("bad cron expression ")
    assert "\n" not in reason


def test_validate_cron_never_raises_for_random_text_and_agrees_with_next_cron_fire():
    rng = random.Random(1961)
    alphabet = "0123456789*/,- \t@LW#?HmonjaSUNfebx\u00a0\u0663\n"
    for _ in range(1500):
        expr = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        reason = validate_cron(expr)
        if reason is None:
            assert next_cron_fire(expr, RIGA, utc(2026, 1, 1)) > utc(2026, 1, 1)
        else:
            assert "\n" not in reason
            with pytest.raises(ValueError):
                next_cron_fire(expr, RIGA, utc(2026, 1, 1))


# --- next_every -------------------------------------------------------------------


def test_next_every_adds_the_period_to_the_last_run():
    result = next_every(utc(2026, 6, 1, 12), 90)
    assert result == utc(2026, 6, 1, 12, 1) + timedelta(seconds=30)
    assert result.tzinfo is UTC


def test_next_every_counts_elapsed_time_across_a_dst_change():
    last = datetime(2026, 3, 29, 2, 30, tzinfo=RIGA)  # 00:30Z, half an hour before the jump
    result = next_every(last, 3600)
    assert result == utc(2026, 3, 29, 1, 30)  # 04:30 EEST, not the wall-clock 03:30
    assert result.tzinfo is UTC


def test_next_every_rejects_a_naive_time_and_a_period_below_one_second():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_every(datetime(2026, 1, 1), 60)
    with pytest.raises(ValueError, match="at least 1 second"):
        next_every(utc(2026, 1, 1), 0)


# --- independent oracles: cronsim and croniter --------------------------------------

ORACLE_ZONES = [
    "UTC",
    "Europe/Riga",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Europe/London",
    "America/Sao_Paulo",
]
MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def random_field(rng, low, high, *, star_weight, bias=(), names=None, value_step=True):
    """One random cron field in the syntax shared by cron, cronsim and croniter."""

    def value(lo=low, hi=high):
        if bias and rng.random() < 0.5:
            candidates = [b for b in bias if lo <= b <= hi]
            if candidates:
                return rng.choice(candidates)
        return rng.randint(lo, hi)

    def text(v):
        if names and v - low < len(names) and rng.random() < 0.3:
            return names[v - low] if rng.random() < 0.5 else names[v - low].upper()
        return str(v)

    def step():
        return rng.randint(2, max(2, (high - low) // 2))

    def term():
        kind = rng.choice(["a", "a", "a-b", "a-b/k"])
        if kind == "a":
            return text(value())
        first = value(low, high - 1)
        last = value(first + 1, high)
        suffix = f"/{step()}" if kind == "a-b/k" else ""
        return f"{text(first)}-{text(last)}{suffix}"

    kinds = ["*", "*/k", "term", "list"] + (["a/k"] if value_step else [])
    weights = [star_weight, 2, 6, 2] + ([1] if value_step else [])
    kind = rng.choices(kinds, weights)[0]
    if kind == "*":
        return "*"
    if kind == "*/k":
        return f"*/{step()}"
    if kind == "a/k":
        return f"{text(value())}/{step()}"
    if kind == "list":
        return ",".join(term() for _ in range(rng.randint(2, 3)))
    return term()


def random_expression(rng, *, croniter_safe=False, hour_field=None, day_star_weight=12):
    return " ".join(
        [
            random_field(rng, 0, 59, star_weight=2, bias=(0, 15, 30, 45, 59)),
            # Hours where the transitions of the oracle zones happen come up often.
            hour_field or random_field(rng, 0, 23, star_weight=3, bias=(0, 1, 2, 3, 4)),
            random_field(rng, 1, 31, star_weight=day_star_weight, bias=(1, 28, 29, 30, 31)),
            random_field(rng, 1, 12, star_weight=day_star_weight, names=MONTH_NAMES),
            # croniter's day-of-week runs 0-6 and reads "a/k" up to 6 where cron
            # and cronsim go up to 7 (Sunday again), so keep it out of 7 there.
            random_field(
                rng, 0, 6 if croniter_safe else 7, star_weight=day_star_weight,
                names=DOW_NAMES, value_step=not croniter_safe,
            ),
        ]
    )


# Local hours around the gap / repeated period of the zones that have DST.
DST_HOURS = {
    "Europe/Riga": (2, 3, 4),
    "America/New_York": (0, 1, 2, 3),
    "Europe/London": (0, 1, 2),
    "Australia/Lord_Howe": (1, 2, 3),
}


def random_case(rng) -> tuple[str, str, bool]:
    """(zone, expression, near_transition): half of the cases aim at the DST rules.

    Those use a zone with DST, an hour field that covers the zone's transition
    hours, mostly "*" day fields, and (see random_start) a start near a transition.
    """
    if rng.random() < 0.5:
        zone = rng.choice(sorted(DST_HOURS))
        hours = DST_HOURS[zone]
        hour_field = rng.choice(
            [
                "*",
                f"*/{rng.randint(2, 3)}",
                str(rng.choice(hours)),
                str(rng.choice(hours)),
                f"{hours[0]}-{hours[-1]}",
                ",".join(str(h) for h in sorted(rng.sample(hours, 2))),
            ]
        )
        expr = random_expression(rng, hour_field=hour_field, day_star_weight=60)
        return zone, expr, True
    return rng.choice(ORACLE_ZONES), random_expression(rng), rng.random() < 0.5


@lru_cache(maxsize=None)
def transitions(zone: str) -> tuple[tuple[datetime, timedelta, timedelta], ...]:
    """(instant, offset before, offset after) of each UTC-offset change, 2024-2028."""
    tz = ZoneInfo(zone)
    found = []
    step = timedelta(hours=3)
    t = utc(2024, 6, 1)
    offset = t.astimezone(tz).utcoffset()
    while t < utc(2028, 6, 1):
        nxt = t + step
        new_offset = nxt.astimezone(tz).utcoffset()
        if new_offset != offset:
            lo, hi = 0, int(step.total_seconds())  # bisect to the second
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if (t + timedelta(seconds=mid)).astimezone(tz).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            found.append((t + timedelta(seconds=hi), offset, new_offset))
            offset = new_offset
        t = nxt
    return tuple(found)


def random_start(rng, zone: str, near_transition: bool) -> datetime:
    """A start in 2025-2027; if asked, from 8 hours before to 2 hours after a transition."""
    nearby = [t for t, _, _ in transitions(zone) if utc(2025, 1, 2) <= t < utc(2027, 12, 30)]
    if nearby and near_transition:
        start = rng.choice(nearby) + timedelta(seconds=rng.randint(-8 * 3600, 2 * 3600))
    else:
        start = utc(2025, 1, 1) + timedelta(seconds=rng.randrange(3 * 365 * 86400))
    if rng.random() < 0.5:
        start = start.replace(second=0)
    return start.astimezone(ZoneInfo(zone))


def is_repeated_wall_time(instant: datetime, tz: ZoneInfo) -> bool:
    """True when `instant` is the second occurrence of an ambiguous wall time."""
    return instant.astimezone(tz).fold == 1


def is_wildcard(expr: str) -> bool:
    """Cron's wildcard job: the minute or the hour field starts with "*"."""
    minute, hour = expr.split()[:2]
    return minute.startswith("*") or hour.startswith("*")


def expected_from_cronsim(expr: str, tz: ZoneInfo, start: datetime, count: int):
    """The first `count` fires after `start` under OUR semantics, derived from cronsim.

    cronsim mimics Debian cron (see the test right below), as we do, in all but
    one respect: it fires wildcard jobs (minute or hour field starts with "*")
    in both passes of a repeated hour, and we expect the first pass only.  So
    its second-pass fires of wildcard jobs are dropped here.  Everything else is
    taken as cronsim gives it -- in particular the gap handling of both kinds
    of job -- except that, started in the second pass of a repeated hour, it
    returns the first-pass fires of a fixed-time job for the rest of that hour,
    which lie BEFORE `start`; we drop those too (we never return a time <= after).
    """
    wildcard = is_wildcard(expr)
    it = CronSim(expr, start)
    kept: list[datetime] = []
    pulled = 0
    while len(kept) < count:
        fire = next(it).astimezone(UTC)
        pulled += 1
        assert pulled < 500, "cronsim oracle did not converge"
        if fire <= start:
            assert not wildcard and is_repeated_wall_time(start, tz)
            continue
        if wildcard and is_repeated_wall_time(fire, tz):
            continue
        kept.append(fire)
    return kept


def test_cronsim_treats_fixed_time_jobs_and_wildcard_jobs_in_a_gap_like_us():
    """Pins the cronsim behaviour that expected_from_cronsim() relies on."""

    def cronsim_fires(expr, start, n):
        it = CronSim(expr, start.astimezone(RIGA))
        return [next(it).astimezone(UTC) for _ in range(n)]

    def our_fires(expr, start, n):
        out, after = [], start
        for _ in range(n):
            after = next_cron_fire(expr, RIGA, after)
            out.append(after)
        return out

    # Fixed-time job: one fire at the gap end, one at the first occurrence -- as ours.
    for expr, start, expected in [
        ("30 3 * * *", utc(2026, 3, 28, 12), [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]),
        ("30 3 * * *", utc(2026, 10, 24, 12), [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]),
        # Wildcard jobs: gap times are skipped -- as ours.
        ("*/15 3 * * *", utc(2026, 3, 28, 12), [utc(2026, 3, 30, 0, 0), utc(2026, 3, 30, 0, 15)]),
        ("30 * * * *", utc(2026, 3, 29, 0, 0), [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30)]),
        ("0 * * * *", utc(2026, 3, 29, 0, 30), [utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0)]),
    ]:
        assert cronsim_fires(expr, start, 2) == expected, expr
        assert our_fires(expr, start, 2) == expected, expr
    # Started in the second pass, cronsim returns first-pass times before the start.
    assert cronsim_fires("58-59 3 * * *", utc(2026, 10, 25, 1, 57), 3) == [
        utc(2026, 10, 25, 0, 58), utc(2026, 10, 25, 0, 59), utc(2026, 10, 26, 1, 58)]
    assert next_cron_fire("58-59 3 * * *", RIGA, utc(2026, 10, 25, 1, 57)) == utc(2026, 10, 26, 1, 58)
    # Wildcard jobs fire again in the repeated hour -- we expect the first pass only.
    assert cronsim_fires("30 * * * *", utc(2026, 10, 25, 0, 0), 3) == [
        utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 30)]
    assert our_fires("30 * * * *", utc(2026, 10, 25, 0, 0), 2) == [
        utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 30)]


def test_cronsim_loses_minutes_of_wildcard_jobs_after_a_half_hour_transition():
    """Pins a cronsim 2.8 bug that the random comparison has to step around.

    For wildcard jobs cronsim steps hour by hour in real time; across Lord Howe's
    30-minute shift those steps land on :30, so the minutes before :30 of the
    first matching hour after the transition are skipped (09:00 and 09:24 here).
    """
    start = datetime(2026, 10, 4, 0, 10, tzinfo=LORD_HOWE)  # the spring-forward day
    assert next(CronSim("*/24 9 * * *", start)) == datetime(2026, 10, 4, 9, 48, tzinfo=LORD_HOWE)
    assert next_cron_fire("*/24 9 * * *", LORD_HOWE, start) == datetime(
        2026, 10, 4, 9, 0, tzinfo=LORD_HOWE
    )


def transitions_are_whole_hours(zone: str) -> bool:
    return all(
        (after - before) % timedelta(hours=1) == timedelta(0)
        for _, before, after in transitions(zone)
    )


def gaps_with_a_match(expr: str, zone: str, start: datetime, end: datetime) -> int:
    """How many spring-forward gaps in (start, end] hold a wall time matching `expr`.

    Matches plain naive wall time with cronsim, so this counts the gaps in which
    a wildcard job had wall times to skip.
    """
    count = 0
    for instant, before, after in transitions(zone):
        if after > before and start < instant <= end:
            gap_start = (instant + before).replace(tzinfo=None)
            gap_end = (instant + after).replace(tzinfo=None)
            if next(CronSim(expr, gap_start - timedelta(seconds=1))) < gap_end:
                count += 1
    return count


def compare_random_expressions_with_cronsim(seed: int) -> dict[str, int]:
    """Asserts agreement with cronsim on 300 random cases; returns what was covered."""
    rng = random.Random(seed)
    compared = rejected = across_transitions = gap_end_fires = first_pass_fires = 0
    cronsim_bug_skipped = wildcard_gap_skips = 0
    for _ in range(300):
        zone, expr, near_transition = random_case(rng)
        tz = ZoneInfo(zone)
        start = random_start(rng, zone, near_transition)
        try:
            CronSim(expr, start)
        except CronSimError:
            # Invalid for cronsim (e.g. "0 0 30 2 *"): must be invalid for us too.
            assert validate_cron(expr) is not None, expr
            rejected += 1
            continue
        assert validate_cron(expr) is None, expr

        expected = expected_from_cronsim(expr, tz, start, 5)
        got, after = [], start if rng.random() < 0.5 else start.astimezone(UTC)
        for _ in range(5):
            after = next_cron_fire(expr, tz, after)
            got.append(after)
        crosses = any(start < t <= max(got[-1], expected[-1]) for t, _, _ in transitions(zone))
        wildcard = is_wildcard(expr)
        near = any(start - timedelta(hours=3) < t <= got[-1] for t, _, _ in transitions(zone))
        if got != expected and wildcard and near and not transitions_are_whole_hours(zone):
            # cronsim's bug pinned in the test above (its hour steps fall out of
            # step across a half-hour transition, also when it starts shortly
            # after one) makes it unusable as an oracle here.  Skip, but only
            # after checking the bug's signature: cronsim lost fires we have, it
            # never has a fire we lack.
            assert set(expected) - set(got) <= {e for e in expected if e > got[-1]}, expr
            cronsim_bug_skipped += 1
            continue
        assert got == expected, f"{expr!r} in {zone} after {start.isoformat()}"

        compared += 1
        if crosses:
            across_transitions += 1
        gaps = [(t, before, after_) for t, before, after_ in transitions(zone) if after_ > before]
        # Gap-end fires: fixed-time jobs caught up (or a wildcard job matching
        # the first wall time after the gap).
        gap_end_fires += sum(fire in {t for t, _, _ in gaps} for fire in got)
        first_pass_fires += sum(
            fire.astimezone(tz).replace(fold=1).utcoffset() != fire.astimezone(tz).utcoffset()
            for fire in got
        )
        if wildcard:
            wildcard_gap_skips += gaps_with_a_match(expr, zone, start, got[-1])

    return dict(
        compared=compared, rejected=rejected, cronsim_bug_skipped=cronsim_bug_skipped,
        across_transitions=across_transitions, gap_end_fires=gap_end_fires,
        first_pass_fires=first_pass_fires, wildcard_gap_skips=wildcard_gap_skips,
    )


def test_random_expressions_agree_with_cronsim_as_an_independent_oracle():
    summary = compare_random_expressions_with_cronsim(20260329)
    # The comparison must not be vacuous: most cases compared, and many of them
    # exercising the DST rules themselves, for both kinds of job.
    # (Over 40 other seeds: compared >= 293, skipped <= 6, across >= 111,
    # gap-end fires >= 7, first-pass fires >= 15, wildcard gap skips >= 2;
    # test_random_wildcard_jobs_skip_spring_gaps_like_cronsim aims at those.)
    assert summary["compared"] >= 280 and summary["cronsim_bug_skipped"] <= 15, summary
    assert summary["across_transitions"] >= 80, summary
    assert summary["gap_end_fires"] >= 5, summary
    assert summary["first_pass_fires"] >= 5, summary
    assert summary["wildcard_gap_skips"] >= 2, summary


def compare_wildcard_jobs_before_spring_gaps_with_cronsim(seed: int) -> dict[str, int]:
    """Asserts agreement with cronsim for 150 wildcard jobs started up to 2 hours
    before a spring-forward gap; returns what was covered.

    Lord Howe is left out: cronsim's bug pinned above hits exactly these cases
    there (the tables above cover its half-hour gap).
    """
    rng = random.Random(seed)
    compared = gap_skips = 0
    for _ in range(150):
        zone = rng.choice(["America/New_York", "Europe/London", "Europe/Riga"])
        tz = ZoneInfo(zone)
        gap, before, _ = rng.choice(
            [(t, before, after) for t, before, after in transitions(zone)
             if after > before and utc(2025, 1, 2) <= t < utc(2027, 12, 30)]
        )
        start = (gap - timedelta(seconds=rng.randint(1, 2 * 3600))).astimezone(tz)
        gap_hour = (gap + before).hour  # the wall hour that does not exist
        if rng.random() < 0.5:  # a wildcard minute field, mostly in the gap's hour
            minute = rng.choice(["*", f"*/{rng.randint(2, 30)}", f"*/{rng.randint(2, 30)}"])
            hour = rng.choice(
                [str(gap_hour)] * 3 + [f"{gap_hour - 1}-{gap_hour + 1}", "*", str(gap_hour + 1)]
            )
        else:  # a wildcard hour field
            minute = random_field(rng, 0, 59, star_weight=0, bias=(0, 15, 30, 45, 59))
            hour = rng.choice(["*", "*", f"*/{rng.randint(2, 4)}"])
        days = " ".join(
            random_field(rng, low, high, star_weight=150)
            for low, high in [(1, 31), (1, 12), (0, 7)]
        )
        expr = f"{minute} {hour} {days}"
        assert is_wildcard(expr)
        try:
            CronSim(expr, start)
        except CronSimError:
            assert validate_cron(expr) is not None, expr
            continue
        expected = expected_from_cronsim(expr, tz, start, 5)
        got, after = [], start
        for _ in range(5):
            after = next_cron_fire(expr, tz, after)
            got.append(after)
        assert got == expected, f"{expr!r} in {zone} after {start.isoformat()}"
        compared += 1
        gap_skips += gaps_with_a_match(expr, zone, start, got[-1])
    return dict(compared=compared, gap_skips=gap_skips)


def test_random_wildcard_jobs_skip_spring_gaps_like_cronsim():
    summary = compare_wildcard_jobs_before_spring_gaps_with_cronsim(329)
    # (Over 40 other seeds: compared = 150, gap skips >= 59.)
    assert summary["compared"] >= 145, summary
    assert summary["gap_skips"] >= 45, summary


@lru_cache(maxsize=None)
def real_minutes_of_a_local_day(tz: ZoneInfo, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """(instant, naive wall time) of each real minute of local `day`, minus the
    second pass of a repeated period."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    next_day = day + timedelta(days=1)
    end = datetime(next_day.year, next_day.month, next_day.day, tzinfo=tz).astimezone(UTC)
    out, t = [], start
    while t < end:
        if not is_repeated_wall_time(t, tz):
            out.append((t, t.astimezone(tz).replace(tzinfo=None)))
        t += timedelta(minutes=1)
    return tuple(out)


def real_time_fires_of_a_wildcard_job(expr: str, tz: ZoneInfo, day: date) -> list[datetime]:
    """Debian cron's runs of a wildcard job on local `day`, first pass only, by brute force.

    Cron reads the wall clock once a real minute and runs a wildcard job when the
    wall minute it reads matches; so walk every real minute of the day, leaving
    out the second pass of a repeated period (the one place where we expect
    less than cron runs).  Matching on naive wall time is cronsim's.
    """
    naive_start = datetime(day.year, day.month, day.day)
    matching_walls, it = set(), CronSim(expr, naive_start - timedelta(seconds=1))
    while (wall := next(it)) < naive_start + timedelta(days=1):
        matching_walls.add(wall)
    return [t for t, wall in real_minutes_of_a_local_day(tz, day) if wall in matching_walls]


@pytest.mark.parametrize(
    "tz, day",
    [
        (RIGA, D(2026, 3, 29)), (RIGA, D(2026, 10, 25)),
        (NEW_YORK, D(2026, 3, 8)), (NEW_YORK, D(2026, 11, 1)),
        (LORD_HOWE, D(2026, 4, 5)), (LORD_HOWE, D(2026, 10, 4)),
    ],
)
def test_wildcard_jobs_on_dst_days_fire_at_the_real_minutes_whose_wall_time_matches(tz, day):
    for expr in [
        "* * * * *", "*/7 * * * *", "0 * * * *", "15 * * * *", "30 * * * *", "45 * * * *",
        "10,40 */2 * * *", "*/10 1-3 * * *", "* 2 * * *", "0-29 * * * *", "*/20 3 * * *",
    ]:
        assert fires_on_local_days(expr, tz, day, day) == real_time_fires_of_a_wildcard_job(
            expr, tz, day
        ), expr


def test_random_expressions_agree_with_croniter_on_naive_wall_time():
    # croniter is only trustworthy on naive datetimes (no DST), and only where its
    # parser agrees with cron; random_expression(croniter_safe=True) stays there.
    # Cron's rule for the two day fields (AND when either starts with "*", else OR)
    # is croniter's day_or flag.
    rng = random.Random(7)
    for _ in range(300):
        expr = random_expression(rng, croniter_safe=True)
        fields = expr.split()
        if validate_cron(expr) is not None:
            continue
        start = datetime(2025, 1, 1) + timedelta(seconds=rng.randrange(3 * 365 * 86400))
        day_or = not (fields[2].startswith("*") or fields[4].startswith("*"))
        oracle = croniter(expr, start, day_or=day_or)
        expected = [oracle.get_next(datetime).replace(tzinfo=UTC) for _ in range(5)]
        got, after = [], start.replace(tzinfo=UTC)
        for _ in range(5):
            after = next_cron_fire(expr, UTC, after)
            got.append(after)
        assert got == expected, f"{expr!r} after {start.isoformat()}"


def test_every_instant_of_a_minute_has_the_answer_worked_out_for_that_instant() -> None:
    import random as _random

    from cronwarden.schedule import _next_cron_fire

    rng = _random.Random(7)
    zones = [ZoneInfo(z) for z in ("UTC", "Europe/Riga", "America/New_York", "Australia/Lord_Howe",
                                   "Asia/Kathmandu")]
    exprs = ["*/5 * * * *", "0 3 * * *", "30 2 * * 0", "* * * * *", "15 1,2 * * *"]
    start = datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp()
    for _ in range(2000):
        after = datetime.fromtimestamp(start + rng.uniform(0, 300 * 86400), timezone.utc)
        expr, tz = rng.choice(exprs), rng.choice(zones)
        assert next_cron_fire(expr, tz, after) == _next_cron_fire.__wrapped__(expr, tz, after)


def test_answers_kept_per_span_are_those_worked_out_afresh_in_any_order() -> None:
    """next_cron_fire keeps (after, fire) spans per schedule: instants asked in any order,
    clustered around DST transitions and across whole minutes, get the uncached answer."""
    from cronwarden import schedule
    from cronwarden.schedule import _next_cron_fire

    rng = random.Random(11)
    zones = [ZoneInfo(z) for z in ("UTC", "Europe/Riga", "America/New_York", "Australia/Lord_Howe")]
    exprs = ["*/15 * * * *", "0 * * * *", "30 3 * * *", "0,30 2,3 * * *", "* * * * *", "0 9-17 * * mon-fri"]
    centres = [datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc), datetime(2026, 10, 25, 1, 0, tzinfo=timezone.utc),
               datetime(2026, 3, 8, 7, 0, tzinfo=timezone.utc), datetime(2026, 11, 1, 6, 0, tzinfo=timezone.utc),
               datetime(2026, 4, 4, 15, 0, tzinfo=timezone.utc), datetime(2026, 10, 3, 15, 30, tzinfo=timezone.utc)]
    schedule._spans.clear()
    for _ in range(6000):
        centre = rng.choice(centres)
        after = centre + timedelta(seconds=rng.choice([rng.uniform(-4, 4) * 3600, rng.randrange(-240, 240) * 60.0]))
        expr, tz = rng.choice(exprs), rng.choice(zones)
        assert next_cron_fire(expr, tz, after) == _next_cron_fire.__wrapped__(expr, tz, after), \
            f"{expr!r} in {tz} after {after.isoformat()}"
    assert 0 < max(len(spans) for spans in schedule._spans.values()) <= schedule._SPANS_PER_KEY
