"""NERC holidays: the six days on which baselines treat a weekday like a weekend.

NERC's list is New Year's Day, Memorial Day, Independence Day, Labor Day, Thanksgiving Day
and Christmas Day; one falling on a Sunday is observed on the Monday (a Saturday holiday is
not moved). The dates come from the ``holidays`` library's US calendar (its rules for
Memorial Day, Thanksgiving, ...), picked by name, never typed by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import holidays
import polars as pl

#: The US calendar names (``holidays.US``) of the NERC holidays.
NERC_HOLIDAY_NAMES = (
    "New Year's Day",
    "Memorial Day",
    "Independence Day",
    "Labor Day",
    "Thanksgiving Day",
    "Christmas Day",
)


def nerc_holidays(years: Iterable[int]) -> dict[date, str]:
    """NERC holiday dates of ``years`` -> name (Sunday holidays add their observed Monday)."""
    calendar = holidays.US(years=list(years), observed=False)
    found: dict[date, str] = {}
    for day, names in calendar.items():
        for name in names.split("; "):
            if name not in NERC_HOLIDAY_NAMES:
                continue
            found[day] = name
            if day.weekday() == 6:
                found[day + timedelta(days=1)] = f"{name} (observed)"
    missing = set(NERC_HOLIDAY_NAMES) - {n.removesuffix(" (observed)") for n in found.values()}
    if missing and list(years):
        # A renamed holiday in a future ``holidays`` release must fail loudly, not vanish.
        raise RuntimeError(f"holidays.US no longer names these NERC holidays: {sorted(missing)}")
    return dict(sorted(found.items()))


def holidays_frame(first_year: int, last_year: int) -> pl.DataFrame:
    """``holiday_date DATE, holiday_name VARCHAR`` for ``first_year..last_year``, for staging."""
    days = nerc_holidays(range(first_year, last_year + 1))
    return pl.DataFrame(
        {"holiday_date": list(days), "holiday_name": list(days.values())},
        schema={"holiday_date": pl.Date, "holiday_name": pl.String},
    )
