"""The batteries a bid is built for, as arrays: one definition of each battery's limits and
retail tariff, shared by the bid pipeline (``pipeline.build_bid_inputs``), the backtest's
perfect-foresight reference and the settlement, so that all of them see the same battery.

Per battery (B,): power, energy, SoC limits from the meter's min/max SoC % (defaults
``BidSettings``), the tariff's demand charge. Per battery and hour (B, H): the TOU rate and
whether the hour is in the demand window. Battery SUBMETERs cannot see site load: no
self-use, no demand charge, exports allowed (the submeter's own discharge is what is
measured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from vpp_pipeline.bidding.optimize import (
    DEFAULT_DEGRADATION_USD_PER_KWH,
    DEFAULT_ROUND_TRIP_EFFICIENCY,
    BidProblem,
)
from vpp_pipeline.bidding.settlement import Fleet
from vpp_pipeline.bidding.tariffs import Tariff, TariffBook


@dataclass(frozen=True)
class BidSettings:
    """Tunable numbers of the bid policy (documented defaults; docs/bidding.md)."""

    price_lookback_days: int = 21
    price_like_days: int = 5
    load_lookback_days: int = 45
    load_like_days: int = 10
    round_trip_efficiency: float = DEFAULT_ROUND_TRIP_EFFICIENCY
    degradation_usd_per_kwh: float = DEFAULT_DEGRADATION_USD_PER_KWH
    default_min_soc_pct: float = 10.0
    default_max_soc_pct: float = 90.0
    #: the demand-window peak is planned against the load forecast plus this many like-day
    #: spreads (0 = the forecast alone), where the battery's power could cover it
    peak_load_z: float = 2.0
    #: how offers beyond the planned sale are made (``offers.OFFER_MODES``)
    offer_mode: str = "surplus"
    #: the extra offer's markup in the ``headroom`` mode
    premium: float = 0.25


@dataclass
class FleetSpec:
    """Static facts per battery, in ``meter_ids`` order."""

    meter_ids: list[str]
    power_kw: np.ndarray
    energy_kwh: np.ndarray
    soc_min_kwh: np.ndarray
    soc_max_kwh: np.ndarray
    is_submeter: np.ndarray
    tariff_codes: list[str | None]
    tariffs: list[Tariff]
    tariff_problems: list[str | None]
    round_trip_efficiency: float
    degradation_usd_per_kwh: float

    @property
    def demand_charge_usd_per_kw_month(self) -> np.ndarray:
        charge = np.array([t.demand_charge_usd_per_kw_month for t in self.tariffs], float)
        return charge * ~self.is_submeter

    def tariff_arrays(self, hour_starts: Sequence[datetime]) -> tuple[np.ndarray, np.ndarray]:
        """``(energy_usd_per_kwh, demand_window)``, (B, H), for UTC ``hour_starts``; each
        distinct tariff is evaluated once."""
        rates, windows = {}, {}
        for tariff in self.tariffs:
            if tariff.code not in rates:
                rates[tariff.code] = tariff.energy_usd_per_kwh(hour_starts)
                windows[tariff.code] = tariff.in_demand_window(hour_starts)
        energy = np.stack([rates[t.code] for t in self.tariffs]).reshape(len(self.tariffs), -1)
        window = np.stack([windows[t.code] for t in self.tariffs]).reshape(len(self.tariffs), -1)
        return energy, window & ~self.is_submeter[:, None]

    def fleet(self) -> Fleet:
        """The settlement's view of the same batteries."""
        return Fleet(
            meter_ids=list(self.meter_ids),
            power_kw=self.power_kw,
            soc_min_kwh=self.soc_min_kwh,
            soc_max_kwh=self.soc_max_kwh,
            round_trip_efficiency=np.full(len(self.meter_ids), self.round_trip_efficiency),
            demand_charge_usd_per_kw_month=self.demand_charge_usd_per_kw_month,
            exports_allowed=self.is_submeter.copy(),
            self_use_allowed=~self.is_submeter,
            degradation_usd_per_kwh=self.degradation_usd_per_kwh,
        )

    def problem(
        self,
        hour_starts: Sequence[datetime],
        *,
        load_kw: np.ndarray,
        price_usd_per_kwh: np.ndarray,
        can_bid: np.ndarray | bool = True,
        month_to_date_peak_kw: np.ndarray | float = 0.0,
        initial_soc_kwh: np.ndarray | None = None,
        peak_load_kw: np.ndarray | None = None,
    ) -> BidProblem:
        """The LP's inputs for these batteries over ``hour_starts`` (any number of hours:
        one trading day for the pipeline, a month for perfect foresight)."""
        energy, window = self.tariff_arrays(hour_starts)
        load = np.where(self.is_submeter[:, None], 0.0, np.nan_to_num(load_kw))
        extra = {} if initial_soc_kwh is None else {"initial_soc_kwh": initial_soc_kwh}
        if peak_load_kw is not None:
            extra["peak_load_kw"] = np.where(self.is_submeter[:, None], 0.0, peak_load_kw)
        return BidProblem.build(
            list(self.meter_ids),
            len(hour_starts),
            power_kw=self.power_kw,
            energy_kwh=self.energy_kwh,
            load_kw=load,
            price_usd_per_kwh=np.nan_to_num(price_usd_per_kwh),
            energy_usd_per_kwh=energy,
            demand_window=window,
            demand_charge_usd_per_kw_month=self.demand_charge_usd_per_kw_month,
            month_to_date_peak_kw=month_to_date_peak_kw,
            soc_min_kwh=self.soc_min_kwh,
            soc_max_kwh=self.soc_max_kwh,
            round_trip_efficiency=self.round_trip_efficiency,
            can_bid=can_bid,
            exports_allowed=self.is_submeter,
            self_use_allowed=~self.is_submeter,
            **extra,
        )


def fleet_spec(per_meter: pl.DataFrame, book: TariffBook, settings: BidSettings) -> FleetSpec:
    """From one row per battery with ``meter_id``, ``tariff_code``, ``power_kw``,
    ``energy_kwh``, ``min_soc_pct`` / ``max_soc_pct`` (null = the settings' defaults) and
    ``is_submeter``."""
    energy = per_meter["energy_kwh"].to_numpy().astype(float)
    min_pct = per_meter["min_soc_pct"].fill_null(settings.default_min_soc_pct).to_numpy()
    max_pct = per_meter["max_soc_pct"].fill_null(settings.default_max_soc_pct).to_numpy()
    resolved = [book.resolve(code) for code in per_meter["tariff_code"].to_list()]
    return FleetSpec(
        meter_ids=per_meter["meter_id"].to_list(),
        power_kw=per_meter["power_kw"].to_numpy().astype(float),
        energy_kwh=energy,
        soc_min_kwh=energy * min_pct.astype(float) / 100,
        soc_max_kwh=energy * max_pct.astype(float) / 100,
        is_submeter=per_meter["is_submeter"].fill_null(False).to_numpy().astype(bool),
        tariff_codes=per_meter["tariff_code"].to_list(),
        tariffs=[t for t, _ in resolved],
        tariff_problems=[reason for _, reason in resolved],
        round_trip_efficiency=settings.round_trip_efficiency,
        degradation_usd_per_kwh=settings.degradation_usd_per_kwh,
    )
