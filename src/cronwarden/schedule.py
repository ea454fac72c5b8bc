"""When is a monitored job next due?  Pure schedule arithmetic.

Nothing here reads the clock or does I/O: "now" is always passed in, so every
function is deterministic and cheap enough to call for 100,000 monitors at
startup.

Theory of operation
===================

A five-field cron expression names *wall-clock* minutes in the job's time zone
(``30 3 * * *`` means "whenever the clock on the wall reads 03:30").  Cron
matching therefore happens on naive local wall time, exactly like a cron daemon
does it; only afterwards is each matching wall minute mapped to the instant in
UTC at which the job is due.  All comparisons ("strictly after") are made on
those UTC instants.

The expected fires are those of Debian's cron (Vixie cron, as in cronie),
which treats two kinds of job differently across a DST transition.  A job is
a *wildcard* job when the text of its minute field or of its hour field
starts with ``*`` (``*``, ``*/15``): cron sets its ``MIN_STAR`` / ``HR_STAR``
flag from that first character alone, whatever values the field allows.
``@hourly`` is a wildcard job too (it stands for ``0 * * * *``, and cron sets
``HR_STAR`` for it).  Every other job is a *fixed-time* job: ``30 3 * * *``,
``0-59 3 * * *``, ``@daily``.  The day, month and weekday fields play no part
in this.

The mapping from a matching wall time ``W`` in zone ``tz`` to a UTC instant:

* ``W`` exists once (the normal case): its UTC instant.
* ``W`` does not exist -- it lies in a spring-forward gap, e.g. 03:30 on
  2026-03-29 in Europe/Riga, where clocks jump from 03:00 to 04:00:

  - fixed-time job: due once, at the first real instant after the gap (04:00
    local, 01:00 UTC), as cron catches up a fixed-time job that the jump
    skipped.  Every matching time inside one gap (``0,30 3 * * *`` matches two
    of them) maps to that same instant, and so does a matching time right at
    the end of the gap (04:00), so they all count as one single fire.  (Cron
    runs the job once per skipped matching minute, all right after the gap,
    which a monitor sees as one due time.)
  - wildcard job: not due at all.  Cron runs wildcard jobs in real time, for
    the wall minutes the clock actually shows, so ``30 * * * *`` fires at
    02:30 and 04:30 (not 04:00) that day and ``*/15 3 * * *`` does not fire
    at all.  A matching time right at the end of the gap (``0 * * * *`` at
    04:00) exists and fires as usual.

* ``W`` exists twice -- it lies in the repeated period of a fall-back, e.g.
  03:30 on 2026-10-25 in Europe/Riga, where 03:00-04:00 happens first in EEST
  and then again in EET: the job is due once, at the first occurrence
  (``fold=0``, 03:30 EEST = 00:30 UTC).  The second pass through that wall
  hour fires nothing, for every expression: ``0 * * * *`` fires at 03:00 EEST
  (00:00 UTC), not at 03:00 EET (01:00 UTC), and then at 04:00 EET (02:00 UTC).
  That is cron's rule for fixed-time jobs.  Cron runs wildcard jobs in both
  passes; expecting the first pass only is deliberate and safe: cron does run
  the job then, and its runs in the second pass are extra pings, which a
  monitor accepts.  (Expecting both passes would be correct too, but with
  ``after`` in a first pass the next fire could then lie at an *earlier* wall
  time, in the second pass, which takes locating the transition -- only to
  watch runs that nothing depends on.)

This mapping never runs backwards in time (later wall times never map to
earlier instants; the wildcard rule only leaves some wall times out), so "the
next fire strictly after ``after``" is simply the first matching wall time,
walking forward from the wall time of ``after``, that has an instant and
whose instant is later than ``after``.  Equal instants are one fire, so
nothing is ever reported twice, and the result is never ``<= after`` -- also
when ``after`` itself falls in the repeated hour (``fold=1``): the remaining
wall times of that hour were already due during its first pass, so they are
skipped and the next fire is the first matching time after the repeated
period.  Wall times not touched by a DST transition are unaffected.

Cron's rules above hold for the transitions found in practice: forward jumps
of more than 5 minutes and at most 3 hours, backward ones of at most 3 hours
(Lord Howe's 30-minute shifts included).  Cron treats other clock changes
differently (it catches up every job after a jump of at most 5 minutes and
no job after one of more than 3 hours, e.g. Pacific/Apia skipping 2011-12-30);
this module applies the same rules to them regardless.

Why not let croniter do it
--------------------------
croniter (7.0.0), given zone-aware datetimes, reports ``30 3 * * *`` twice on
2026-10-25 in Europe/Riga (00:30 and 01:30 UTC), which would raise a false
alarm every autumn.  Its parser also departs from cron in ways that matter to
a monitor: ``5-5`` and ``sun-sun`` expand to the whole field, a ``*/2``
day-of-month with a day-of-week is ORed (cron ANDs when either field starts
with ``*``), and it accepts ``?``, ``L``, ``W``, ``#``, ``H`` and wrap-around
ranges that cron rejects.  So the expression is parsed here, strictly, into
sets of allowed values (cached per expression) and matched on naive wall time
with field-wise jumps (no minute-by-minute scanning); the tests cross-check the
result against both croniter (on naive wall time) and cronsim.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = ["next_cron_fire", "next_every", "validate_cron"]

_UTC = timezone.utc
_MINUTE = timedelta(minutes=1)
# How far ahead to look for a match before giving up.  Every expression that
# passes validation matches within 28 years (the worst case is February 29th
# restricted to one weekday); this is only a guard against looping forever.
_SEARCH_YEARS = 200
# When ``after`` lies in a repeated (fall-back) hour, the wall times left in
# that hour are skipped one match at a time, and a wildcard job skips each gap
# it meets in one step; a transition never repeats more than a few hours, so a
# few hundred matches is a generous bound.
_MAX_SKIPPED_MATCHES = 1000

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}
_DOW_NAMES = {
    name: number
    for number, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])
}
# (name, lowest, highest, names); day-of-week accepts 0-7, 7 meaning Sunday.
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day-of-month", 1, 31, None),
    ("month", 1, 12, _MONTH_NAMES),
    ("day-of-week", 0, 7, _DOW_NAMES),
)
_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February may have 29
_FIELD_SEPARATOR = re.compile(r"[ \t]+")
_NUMBER = re.compile(r"[0-9]+")


class _BadCron(ValueError):
    """A one-line reason, without the "bad cron expression" prefix."""


@dataclass(frozen=True, slots=True)
class _Spec:
    """One parsed expression: per field, the allowed values as lookup tables."""

    # next_minute[m] is the first allowed minute >= m, or 60 when there is none
    # (61 entries); likewise next_hour (25 entries, 24 = none) and next_month
    # (14 entries, 13 = none).
    next_minute: tuple[int, ...]
    next_hour: tuple[int, ...]
    next_month: tuple[int, ...]
    dom_bits: int  # bit d set: day-of-month d allowed
    dow_bits: int  # bit w set: weekday w allowed, 0 = Sunday
    # Cron's rule: when either day field starts with "*", a day must match
    # both fields; otherwise (both restricted) matching either one suffices.
    days_and: bool
    # A wildcard job (minute or hour field starts with "*"): its wall times
    # inside a spring-forward gap are skipped instead of due at the gap end.
    skips_gaps: bool


def validate_cron(expr: str) -> str | None:
    """None when `expr` is a valid five-field cron expression, else a one-line reason.

    Accepted: five fields (minute hour day-of-month month day-of-week) made of
    ``*``, numbers, ``a-b`` ranges, ``/step`` after ``*``, a range or a number
    (``a/step`` meaning ``a-<max>/step``), comma lists, month and weekday names
    (``jan``, ``mon-fri``, any case), weekday 7 for Sunday; and the macros
    ``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``,
    ``@yearly`` and ``@annually``.  Rejected: six- and seven-field forms,
    ``@reboot``, the non-cron extensions ``? L W # H``, backwards ranges, and
    expressions that can never fire (``0 0 31 2 *``).  Never raises.
    """
    if not isinstance(expr, str):
        return f"bad cron expression {expr!r}: expected a string, got {type(expr).__name__}"
    try:
        _parse(expr)
    except _BadCron as exc:
        return f"bad cron expression {expr!r}: {exc}"
    except Exception as exc:  # never raise, whatever happens
        return f"bad cron expression {expr!r}: {type(exc).__name__}: {exc}".splitlines()[0]
    return None


def next_cron_fire(expr: str, tz: ZoneInfo, after: datetime) -> datetime:
    """The first fire time strictly after `after` of cron `expr` in wall time of `tz`.

    Fire times are whole minutes, so every `after` within one minute has the
    same answer: it is worked out for the minute (and cached) where the zone's
    offset is a whole number of minutes, as every zone's is today. And as the
    fires of a schedule are a fixed set of instants (see the module docstring),
    the answer F for an `after` A is the answer for every `after` in [A, F)
    too: a few such spans are kept per schedule and zone, so a restart with
    100,000 monitors that ended their runs at as many different instants works
    out about one answer per schedule and fire rather than one per minute.
    """
    if after.tzinfo is _UTC:  # aware (so comparable), as every state's instants are
        key = (expr, tz)
        spans = _spans.get(key, ())
        for start, fire in spans:
            if start <= after < fire:
                return fire
        fire = _next_cron_fire(expr, tz, after.replace(second=0, microsecond=0)
                               if (after.second or after.microsecond) and _whole_minutes(tz) else after)
        if len(_spans) >= _MAX_SPAN_KEYS:
            _spans.clear()  # only after reloads through many different schedules
        start = after
        kept = []
        for span in spans:
            if span[1] == fire:  # the same fire, from an `after` later than this one
                start = min(start, span[0])
            else:
                kept.append(span)
        _spans[key] = ((start, fire), *kept[:_SPANS_PER_KEY - 1])
        return fire
    return _next_cron_fire(expr, tz, after)


# (expression, zone) -> spans (start, fire), latest first: every `after` in
# [start, fire) has `fire` as its next fire; two spans with the same fire merge
# into the longer. Tuples replaced whole, never changed in
# place: a reload may parse a config in a thread while the loop asks here.
_spans: dict[tuple[str, ZoneInfo], tuple[tuple[datetime, datetime], ...]] = {}
_SPANS_PER_KEY = 8
_MAX_SPAN_KEYS = 65536


@lru_cache(maxsize=1024)
def _whole_minutes(tz: ZoneInfo) -> bool:
    """The zone's offset today is a whole number of minutes (true of every zone in use;
    some had seconds in their local mean time of the 19th century)."""
    offset = datetime.now(tz).utcoffset()
    return offset is not None and not offset.seconds % 60


# Cached: at start-up every new monitor counts from the same instant, and
# monitors share a few schedules (@daily, 0 * * * * ...) in a few zones. Equal
# aware datetimes are the same instant, and the result depends on the instant
# only; errors are not cached.
@lru_cache(maxsize=8192)
def _next_cron_fire(expr: str, tz: ZoneInfo, after: datetime) -> datetime:
    """next_cron_fire, for any `after`.

    `after` must be timezone-aware (any zone).  The result is an aware
    datetime in UTC (``tzinfo=datetime.timezone.utc``), always later than
    `after`.  Nonexistent wall times (spring-forward gap) fire once at the end
    of the gap for a fixed-time job and not at all for a wildcard job (minute
    or hour field starting with ``*``); ambiguous wall times (fall-back) fire
    once, at their first occurrence; see the module docstring.  Raises
    ``ValueError`` for an invalid expression (with the same reason
    `validate_cron` gives) or a naive `after`.
    """
    try:
        spec = _parse(expr)
    except _BadCron as exc:
        raise ValueError(f"bad cron expression {expr!r}: {exc}") from None
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"after must be timezone-aware, got naive {after.isoformat()}")

    after_utc = after.astimezone(_UTC)
    # Matching wall times are searched from the minute after the wall time of
    # `after`: no earlier wall time can map to an instant later than `after`.
    # (Plain integer fields rather than datetime.replace(): this is the hot
    # path, and replace() costs more than the whole match.)
    local = after_utc.astimezone(tz)
    wall = (local.year, local.month, local.day, local.hour, local.minute + 1)
    skips_gaps = spec.skips_gaps
    for _ in range(_MAX_SKIPPED_MATCHES):
        match = _next_match(spec, *wall)
        fire = _wall_to_utc(tz, *match, skips_gaps)
        if fire is None:
            # A wildcard job's wall time inside a gap: not due.  Go on from
            # the first wall minute after the gap.
            wall = _gap_end_wall(tz, *match)
            continue
        if fire > after_utc:
            return fire
        # Only reached when `after` lies in a repeated hour: this wall time
        # already fired during the hour's first pass.
        wall = (*match[:4], match[4] + 1)
    raise ValueError(f"cron expression {expr!r}: no fire found after {after.isoformat()}")


def next_every(last: datetime, period_s: int) -> datetime:
    """`last` + `period_s` seconds, as an aware datetime in UTC.

    The addition is done in UTC, so a period is elapsed time even across a
    DST change of `last`'s zone.  Raises ``ValueError`` for a naive `last` or
    a period shorter than one second.
    """
    if last.tzinfo is None or last.utcoffset() is None:
        raise ValueError(f"last must be timezone-aware, got naive {last.isoformat()}")
    if period_s < 1:
        raise ValueError(f"period must be at least 1 second, got {period_s}")
    return last.astimezone(_UTC) + timedelta(seconds=period_s)


# --- parsing -----------------------------------------------------------------


@lru_cache(maxsize=65536)
def _parse(expr: str) -> _Spec:
    if not isinstance(expr, str):
        raise _BadCron(f"expected a string, got {type(expr).__name__}")
    text = expr.strip()
    if text.startswith("@"):
        macro = text.lower()
        if macro == "@reboot":
            raise _BadCron("@reboot has no schedule to monitor; use a five-field expression")
        if macro not in _MACROS:
            raise _BadCron(f"unknown macro {text!r}; known: {', '.join(_MACROS)}")
        text = _MACROS[macro]
    fields = _FIELD_SEPARATOR.split(text) if text else []
    if len(fields) != 5:
        raise _BadCron(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )

    values = [
        _parse_field(field, name, low, high, names)
        for field, (name, low, high, names) in zip(fields, _FIELDS)
    ]
    minutes, hours, doms, months, dows = values
    if 7 in dows:
        dows = (dows - {7}) | {0}
    days_and = fields[2].startswith("*") or fields[4].startswith("*")
    if days_and and min(doms) > max(_MONTH_DAYS[month] for month in months):
        raise _BadCron(
            f"never fires: day-of-month {fields[2]} does not occur in month {fields[3]}"
        )
    return _Spec(
        next_minute=_next_table(minutes, 60),
        next_hour=_next_table(hours, 24),
        next_month=_next_table(months, 13),
        dom_bits=sum(1 << day for day in doms),
        dow_bits=sum(1 << day for day in dows),
        days_and=days_and,
        skips_gaps=fields[0].startswith("*") or fields[1].startswith("*"),
    )


def _parse_field(
    text: str, name: str, low: int, high: int, names: dict[str, int] | None
) -> frozenset[int]:
    allowed: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _BadCron(f"{name} field {text!r} has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text):
                raise _BadCron(f"{name} step {step_text!r} in {item!r} is not a number")
            step = int(step_text)
            if step < 1:
                raise _BadCron(f"{name} step in {item!r} must be at least 1")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first = _parse_value(first_text, item, name, low, high, names)
            last = _parse_value(last_text, item, name, low, high, names)
            if first > last:
                raise _BadCron(f"{name} range {item!r} is backwards (cron ranges do not wrap)")
        else:
            first = _parse_value(base, item, name, low, high, names)
            last = high if slash else first  # "a/step" means "a-<max>/step"
        allowed.update(range(first, last + 1, step))
    return frozenset(allowed)


def _parse_value(
    text: str, item: str, name: str, low: int, high: int, names: dict[str, int] | None
) -> int:
    if _NUMBER.fullmatch(text):
        value = int(text)
        if not low <= value <= high:
            raise _BadCron(f"{name} {value} out of range {low}-{high}")
        return value
    if names is not None and text.lower() in names:
        return names[text.lower()]
    if not text:
        raise _BadCron(f"{name} {item!r} is missing a number")
    kind = "a number or name" if names else "a number"
    raise _BadCron(f"{name} {text!r} is not {kind}")


def _next_table(allowed: frozenset[int], none: int) -> tuple[int, ...]:
    table = [none] * (none + 1)
    upcoming = none
    for value in range(none - 1, -1, -1):
        if value in allowed:
            upcoming = value
        table[value] = upcoming
    return tuple(table)


# --- matching on naive wall time ---------------------------------------------


def _next_match(
    spec: _Spec, year: int, month: int, day: int, hour: int, minute: int
) -> tuple[int, int, int, int, int]:
    """The first naive wall minute at or after the given one that matches `spec`.

    `minute` may be 60 (meaning the start of the next hour).  Works field by
    field, largest first, jumping straight to the next allowed value.
    """
    start = (year, month, day, hour, minute)
    last_year = year + _SEARCH_YEARS
    next_minute, next_hour, next_month = spec.next_minute, spec.next_hour, spec.next_month
    dom_bits, dow_bits, days_and = spec.dom_bits, spec.dow_bits, spec.days_and
    while year <= last_year:
        allowed_month = next_month[month]
        if allowed_month != month:
            if allowed_month == 13:  # none left this year
                year += 1
                allowed_month = next_month[1]
            month, day, hour, minute = allowed_month, 1, 0, 0
        # Day 1 is weekday `first_weekday` counted from Monday = 0, so counted
        # from Sunday = 0 (cron's numbering) day d is (first_weekday + d) % 7.
        first_weekday, days_in_month = _monthrange(year, month)
        while day <= days_in_month:
            dom_ok = dom_bits >> day & 1
            dow_ok = dow_bits >> ((first_weekday + day) % 7) & 1
            if (dom_ok and dow_ok) if days_and else (dom_ok or dow_ok):
                allowed_hour = next_hour[hour]
                if allowed_hour != 24:
                    if allowed_hour != hour:
                        minute = 0
                    allowed_minute = next_minute[minute]
                    if allowed_minute != 60:
                        return year, month, day, allowed_hour, allowed_minute
                    if allowed_hour < 23:  # no minute left in this hour: try the next
                        hour, minute = allowed_hour + 1, 0
                        continue
            day, hour, minute = day + 1, 0, 0
        month, day, hour, minute = month + 1, 1, 0, 0
        if month == 13:
            year, month = year + 1, 1
    raise ValueError(f"no matching time within {_SEARCH_YEARS} years of {datetime(*start[:4])}")


# calendar.monthrange, cached: it is a third of the matching time otherwise.
_monthrange = lru_cache(maxsize=4096)(calendar.monthrange)


# --- wall time to UTC ----------------------------------------------------------


def _wall_to_utc(
    tz: tzinfo, year: int, month: int, day: int, hour: int, minute: int, skips_gaps: bool
) -> datetime | None:
    """The UTC instant at which the given naive wall time in `tz` is due.

    None when the wall time lies in a spring-forward gap and `skips_gaps`
    (a wildcard job); otherwise such a time is due at the end of the gap.
    """
    # (The body of _offsets(), inlined: this is the hot path.)
    before = datetime(year, month, day, hour, minute, tzinfo=tz).utcoffset()
    after = datetime(year, month, day, hour, minute, tzinfo=tz, fold=1).utcoffset()
    if before is None or after is None:
        raise ValueError(f"time zone {tz!r} has no UTC offset")
    if before >= after:
        # Exists once, or twice (fall-back: the first occurrence is due).
        return datetime(year, month, day, hour, minute, tzinfo=_UTC) - before
    # Spring-forward gap: after > before, and the wall time does not exist.
    if skips_gaps:
        return None
    return _gap_end(tz, datetime(year, month, day, hour, minute), before, after)


def _offsets(
    tz: tzinfo, year: int, month: int, day: int, hour: int, minute: int
) -> tuple[timedelta, timedelta]:
    """The UTC offsets of a naive wall time with fold=0 and with fold=1."""
    # PEP 495: fold=0 applies the offset in force before a transition, fold=1
    # the one after it; they differ only in a gap or a repeated period.
    before = datetime(year, month, day, hour, minute, tzinfo=tz).utcoffset()
    after = datetime(year, month, day, hour, minute, tzinfo=tz, fold=1).utcoffset()
    if before is None or after is None:
        raise ValueError(f"time zone {tz!r} has no UTC offset")
    return before, after


def _gap_end_wall(
    tz: tzinfo, year: int, month: int, day: int, hour: int, minute: int
) -> tuple[int, int, int, int, int]:
    """The first whole wall minute after the gap that the given wall time lies in."""
    before, after = _offsets(tz, year, month, day, hour, minute)
    # Just after the transition the offset is `after`, so that is the wall time
    # at which the gap ends; a transition off a whole minute (only in old
    # local mean time changes) rounds up to the next minute.
    end = _gap_end(tz, datetime(year, month, day, hour, minute), before, after) + after
    round_up = 1 if end.second or end.microsecond else 0
    return end.year, end.month, end.day, end.hour, end.minute + round_up


@lru_cache(maxsize=1024)
def _gap_end(tz: tzinfo, wall: datetime, before: timedelta, after: timedelta) -> datetime:
    """The transition instant ending the gap that nonexistent `wall` falls in.

    The transition lies in (wall - after, wall - before]; zoneinfo exposes no
    transition list, so bisect on whole seconds for the first instant whose
    local wall time is past `wall`.
    """
    low = wall - after  # naive UTC, before the transition
    low_utc = low.replace(tzinfo=_UTC)
    lo, hi = 0, int((after - before).total_seconds())  # hi: after the transition
    while hi - lo > 1:
        mid = (lo + hi) // 2
        local = (low_utc + timedelta(seconds=mid)).astimezone(tz)
        if local.replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return low_utc + timedelta(seconds=hi)

