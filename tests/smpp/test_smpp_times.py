"""SMPP time strings as customers send them (SMPP 3.4 section 7.1.1)."""

from __future__ import annotations

import calendar

import pytest

from ujumbe.channels.smpp.times import absolute_time, parse_time

NOW = calendar.timegm((2026, 1, 31, 12, 0, 0)) * 1000  # 31 Jan 2026 12:00:00 UTC


def utc(*fields: int) -> int:
    return calendar.timegm((*fields, 0, 0, 0)) * 1000


def test_absolute_times_honour_their_utc_offset() -> None:
    assert parse_time("260131150000012+", NOW) == utc(2026, 1, 31, 12, 0, 0)  # Nairobi, UTC+3
    assert parse_time("260131061500020-", NOW) == utc(2026, 1, 31, 11, 15, 0)  # UTC-5 (20 quarter hours)
    assert parse_time("260131120000500+", NOW) == utc(2026, 1, 31, 12, 0, 0) + 500  # tenths of a second
    assert parse_time("260131174500023+", NOW) == utc(2026, 1, 31, 12, 0, 0)  # Kathmandu, UTC+5:45


def test_relative_times_count_from_now_with_calendar_months() -> None:
    assert parse_time("000000000130000R", NOW) == NOW + 90_000
    assert parse_time("000002010000000R", NOW) == NOW + (2 * 24 + 1) * 3_600_000
    assert parse_time("000100000000000R", NOW) == utc(2026, 2, 28, 12, 0, 0)  # 31 Jan + 1 month
    assert parse_time("011100000000000R", NOW) == utc(2027, 12, 31, 12, 0, 0)


def test_empty_means_not_given_and_malformed_is_refused() -> None:
    assert parse_time("", NOW) is None
    for bad in ("tomorrow", "2601311200000", "260231120000000+", "260131120000049+", "26013112000000R0"):
        with pytest.raises(ValueError):
            parse_time(bad, NOW)


def test_absolute_time_reads_back() -> None:
    assert absolute_time(NOW + 700) == "260131120000700+"
    assert parse_time(absolute_time(NOW + 700), 0) == NOW + 700
