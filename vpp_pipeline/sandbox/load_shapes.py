"""Static shapes behind the sandbox's synthetic interval data: C&I load profiles, climates, battery settings,
NERC holidays, and a counter-based random number scheme.

Load profiles are unitless occupancy curves in [0, 1] over the **local** wall-clock day (96 quarter hours):
``0`` = the site's base load, ``1`` = its full controllable load. Climates give a temperature-like signal in
°C per transmission region. Randomness is counter-based (a splitmix64 hash of seed, meter, time and a salt),
so any interval's value can be computed on its own, whatever window was requested.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache

import numpy as np

QUARTER_HOURS_PER_DAY = 96

# --- load profiles -------------------------------------------------------------------------------------------

#: Hourly occupancy (index = local hour, value at the hour's middle) per archetype: (weekday, weekend/holiday).
# fmt: off
_HOURLY_PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "office": (
        (0.05, 0.05, 0.05, 0.05, 0.05, 0.08, 0.2, 0.5, 0.85, 0.97, 1.0, 1.0,
         1.0, 1.0, 1.0, 0.98, 0.9, 0.7, 0.4, 0.22, 0.12, 0.08, 0.06, 0.05),
        (0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.1, 0.12, 0.13, 0.13,
         0.13, 0.12, 0.1, 0.08, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05),
    ),
    "school": (
        (0.04, 0.04, 0.04, 0.04, 0.04, 0.06, 0.3, 0.8, 1.0, 1.0, 1.0, 1.0,
         0.98, 0.95, 0.8, 0.55, 0.35, 0.25, 0.18, 0.12, 0.08, 0.05, 0.04, 0.04),
        (0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04,
         0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04),
    ),
    "retail": (
        (0.15, 0.15, 0.15, 0.15, 0.15, 0.2, 0.35, 0.65, 0.9, 1.0, 1.0, 1.0,
         1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.98, 0.9, 0.7, 0.4, 0.2, 0.16),
        (0.15, 0.15, 0.15, 0.15, 0.15, 0.18, 0.3, 0.55, 0.85, 0.97, 1.0, 1.0,
         1.0, 1.0, 1.0, 1.0, 1.0, 0.97, 0.9, 0.75, 0.5, 0.3, 0.18, 0.15),
    ),
    "warehouse": (
        (0.12, 0.12, 0.12, 0.12, 0.2, 0.6, 0.95, 1.0, 1.0, 1.0, 1.0, 1.0,
         0.95, 1.0, 1.0, 1.0, 0.95, 0.7, 0.35, 0.2, 0.15, 0.12, 0.12, 0.12),
        (0.12, 0.12, 0.12, 0.12, 0.12, 0.12, 0.3, 0.4, 0.45, 0.45, 0.45, 0.45,
         0.45, 0.45, 0.4, 0.3, 0.15, 0.15, 0.15, 0.15, 0.15, 0.15, 0.15, 0.15),
    ),
    "manufacturing": (
        (0.35, 0.35, 0.35, 0.35, 0.4, 0.7, 0.95, 1.0, 1.0, 1.0, 1.0, 1.0,
         0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 0.95, 0.95, 0.95, 0.9, 0.6, 0.4),
        (0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
         0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3),
    ),
    "hospital": (
        (0.55, 0.55, 0.55, 0.55, 0.55, 0.6, 0.75, 0.9, 1.0, 1.0, 1.0, 1.0,
         1.0, 1.0, 1.0, 1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.65, 0.6, 0.55),
        (0.55, 0.55, 0.55, 0.55, 0.55, 0.58, 0.65, 0.75, 0.85, 0.88, 0.9, 0.9,
         0.9, 0.9, 0.9, 0.88, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.57, 0.55),
    ),
    "data_center": (
        (0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.95, 0.97, 0.98,
         1.0, 1.0, 1.0, 0.98, 0.97, 0.96, 0.94, 0.94, 0.94, 0.94, 0.94, 0.94),
        (0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92,
         0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92),
    ),
    "cold_storage": (
        (0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.85, 0.92, 0.98, 1.0, 1.0, 1.0,
         1.0, 1.0, 1.0, 1.0, 0.95, 0.9, 0.82, 0.82, 0.82, 0.82, 0.82, 0.82),
        (0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85,
         0.85, 0.85, 0.85, 0.85, 0.85, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8),
    ),
    # pumping shifts away from the evening peak; it runs hardest at night
    "water": (
        (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.7, 0.6, 0.6, 0.55, 0.55,
         0.55, 0.55, 0.5, 0.45, 0.3, 0.3, 0.3, 0.3, 0.3, 0.6, 0.9, 1.0),
        (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.75, 0.75, 0.75, 0.75, 0.75,
         0.75, 0.75, 0.75, 0.75, 0.35, 0.35, 0.35, 0.35, 0.35, 0.7, 0.9, 1.0),
    ),
    "hotel": (
        (0.4, 0.38, 0.37, 0.37, 0.4, 0.55, 0.8, 0.85, 0.7, 0.6, 0.55, 0.55,
         0.58, 0.58, 0.55, 0.55, 0.62, 0.8, 0.95, 1.0, 1.0, 0.9, 0.7, 0.5),
        (0.42, 0.4, 0.38, 0.38, 0.4, 0.5, 0.65, 0.8, 0.85, 0.75, 0.65, 0.62,
         0.62, 0.6, 0.6, 0.62, 0.68, 0.82, 0.95, 1.0, 1.0, 0.92, 0.75, 0.55),
    ),
}
# fmt: on

#: Share of the controllable load (peak - base) that is weather driven (cooling), per archetype.
HVAC_SHARE: dict[str, float] = {
    "office": 0.45,
    "school": 0.45,
    "retail": 0.4,
    "warehouse": 0.3,
    "manufacturing": 0.15,
    "hospital": 0.4,
    "data_center": 0.35,
    "cold_storage": 0.35,
    "water": 0.05,
    "hotel": 0.45,
}

ARCHETYPE_KEYS: tuple[str, ...] = tuple(_HOURLY_PROFILES)


def _to_quarter_hours(hourly: tuple[float, ...]) -> np.ndarray:
    """Linear interpolation between hour midpoints, wrapping around midnight: 24 values -> 96."""
    if len(hourly) != 24:
        raise ValueError(f"a profile needs 24 hourly values, got {len(hourly)}")
    midpoints = np.arange(24) + 0.5
    quarter_mid = (np.arange(QUARTER_HOURS_PER_DAY) + 0.5) / 4
    xs = np.concatenate([midpoints - 24, midpoints, midpoints + 24])
    ys = np.tile(np.asarray(hourly, dtype=np.float64), 3)
    return np.interp(quarter_mid, xs, ys)


@cache
def occupancy_table() -> np.ndarray:
    """Array ``[archetype, day_type, quarter_hour]`` of occupancy in [0, 1].

    ``archetype`` indexes ``ARCHETYPE_KEYS``; ``day_type`` 0 = working day, 1 = weekend or NERC holiday;
    ``quarter_hour`` is the local wall-clock slot (0 = 00:00-00:15).
    """
    table = np.empty((len(ARCHETYPE_KEYS), 2, QUARTER_HOURS_PER_DAY))
    for i, key in enumerate(ARCHETYPE_KEYS):
        weekday, weekend = _HOURLY_PROFILES[key]
        table[i, 0] = _to_quarter_hours(weekday)
        table[i, 1] = _to_quarter_hours(weekend)
    return table


#: Schools mostly close over the summer: local day-of-year range and the occupancy factor applied.
SCHOOL_SUMMER_BREAK_DOY = (172, 228)
SCHOOL_SUMMER_FACTOR = 0.35

# --- climates ------------------------------------------------------------------------------------------------


class Climate:
    """A temperature-like signal (°C) for one transmission region.

    ``mean_c + seasonal_amp_c * cos(2π (doy - 200) / 365.25) + diurnal_amp_c * cos(2π (hour - 15) / 24)``
    plus a smooth weather drift (a few slow sinusoids with seed-dependent phases) and a daily anomaly
    (``DAILY_TEMPERATURE_ANOMALY_C`` x a normal draw per region and local day), shared by every site of
    the region.
    """

    def __init__(self, mean_c: float, seasonal_amp_c: float, diurnal_amp_c: float) -> None:
        self.mean_c = mean_c
        self.seasonal_amp_c = seasonal_amp_c
        self.diurnal_amp_c = diurnal_amp_c


CLIMATES: dict[str, Climate] = {
    "CAISO": Climate(17.0, 7.0, 7.0),
    "NYISO": Climate(13.0, 12.0, 5.0),
    "ERCOT": Climate(20.5, 9.5, 6.0),
}
DEFAULT_CLIMATE = Climate(15.0, 10.0, 6.0)

#: Periods (days) and amplitudes (°C) of the weather drift.
WEATHER_DRIFT = ((2.7, 1.6), (5.3, 2.0), (11.1, 1.6), (23.0, 1.2))
#: Standard deviation (°C) of a region's daily temperature anomaly (one draw per local day, on
#: top of the smooth drift): day-to-day weather that a baseline cannot see coming.
DAILY_TEMPERATURE_ANOMALY_C = 1.5

#: Cooling starts above this temperature and is at full design load at ``COOLING_DESIGN_C``.
COOLING_BALANCE_C = 16.0
COOLING_DESIGN_C = 33.0

# --- batteries -----------------------------------------------------------------------------------------------

#: Usable share of a battery's energy capacity (state of charge kept between 10 % and 90 %).
BATTERY_USABLE_SHARE = 0.8
#: Charging efficiency: energy drawn from the grid per kWh stored is 1 / this.
BATTERY_CHARGE_EFFICIENCY = 0.9
#: Local wall-clock slots: off-peak charging [01:00, 06:00) and the evening peak [16:00, 21:00).
BATTERY_CHARGE_SLOTS = (4, 24)
PEAK_SLOTS = (64, 84)
#: Auxiliary draw (cooling, controls) of a battery submeter, as a share of its power rating.
BATTERY_AUX_SHARE = 0.004

# --- NERC holidays -------------------------------------------------------------------------------------------


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


@cache
def nerc_holidays(year: int) -> frozenset[date]:
    """NERC holidays of ``year``: New Year's Day, Memorial Day, Independence Day, Labor Day, Thanksgiving,
    Christmas; a holiday falling on a Sunday is observed on the Monday."""
    fixed = [date(year, 1, 1), date(year, 7, 4), date(year, 12, 25)]
    days = {d + timedelta(days=1) if d.weekday() == 6 else d for d in fixed}
    days.add(_last_weekday(year, 5, 0))
    days.add(_nth_weekday(year, 9, 0, 1))
    days.add(_nth_weekday(year, 11, 3, 4))
    return frozenset(days)


_EPOCH = date(1970, 1, 1)


def holiday_day_numbers(first_year: int, last_year: int) -> np.ndarray:
    """NERC holidays of the years ``first_year..last_year`` as days since 1970-01-01 (sorted int64)."""
    days = [
        (d - _EPOCH).days for year in range(first_year, last_year + 1) for d in nerc_holidays(year)
    ]
    return np.array(sorted(days), dtype=np.int64)


# --- counter-based randomness --------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> _S30)
    x = x * _MIX1
    x = x ^ (x >> _S27)
    x = x * _MIX2
    return x ^ (x >> _S31)


def hash64(*parts) -> np.ndarray:
    """A well-mixed uint64 per element of the broadcast ``parts`` (ints or int arrays; non-negative)."""
    arrays = [np.atleast_1d(np.asarray(p)).astype(np.uint64) for p in parts]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    h = np.zeros(shape, dtype=np.uint64)
    for a in arrays:
        h = _mix(h ^ (a + _GOLDEN))
    return h


def uniform(h: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from a hash array (its top 53 bits)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def normal(h: np.ndarray) -> np.ndarray:
    """Standard normal floats from a hash array (Box-Muller over its two 32-bit halves)."""
    u1 = ((h >> np.uint64(32)).astype(np.float64) + 1.0) * (1.0 / 4294967297.0)
    u2 = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) * (1.0 / 4294967296.0)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
