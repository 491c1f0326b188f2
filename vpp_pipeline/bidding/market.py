"""CAISO trading-day calendar: hours in UTC, the 24-hour bid deadline, the next biddable day.

A trading day is a calendar day in market time (``America/Los_Angeles``); it has 23, 24 or 25
hours (DST). Bids are hourly and in UTC, so a trading day is the list of UTC hours between
its local midnights.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MARKET_TIMEZONE = "America/Los_Angeles"
MARKET_TZ = ZoneInfo(MARKET_TIMEZONE)
#: Leap: initial bids must be placed at least 24 hours before the trading day starts.
MIN_BID_LEAD = timedelta(hours=24)


def trading_day_start(day: date) -> datetime:
    """UTC instant of the trading day's local midnight."""
    return datetime.combine(day, time(0), tzinfo=MARKET_TZ).astimezone(UTC)


def trading_day_end(day: date) -> datetime:
    """UTC instant of the next local midnight (exclusive end of the trading day)."""
    return trading_day_start(day + timedelta(days=1))


def trading_day_hours(day: date) -> list[tuple[datetime, datetime]]:
    """``[(hour_start_utc, hour_end_utc)]`` of the trading day: 23, 24 or 25 hours."""
    start, end = trading_day_start(day), trading_day_end(day)
    hours = []
    cursor = start
    while cursor < end:
        hours.append((cursor, cursor + timedelta(hours=1)))
        cursor += timedelta(hours=1)
    return hours


def trading_day_of(instant: datetime) -> date:
    """The trading day (market-local date) an instant falls in."""
    if instant.tzinfo is None:
        raise ValueError("pass a timezone-aware instant")
    return instant.astimezone(MARKET_TZ).date()


def bid_deadline(day: date, lead: timedelta = MIN_BID_LEAD) -> datetime:
    """Last UTC instant at which bids for ``day`` may be placed."""
    return trading_day_start(day) - lead


def next_biddable_day(
    now: datetime, lead: timedelta = MIN_BID_LEAD, margin: timedelta = timedelta(minutes=30)
) -> date:
    """The earliest trading day whose deadline is still at least ``margin`` after ``now``
    (before ~23:30 PT that is the day after tomorrow)."""
    day = trading_day_of(now) + timedelta(days=1)
    while bid_deadline(day, lead) < now + margin:
        day += timedelta(days=1)
    return day
