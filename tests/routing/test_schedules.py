"""Schedules parsed and evaluated without Django (routing.schedules)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from routing.schedules import (
    ALWAYS,
    Schedule,
    ScheduleError,
    check_timezone,
    in_force,
    may_overlap,
    parse,
    why_not,
)

MON, SAT = 1 << 0, 1 << 5


def paris(periods: str, **kw) -> Schedule:
    return Schedule.of(id=1, name="s", timezone="Europe/Paris", periods=periods, **kw)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_it_parses_days_and_times():
    assert parse("Mon-Fri 08:00-20:00; Sat 09:00-13:00") == (
        (0b0011111, 8 * 3600, 20 * 3600),
        (SAT, 9 * 3600, 13 * 3600),
    )
    assert parse("Sat,Sun") == ((0b1100000, 0, 86400),)
    assert parse("Fri-Mon 00:00:30-24:00") == ((0b1110001, 30, 86400),)
    assert parse("12:00-13:00") == ((0x7F, 12 * 3600, 13 * 3600),)


def test_empty_periods_mean_every_day_all_day():
    assert parse("") == ALWAYS
    assert parse(" ; ") == ALWAYS


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Mon 22:00-06:00", "'Mon 22:00-06:00': the end 06:00 precedes the start 22:00"),
        ("Mon 08:00-08:00", "precedes the start"),
        ("Mox 08:00-09:00", "'Mox' is not a day"),
        ("Mon 8h-9h", "'8h' is not a time of day"),
        ("Mon 08:00", "a time range is start-end"),
        ("Mon 08:00-25:00", "not a time of day"),
        ("Mon 08:61-09:00", "not a time of day"),
        ("Mon Tue 08:00-09:00", "write days then a time range"),
    ],
)
def test_it_refuses_bad_periods_naming_them(text, words):
    with pytest.raises(ScheduleError, match=words.replace("(", r"\(")):
        parse(text)


def test_an_overnight_window_is_two_periods():
    night = paris("Mon-Fri 20:00-24:00; Tue-Sat 00:00-08:00")
    assert in_force(night, utc(2026, 6, 1, 19, 30))  # Mon 21:30 in Paris (UTC+2)
    assert in_force(night, utc(2026, 6, 2, 3, 0))  # Tue 05:00
    assert not in_force(night, utc(2026, 6, 1, 3, 0))  # Mon 05:00: Monday morning is not


def test_it_checks_time_zones():
    assert check_timezone("Europe/Paris") == "Europe/Paris"
    for bad in ("Europe/Atlantis", "", "../etc/passwd", " UTC"):
        with pytest.raises(ScheduleError, match="not an IANA time zone"):
            check_timezone(bad)


def test_windows_are_wall_clock_times_across_dst_in_paris():
    office = paris("Mon-Fri 08:00-20:00")
    # Winter (UTC+1): 07:30 UTC is 08:30 local; summer (UTC+2): 06:30 UTC is 08:30.
    assert in_force(office, utc(2026, 1, 5, 7, 30))
    assert not in_force(office, utc(2026, 1, 5, 6, 30))
    assert in_force(office, utc(2026, 7, 6, 6, 30))
    assert why_not(office, utc(2026, 7, 6, 5, 59)) == "outside Mon-Fri 08:00-20:00 Europe/Paris"


def test_the_spring_forward_night_skips_the_missing_hour():
    # 2026-03-29 02:00 CET jumps to 03:00 CEST at 01:00 UTC.
    night = paris("Sun 02:00-03:00")
    assert not in_force(night, utc(2026, 3, 29, 0, 59, 59))  # 01:59:59 CET
    assert not in_force(night, utc(2026, 3, 29, 1, 0))  # 03:00 CEST: the hour never was
    early = paris("Sun 03:00-03:30")
    assert in_force(early, utc(2026, 3, 29, 1, 0))


def test_the_fall_back_night_repeats_the_hour():
    # 2026-10-25 03:00 CEST goes back to 02:00 CET at 01:00 UTC: 02:xx happens twice.
    night = paris("Sun 02:00-03:00")
    assert in_force(night, utc(2026, 10, 25, 0, 30))  # 02:30 CEST
    assert in_force(night, utc(2026, 10, 25, 1, 30))  # 02:30 CET
    assert not in_force(night, utc(2026, 10, 25, 2, 0))  # 03:00 CET


def test_validity_dates_bound_a_schedule():
    start, end = utc(2026, 5, 1).timestamp(), utc(2026, 6, 1).timestamp()
    promo = paris("", valid_from=start, valid_until=end)
    assert not in_force(promo, utc(2026, 4, 30, 23, 59))
    assert in_force(promo, utc(2026, 5, 1))
    assert not in_force(promo, utc(2026, 6, 1))  # until is exclusive
    assert why_not(promo, utc(2026, 4, 1)) == "before 2026-05-01 00:00:00 UTC"
    assert "no longer valid" in why_not(promo, utc(2026, 7, 1))


def test_naive_times_are_utc():
    assert in_force(paris("Mon 09:00-10:00"), datetime(2026, 1, 5, 8, 30))


def test_overlap_in_one_zone_is_exact():
    assert may_overlap(paris("Mon-Fri 08:00-20:00"), paris("Fri 19:00-21:00"))
    assert not may_overlap(paris("Mon-Fri 08:00-20:00"), paris("Mon-Fri 20:00-24:00"))
    assert not may_overlap(paris("Sat"), paris("Mon-Fri"))
    assert may_overlap(paris(""), paris("Sun 10:00-11:00"))


def test_validity_dates_that_do_not_meet_do_not_overlap():
    t = utc(2026, 5, 1).timestamp()
    assert not may_overlap(paris("", valid_until=t), paris("", valid_from=t))
    assert may_overlap(paris("", valid_until=t + 1), paris("", valid_from=t))


def test_overlap_across_zones_counts_every_offset():
    ny = Schedule.of(id=2, name="ny", timezone="America/New_York", periods="Mon 02:00-03:00")
    # Mon 08:00 Paris is 06:00 or 07:00 UTC; Mon 02:00 New York is 06:00 or 07:00 UTC.
    assert may_overlap(paris("Mon 08:00-08:30"), ny)
    assert not may_overlap(paris("Mon 12:00-13:00"), ny)
    # A window crossing the week's end in UTC still meets one early on Monday.
    tokyo = Schedule.of(id=3, name="t", timezone="Asia/Tokyo", periods="Mon 00:00-01:00")
    late = Schedule.of(id=4, name="u", timezone="UTC", periods="Sun 15:30-16:00")
    assert may_overlap(late, tokyo)
