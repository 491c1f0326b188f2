"""Retail tariffs: TOU energy rates and a demand charge with its peak window.

Loaded from ``vpp_pipeline/config/tariffs.toml`` (package data; ``VPP_TARIFFS_PATH``
overrides it). A meter refers to its tariff by its Leap ``utility.tariff`` code; unknown
codes resolve to the file's ``fallback`` tariff with reason code ``TARIFF_UNKNOWN``.

Rates are $/kWh of imported energy; the demand charge is $/kW-month on the month's highest
15-minute import inside the demand window. Hours are the tariff's local wall clock;
functions here take UTC hour starts and convert at this edge.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

TARIFF_UNKNOWN = "TARIFF_UNKNOWN"
TARIFF_MISSING = "TARIFF_MISSING"
_DAY_SETS = {"all": frozenset(range(7)), "weekdays": frozenset(range(5)), "weekends": {5, 6}}


@dataclass(frozen=True)
class HourWindow:
    """Local hours ``[start_hour, end_hour)`` on ``days`` (all / weekdays / weekends)."""

    start_hour: int
    end_hour: int
    days: str = "all"

    def __post_init__(self) -> None:
        if self.days not in _DAY_SETS:
            raise ValueError(f"days must be one of {sorted(_DAY_SETS)}, got {self.days!r}")
        if not 0 <= self.start_hour < self.end_hour <= 24:
            raise ValueError(f"bad hour window [{self.start_hour}, {self.end_hour})")

    def contains(self, local: datetime) -> bool:
        return (
            local.weekday() in _DAY_SETS[self.days]
            and self.start_hour <= local.hour < self.end_hour
        )


@dataclass(frozen=True)
class TouPeriod:
    name: str
    window: HourWindow
    energy_usd_per_kwh: float


@dataclass(frozen=True)
class Tariff:
    """One retail tariff. ``periods``: first match wins; the last should cover all hours."""

    code: str
    name: str
    timezone: str
    periods: tuple[TouPeriod, ...]
    demand_charge_usd_per_kw_month: float
    demand_window: HourWindow

    def _local(self, hour_starts_utc: Sequence[datetime]) -> list[datetime]:
        tz = ZoneInfo(self.timezone)
        return [h.astimezone(tz) for h in hour_starts_utc]

    def period_names(self, hour_starts_utc: Sequence[datetime]) -> list[str]:
        return [self._period(local).name for local in self._local(hour_starts_utc)]

    def energy_usd_per_kwh(self, hour_starts_utc: Sequence[datetime]) -> np.ndarray:
        """Energy rate of each hour ($/kWh imported)."""
        return np.array(
            [self._period(local).energy_usd_per_kwh for local in self._local(hour_starts_utc)]
        )

    def in_demand_window(self, hour_starts_utc: Sequence[datetime]) -> np.ndarray:
        """Whether each hour counts toward the billed demand (bool array)."""
        return np.array([self.demand_window.contains(t) for t in self._local(hour_starts_utc)])

    def _period(self, local: datetime) -> TouPeriod:
        for period in self.periods:
            if period.window.contains(local):
                return period
        raise ValueError(f"tariff {self.code}: no period covers {local.isoformat()}")


@dataclass(frozen=True)
class TariffBook:
    """All configured tariffs plus the fallback for unknown codes."""

    tariffs: dict[str, Tariff]
    fallback_code: str

    def resolve(self, code: str | None) -> tuple[Tariff, str | None]:
        """``(tariff, reason_code)``: reason is None for a known code, else
        ``TARIFF_MISSING`` (no code on the meter) or ``TARIFF_UNKNOWN``."""
        if code and code in self.tariffs:
            return self.tariffs[code], None
        return self.tariffs[self.fallback_code], TARIFF_UNKNOWN if code else TARIFF_MISSING


def default_tariffs_path() -> Path | None:
    """``VPP_TARIFFS_PATH`` when set, else None (the packaged file)."""
    value = os.environ.get("VPP_TARIFFS_PATH", "").strip()
    return Path(value) if value else None


def _packaged_text() -> str:
    try:
        return resources.files("vpp_pipeline").joinpath("config/tariffs.toml").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        return (Path(__file__).resolve().parent.parent / "config" / "tariffs.toml").read_text()


def load_tariffs(path: str | Path | None = None) -> TariffBook:
    """Parse a tariffs TOML file (default: ``VPP_TARIFFS_PATH`` or the packaged file)."""
    path = path if path is not None else default_tariffs_path()
    text = Path(path).read_text() if path is not None else _packaged_text()
    return parse_tariffs(tomllib.loads(text))


def parse_tariffs(data: dict) -> TariffBook:
    tariffs: dict[str, Tariff] = {}
    for code, spec in data.get("tariffs", {}).items():
        try:
            tariffs[code] = Tariff(
                code=code,
                name=spec.get("name", code),
                timezone=spec.get("timezone", "America/Los_Angeles"),
                periods=tuple(
                    TouPeriod(
                        name=p["name"],
                        window=HourWindow(p["start_hour"], p["end_hour"], p.get("days", "all")),
                        energy_usd_per_kwh=float(p["energy_usd_per_kwh"]),
                    )
                    for p in spec["periods"]
                ),
                demand_charge_usd_per_kw_month=float(spec.get("demand_charge_usd_per_kw_month", 0)),
                demand_window=HourWindow(
                    **spec.get("demand_window", {"start_hour": 0, "end_hour": 24})
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"tariff {code!r} is malformed: {exc}") from exc
        ZoneInfo(tariffs[code].timezone)
    fallback = data.get("fallback")
    if fallback not in tariffs:
        raise ValueError(f"fallback tariff {fallback!r} is not defined in the tariffs file")
    for tariff in tariffs.values():
        # every hour of the week must have a rate
        missing = [
            (d, h)
            for d in range(7)
            for h in range(24)
            if not any(
                d in _DAY_SETS[p.window.days] and p.window.start_hour <= h < p.window.end_hour
                for p in tariff.periods
            )
        ]
        if missing:
            raise ValueError(f"tariff {tariff.code!r} has no rate for (weekday, hour) {missing[0]}")
    return TariffBook(tariffs=tariffs, fallback_code=fallback)
