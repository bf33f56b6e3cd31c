"""SMPP 3.4 time strings (section 7.1.1), as customers send them in
``schedule_delivery_time`` and ``validity_period`` and as ``query_sm_resp``
reports ``final_date``.

Absolute: ``YYMMDDhhmmsstnnp``, a local time ``nn`` quarter hours ahead of
(``p`` = ``+``) or behind (``-``) UTC. Relative: ``YYMMDDhhmmss000R``, a span
from now. The empty string means "not given".
"""

from __future__ import annotations

import calendar
import datetime as dt
import time


def parse_time(value: str, now_ms: int) -> int | None:
    """The instant (epoch ms) ``value`` names; None when empty. ValueError
    when it is not a valid SMPP time."""
    value = (value or "").strip()
    if not value:
        return None
    if len(value) != 16 or not value[:15].isdigit() or value[15] not in "+-R":
        raise ValueError(f"{value!r} is not an SMPP time (YYMMDDhhmmsstnnp)")
    yy, mo, dd, hh, mi, ss = (int(value[i : i + 2]) for i in range(0, 12, 2))
    if value[15] == "R":
        return _add_span(now_ms, yy, mo, dd, hh, mi, ss)
    tenths, quarters = int(value[12]), int(value[13:15])
    if quarters > 48:
        raise ValueError(f"{value!r}: the UTC offset is more than 12 hours")
    try:
        local = dt.datetime(2000 + yy, mo, dd, hh, mi, ss)
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    offset = dt.timedelta(minutes=15 * quarters)
    utc = local - offset if value[15] == "+" else local + offset
    return calendar.timegm(utc.timetuple()) * 1000 + tenths * 100


def _add_span(now_ms: int, years: int, months: int, days: int, hours: int, minutes: int, seconds: int) -> int:
    # Years and months are calendar steps (31 Jan + 1 month = 28/29 Feb), the rest fixed lengths.
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc)
    month0 = now.month - 1 + months + 12 * years
    year, month = now.year + month0 // 12, month0 % 12 + 1
    day = min(now.day, calendar.monthrange(year, month)[1])
    moved = now.replace(year=year, month=month, day=day)
    moved += dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return int(moved.timestamp() * 1000)


def absolute_time(epoch_ms: int) -> str:
    """``epoch_ms`` as an absolute SMPP time in UTC (offset 00, ``+``)."""
    t = time.gmtime(epoch_ms // 1000)
    return time.strftime("%y%m%d%H%M%S", t) + f"{(epoch_ms % 1000) // 100}00+"
