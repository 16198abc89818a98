"""Schedules: weekly time windows in a time zone, with optional validity dates.

A schedule's periods are text an operator writes, e.g. ``Mon-Fri 08:00-20:00;
Sat 09:00-13:00``: periods separated by ``;``, each days (``Mon``, ``Mon-Fri``,
``Sat,Sun``, ``Fri-Mon``; none: every day) and a time range (``HH:MM`` or
``HH:MM:SS``, end up to ``24:00``; none: all day). An end must follow its start:
an overnight window is two periods (``Mon-Fri 20:00-24:00; Tue-Sat 00:00-08:00``).
No periods at all means every day, all day. Times are wall-clock times in the
schedule's IANA time zone, so a window follows daylight saving time.

`parse()` turns the text into a compact tuple of (days bit mask, start second,
end second); `in_force()` says whether a schedule holds at an instant and
`why_not()` why not. `may_overlap()` says whether two schedules can hold at
the same instant (the check that keeps scheduled routes of one prefix apart).

Free of Django on purpose: the resolver uses it on rows, and so can any tool.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_INDEX = {name.lower(): i for i, name in enumerate(DAYS)}
ALL_DAYS = 0x7F
DAY = 86_400
WEEK = 7 * DAY

Window = tuple[int, int, int]  # (days bit mask, Monday = bit 0; start second; end second)
ALWAYS: tuple[Window, ...] = ((ALL_DAYS, 0, DAY),)

logger = logging.getLogger(__name__)
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


class ScheduleError(ValueError):
    """The periods text (or time zone) is not valid; the message says which part."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A schedule as the resolver reads it (routing.models.Schedule, parsed)."""

    id: int
    name: str
    timezone: str = "UTC"
    periods: str = ""
    windows: tuple[Window, ...] = ALWAYS
    valid_from: float | None = None  # Unix seconds; None: since ever
    valid_until: float | None = None  # Unix seconds, exclusive; None: for ever

    @classmethod
    def of(
        cls,
        *,
        id: int,
        name: str,
        timezone: str,
        periods: str,
        valid_from: float | None = None,
        valid_until: float | None = None,
    ) -> Schedule:
        return cls(
            id=id,
            name=name,
            timezone=timezone,
            periods=periods,
            windows=parse(periods),
            valid_from=valid_from,
            valid_until=valid_until,
        )

    def describe(self) -> str:
        """The rule in words, for traces: 'Mon-Fri 08:00-20:00 Europe/Paris'."""
        text = self.periods.strip() or "every day"
        if self.valid_from is not None:
            text += f" from {_stamp(self.valid_from)}"
        if self.valid_until is not None:
            text += f" until {_stamp(self.valid_until)}"
        return f"{text} {self.timezone}"


def from_row(row) -> Schedule | None:
    """A stored schedule (rows.ScheduleRow) parsed, or None when its text does not
    parse (written around the checks, in SQL): its routes are then never in force."""
    try:
        check_timezone(row.timezone)
        return Schedule.of(
            id=row.id,
            name=row.name,
            timezone=row.timezone,
            periods=row.periods,
            valid_from=row.valid_from,
            valid_until=row.valid_until,
        )
    except ScheduleError:
        logger.warning("schedule %s (%s) is not valid: never in force", row.id, row.name)
        return None


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def check_timezone(name: str) -> str:
    """The name if it is an IANA time zone this system knows; else ScheduleError."""
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{name!r} is not an IANA time zone (e.g. Europe/Paris)") from None
    return name


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    if not name or name != name.strip():
        raise ValueError(name)
    return ZoneInfo(name)


@lru_cache(maxsize=4096)
def parse(text: str) -> tuple[Window, ...]:
    """The windows of a periods text (see the module doc); ScheduleError names the bad period."""
    windows = []
    for raw in text.split(";"):
        period = raw.strip()
        if not period:
            continue
        windows.append(_period(period))
    return tuple(windows) or ALWAYS


def _period(period: str) -> Window:
    parts = period.split()
    if len(parts) == 1:
        parts = ["", parts[0]] if parts[0][:1].isdigit() else [parts[0], ""]
    if len(parts) != 2 or parts[1][:1].isalpha():
        raise ScheduleError(
            f"period {period!r}: write days then a time range, e.g. Mon-Fri 08:00-20:00"
        )
    days = _days(parts[0], period) if parts[0] else ALL_DAYS
    start, end = 0, DAY
    if parts[1]:
        left, sep, right = parts[1].partition("-")
        if not sep:
            raise ScheduleError(f"period {period!r}: a time range is start-end, e.g. 08:00-20:00")
        start, end = _seconds(left, period), _seconds(right, period)
        if end <= start:
            raise ScheduleError(
                f"period {period!r}: the end {right} precedes the start {left}; write an "
                "overnight window as two periods (e.g. Mon 20:00-24:00; Tue 00:00-08:00)"
            )
    return days, start, end


def _days(text: str, period: str) -> int:
    mask = 0
    for item in text.split(","):
        first, sep, last = (part.strip().lower() for part in item.partition("-"))
        a = _DAY_INDEX.get(first)
        b = _DAY_INDEX.get(last) if sep else a
        if a is None or b is None:
            raise ScheduleError(
                f"period {period!r}: {item!r} is not a day or a range of days "
                "(Mon, Mon-Fri, Sat,Sun)"
            )
        day = a
        while True:
            mask |= 1 << day
            if day == b:
                break
            day = (day + 1) % 7  # Fri-Mon wraps over the weekend
    return mask


def _seconds(text: str, period: str) -> int:
    found = _TIME.match(text.strip())
    if not found:
        raise ScheduleError(f"period {period!r}: {text!r} is not a time of day (HH:MM or HH:MM:SS)")
    hours, minutes, seconds = int(found[1]), int(found[2]), int(found[3] or 0)
    value = hours * 3600 + minutes * 60 + seconds
    if minutes > 59 or seconds > 59 or value > DAY:
        raise ScheduleError(f"period {period!r}: {text!r} is not a time of day (00:00 to 24:00)")
    return value


def _unix(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()  # naive: UTC


def why_not(schedule: Schedule, at: datetime) -> str | None:
    """None when `schedule` is in force at `at` (naive: UTC), else why not, in words."""
    now = _unix(at)
    if schedule.valid_from is not None and now < schedule.valid_from:
        return f"before {_stamp(schedule.valid_from)}"
    if schedule.valid_until is not None and now >= schedule.valid_until:
        return f"from {_stamp(schedule.valid_until)} on, no longer valid"
    if schedule.windows == ALWAYS:
        return None
    local = datetime.fromtimestamp(now, _zone(schedule.timezone))
    bit = 1 << local.weekday()
    second = local.hour * 3600 + local.minute * 60 + local.second
    for days, start, end in schedule.windows:
        if days & bit and start <= second < end:
            return None
    return f"outside {schedule.periods.strip()} {schedule.timezone}"


def in_force(schedule: Schedule, at: datetime) -> bool:
    return why_not(schedule, at) is None


def _week_intervals(windows: tuple[Window, ...], shift: int) -> list[tuple[int, int]]:
    """The windows as [start, end) seconds of a week starting Monday 00:00, moved by
    `shift` seconds (a UTC offset), wrapped into one week."""
    found = []
    for days, start, end in windows:
        for day in range(7):
            if days & (1 << day):
                a = (day * DAY + start - shift) % WEEK
                b = a + (end - start)
                found.append((a, min(b, WEEK)))
                if b > WEEK:
                    found.append((0, b - WEEK))
    return found


@lru_cache(maxsize=512)
def _offsets(name: str) -> frozenset[int]:
    """Every UTC offset (seconds) the zone takes in recent and coming years."""
    zone = _zone(name)
    seen = set()
    for year in range(2000, 2041):
        for month in range(1, 13):
            for day in (1, 15):
                offset = datetime(year, month, day, 12, tzinfo=zone).utcoffset()
                seen.add(int(offset.total_seconds()) if offset else 0)
    return frozenset(seen)


def may_overlap(a: Schedule, b: Schedule) -> bool:
    """Whether two schedules can be in force at the same instant.

    Exact for schedules of one time zone. Across zones it compares the weekly
    windows under every UTC offset each zone takes, so it may refuse a pair whose
    windows only meet in a daylight-saving combination that never happens: safe.
    """
    lo = max(x for x in (a.valid_from, b.valid_from, float("-inf")) if x is not None)
    hi = min(x for x in (a.valid_until, b.valid_until, float("inf")) if x is not None)
    if lo >= hi:
        return False
    if a.timezone == b.timezone:
        pairs = [(0, 0)]
    else:
        pairs = [(x, y) for x in _offsets(a.timezone) for y in _offsets(b.timezone)]
    for x, y in pairs:
        left, right = _week_intervals(a.windows, x), _week_intervals(b.windows, y)
        if any(s < e2 and s2 < e for s, e in left for s2, e2 in right):
            return True
    return False
