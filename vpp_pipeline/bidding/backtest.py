"""How much money do the bids make? Replay past trading days on the sandbox and settle.

``run_backtest(seed, days, end)``: for each trading day of the window and each CAISO
battery, every policy (``backtest_policies``) decides the day as it could have (the
pipeline's policy at its decision time, on what was known then: ``backtest_data``), and
``settlement.settle_day`` settles it against the sandbox's truth, carrying each policy's
state of charge and month's billed peak from day to day. The same day is also settled with
its awards removed: where the awards raised the month's billed peak, the plan risked a
peak it did not mean to (``award_raised_peak_kw``).

Result: one row per (policy, battery, trading day) and totals per policy, with the value
capture (policy net value / perfect-foresight net value). Net value is measured against the
same site with its battery idle: market revenue + bill savings (TOU energy + demand charge)
- degradation, plus at the end the change of stored energy, valued at what refilling it
costs (the battery's cheapest TOU rate / one-way efficiency).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from vpp_pipeline.bidding import market
from vpp_pipeline.bidding.backtest_data import (
    BacktestData,
    decision_time,
    knowledge_at,
    load_backtest_data,
)
from vpp_pipeline.bidding.backtest_policies import NaivePolicy, PerfectForesight, PipelinePolicy
from vpp_pipeline.bidding.fleet import BidSettings
from vpp_pipeline.bidding.settlement import DayTruth, FleetState, settle_day
from vpp_pipeline.bidding.tariffs import TariffBook, load_tariffs

POLICIES = ("pipeline", "perfect_foresight", "naive")
#: A month's billed peak raised by less than this (kW) is not counted as raised by awards.
RAISED_PEAK_TOLERANCE_KW = 0.5


@dataclass
class BacktestResult:
    """``rows``: one per (policy, meter_id, trading_day); ``totals``: one per policy;
    ``months``: billed peak per (policy, meter_id, month); ``timings`` in seconds."""

    seed: int
    days: list[date]
    rows: pl.DataFrame
    totals: pl.DataFrame
    months: pl.DataFrame
    timings: dict = field(default_factory=dict)

    def per_day(self) -> pl.DataFrame:
        """Per trading day, summed over batteries: net value per policy side by side."""
        return (
            self.rows.group_by("trading_day", "policy")
            .agg(pl.col(c).sum() for c in VALUE_COLUMNS)
            .sort("trading_day", "policy")
        )


VALUE_COLUMNS = (
    "market_revenue_usd",
    "energy_savings_usd",
    "demand_charge_usd",
    "idle_demand_charge_usd",
    "bill_savings_usd",
    "degradation_usd",
    "net_value_usd",
)


def default_end(now: datetime | None = None) -> date:
    """Yesterday's trading day."""
    return market.trading_day_of(now or datetime.now(UTC)) - timedelta(days=1)


def initial_state(data: BacktestData) -> FleetState:
    """Every policy starts the window alike: SoC half-way between its limits and the
    month's billed peak as the billing meter had it before the window."""
    start = data.window_start
    month = int(data.month[start])
    counted = (data.month[:start] == month)[None, :] & data.demand_window[:, :start]
    peak = np.where(counted, data.metered_kw[:, :start], -np.inf).max(axis=1, initial=-np.inf)
    peak = np.maximum(peak, 0.0) * (data.spec.demand_charge_usd_per_kw_month > 0)
    spec = data.spec
    return FleetState((spec.soc_min_kwh + spec.soc_max_kwh) / 2, month, peak, peak.copy())


def day_truth(data: BacktestData, day: date) -> DayTruth:
    cols = data.day_slices[day]
    return DayTruth(
        load_kw=data.site_load_kw[:, cols],
        price_usd_per_kwh=data.prices_by_battery(cols),
        energy_usd_per_kwh=data.energy_usd_per_kwh[:, cols],
        demand_window=data.demand_window[:, cols],
        month=day.year * 12 + day.month - 1,
    )


def run_backtest(
    seed: int = 7,
    days: int = 30,
    end: date | None = None,
    *,
    policies: tuple[str, ...] = POLICIES,
    settings: BidSettings | None = None,
    book: TariffBook | None = None,
    data: BacktestData | None = None,
    progress: Callable[[str], None] | None = None,
    adaptive_level: bool = True,
) -> BacktestResult:
    """Backtest ``policies`` over the ``days`` trading days ending ``end`` (default
    yesterday) on the sandbox portfolio of ``seed``. Deterministic in (seed, days, end,
    settings). ``adaptive_level``: see ``settlement.settle_day``."""
    started = time.perf_counter()
    settings = settings or BidSettings()
    book = book or load_tariffs()
    unknown = set(policies) - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; choose from {POLICIES}")
    if days < 1:
        raise ValueError("days must be at least 1")
    if data is None:
        data = load_backtest_data(seed, days, end or default_end(), book, settings)
    loaded = time.perf_counter()
    fleet = data.spec.fleet()
    b, n = len(data.spec.meter_ids), len(data.hour_start)
    state = {p: initial_state(data) for p in policies}
    billed = {
        p: np.where(np.arange(n) < data.window_start, data.metered_kw, np.nan) for p in policies
    }
    actors = {
        "pipeline": PipelinePolicy(data, book, settings) if "pipeline" in policies else None,
        "perfect_foresight": PerfectForesight(data, settings),
        "naive": NaivePolicy(data),
    }
    decide_s = dict.fromkeys(policies, 0.0)
    settle_s = 0.0
    records = []
    try:
        for index, day in enumerate(data.days):
            truth = day_truth(data, day)
            for policy in policies:
                t0 = time.perf_counter()
                if policy == "pipeline":
                    known = knowledge_at(data, billed[policy], day, decision_time(day))
                    plan = actors[policy].decide(day, known)
                elif policy == "perfect_foresight":
                    plan = actors[policy].decide(day, state[policy])
                else:
                    plan = actors[policy].decide(day)
                t1 = time.perf_counter()
                settled, after = settle_day(
                    fleet, truth, plan, state[policy], adaptive_level=adaptive_level
                )
                quiet, _ = settle_day(
                    fleet, truth, plan, state[policy], with_awards=False,
                    adaptive_level=adaptive_level,
                )  # fmt: skip
                settle_s += time.perf_counter() - t1
                decide_s[policy] += t1 - t0
                billed[policy][:, data.day_slices[day]] = settled.billed_import_kw
                records.append(_day_rows(policy, day, data, plan, settled, quiet, truth))
                state[policy] = after
            if progress:
                progress(f"{index + 1}/{len(data.days)} {day.isoformat()}")
    finally:
        if actors["pipeline"] is not None:
            actors["pipeline"].close()
    rows = pl.concat(records)
    months = _month_peaks(rows)
    totals = _totals(rows, data, state, initial_state(data), months)
    finished = time.perf_counter()
    return BacktestResult(
        seed=data.seed,
        days=data.days,
        rows=rows,
        totals=totals,
        months=months,
        timings={
            "load_truth_s": round(loaded - started, 3),
            **{f"decide_{p}_s": round(v, 3) for p, v in decide_s.items()},
            "settle_s": round(settle_s, 3),
            "total_s": round(finished - started, 3),
            "batteries": b,
        },
    )


def _day_rows(policy, day, data, plan, settled, quiet, truth) -> pl.DataFrame:
    raised = np.clip(settled.month_peak_kw - quiet.month_peak_kw, 0.0, None)
    window = truth.demand_window
    # hours the market paid more than the site's dearest TOU energy of the day
    dear = truth.price_usd_per_kwh > truth.energy_usd_per_kwh.max(axis=1, keepdims=True)
    return pl.DataFrame(
        {
            "policy": policy,
            "meter_id": data.spec.meter_ids,
            "trading_day": day,
            "month": f"{day.year}-{day.month:02d}",
            "offered_kwh": plan.curve_kw.max(axis=2).sum(axis=1),
            "awarded_kwh": settled.awarded_kw.sum(axis=1),
            "delivered_kwh": settled.delivered_kw.sum(axis=1),
            "shortfall_kwh": settled.shortfall_kw.sum(axis=1),
            "market_revenue_usd": settled.market_revenue_usd,
            "revenue_above_tou_usd": np.where(dear, settled.hourly_revenue_usd, 0.0).sum(axis=1),
            "energy_savings_usd": settled.energy_savings_usd,
            "demand_charge_usd": settled.demand_charge_usd,
            "idle_demand_charge_usd": settled.idle_demand_charge_usd,
            "bill_savings_usd": settled.bill_savings_usd,
            "degradation_usd": settled.degradation_usd,
            "net_value_usd": settled.net_value_usd,
            "planned_peak_kw": plan.billed_peak_kw,
            "month_peak_kw": settled.month_peak_kw,
            "award_raised_peak_kw": np.where(raised > RAISED_PEAK_TOLERANCE_KW, raised, 0.0),
            "end_soc_kwh": settled.soc_kwh[:, -1],
            "window_load_kwh": np.where(window, truth.load_kw, 0.0).sum(axis=1),
            "window_forecast_kwh": np.where(window, plan.load_forecast_kw, 0.0).sum(axis=1),
            "window_abs_error_kwh": np.where(
                window, np.abs(truth.load_kw - plan.load_forecast_kw), 0.0
            ).sum(axis=1),
        }
    )


def _month_peaks(rows: pl.DataFrame) -> pl.DataFrame:
    return (
        rows.sort("trading_day")
        .group_by("policy", "meter_id", "month", maintain_order=True)
        .agg(
            pl.col("month_peak_kw").last(),
            pl.col("demand_charge_usd").sum(),
            (pl.col("award_raised_peak_kw") > 0).sum().alias("days_awards_raised_peak"),
        )
    )


def _totals(rows, data, state, start, months) -> pl.DataFrame:
    spec = data.spec
    eta = np.sqrt(spec.round_trip_efficiency)
    cheapest = data.energy_usd_per_kwh[:, data.window_start :].min(axis=1)
    soc_value = {
        p: float(((s.soc_kwh - start.soc_kwh) * cheapest / eta).sum()) for p, s in state.items()
    }
    totals = (
        rows.group_by("policy")
        .agg(
            *(pl.col(c).sum() for c in VALUE_COLUMNS),
            pl.col("offered_kwh").sum(),
            pl.col("awarded_kwh").sum(),
            pl.col("delivered_kwh").sum(),
            pl.col("shortfall_kwh").sum(),
            pl.col("revenue_above_tou_usd").sum(),
            (pl.col("window_abs_error_kwh").sum() / pl.col("window_load_kwh").sum()).alias(
                "window_load_error"
            ),
            (pl.col("award_raised_peak_kw") > 0).sum().alias("days_awards_raised_peak"),
        )
        .join(
            months.group_by("policy").agg(
                pl.col("month_peak_kw").sum().alias("sum_month_peak_kw"),
                (pl.col("days_awards_raised_peak") > 0).sum().alias("months_awards_raised_peak"),
            ),
            on="policy",
        )
        .with_columns(
            pl.col("policy")
            .replace_strict(soc_value, return_dtype=pl.Float64)
            .alias("soc_change_usd")
        )
        .with_columns((pl.col("net_value_usd") + pl.col("soc_change_usd")).alias("total_value_usd"))
    )
    reference = totals.filter(pl.col("policy") == "perfect_foresight")["total_value_usd"]
    ref = float(reference[0]) if len(reference) else float("nan")
    order = {p: i for i, p in enumerate(POLICIES)}
    return totals.with_columns((pl.col("total_value_usd") / ref).alias("value_capture")).sort(
        pl.col("policy").replace_strict(order, return_dtype=pl.Int32)
    )
