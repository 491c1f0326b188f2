"""The battery LP and bid curves on problems with known optima (no Dagster, no database)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from vpp_pipeline.bidding.curves import build_curve
from vpp_pipeline.bidding.market import next_biddable_day, trading_day_hours, trading_day_start
from vpp_pipeline.bidding.optimize import BidProblem, optimize_batteries

H = 24


def test_flat_prices_without_demand_charge_do_not_discharge():
    problem = BidProblem.build(
        ["a", "b"], H, price_usd_per_kwh=0.05, energy_usd_per_kwh=0.12, load_kw=300.0
    )
    plan = optimize_batteries(problem)
    assert plan.market_discharge_kw.max() < 1e-6
    assert plan.self_discharge_kw.max() < 1e-6
    assert plan.reserve_kw.max() < 1e-6


def test_price_spike_is_discharged_into_up_to_the_power_limit():
    price = np.full(H, 0.05)
    price[19] = 0.80
    problem = BidProblem.build(
        ["a"], H, power_kw=100.0, energy_kwh=400.0, price_usd_per_kwh=price,
        energy_usd_per_kwh=0.12, load_kw=300.0,
    )  # fmt: skip
    plan = optimize_batteries(problem)
    assert plan.market_discharge_kw[0, 19] == pytest.approx(100.0, abs=1e-6)
    assert np.delete(plan.market_discharge_kw[0], 19).max() < 1e-6
    # the spike energy is worth less than the spike price: the LP's value of it is below
    assert plan.opportunity_cost_usd_per_kwh[0, 19] < 0.80


def test_spike_larger_than_the_energy_is_limited_by_min_soc():
    price = np.full(H, 0.05)
    price[18:22] = 0.90
    problem = BidProblem.build(
        ["a"], H, power_kw=200.0, energy_kwh=400.0, price_usd_per_kwh=price,
        energy_usd_per_kwh=0.12, load_kw=500.0,
    )  # fmt: skip
    plan = optimize_batteries(problem)
    eta = np.sqrt(0.88)
    # from 90 % down to 10 % plus whatever is charged before; never below min SoC
    assert plan.soc_kwh.min() >= 40.0 - 1e-6
    assert plan.market_discharge_kw[0, 18:22].sum() <= (360 - 40) * eta + 200 * 18 * eta + 1e-6
    assert plan.market_discharge_kw[0, 18:22].sum() > 0


def test_demand_charge_keeps_energy_for_the_site_peak():
    window = np.zeros(H, bool)
    window[16:21] = True
    load = np.full(H, 300.0)
    load[16:21] = 500.0
    problem = BidProblem.build(
        ["a"], H, power_kw=100.0, energy_kwh=400.0, price_usd_per_kwh=0.05,
        energy_usd_per_kwh=0.12, load_kw=load, demand_window=window,
        demand_charge_usd_per_kw_month=20.0, month_to_date_peak_kw=350.0,
    )  # fmt: skip
    plan = optimize_batteries(problem)
    assert (plan.reserve_kw[0, 16:21] > 1.0).all()
    assert plan.billed_peak_kw[0] < 500.0 - 1.0
    # the energy held for the peak is priced above the day-ahead price in the window
    assert (plan.opportunity_cost_usd_per_kwh[0, 16:21] > 0.05).all()
    # without the demand charge nothing is reserved
    flat = BidProblem.build(
        ["a"], H, power_kw=100.0, energy_kwh=400.0, price_usd_per_kwh=0.05,
        energy_usd_per_kwh=0.12, load_kw=load, demand_window=window,
    )  # fmt: skip
    assert optimize_batteries(flat).reserve_kw.max() < 1e-6


def test_soc_and_offers_stay_within_bounds_on_random_problems():
    rng = np.random.default_rng(3)
    b = 40
    window = np.zeros((b, H), bool)
    window[:, 16:21] = rng.random((b, 1)) < 0.7
    problem = BidProblem.build(
        [f"m{i}" for i in range(b)], H,
        power_kw=rng.uniform(50, 500, b), energy_kwh=rng.uniform(100, 2000, b),
        price_usd_per_kwh=rng.uniform(-0.02, 0.6, (b, H)),
        energy_usd_per_kwh=rng.uniform(0.08, 0.25, (b, H)),
        load_kw=rng.uniform(-50, 800, (b, H)), demand_window=window,
        demand_charge_usd_per_kw_month=rng.uniform(0, 30, b),
        month_to_date_peak_kw=rng.uniform(0, 600, b),
        exports_allowed=rng.random(b) < 0.3,
    )  # fmt: skip
    plan = optimize_batteries(problem, chunk_size=16)
    tol = 1e-6
    assert (plan.soc_kwh >= problem.soc_min_kwh[:, None] - tol).all()
    assert (plan.soc_kwh <= problem.soc_max_kwh[:, None] + tol).all()
    discharge = plan.self_discharge_kw + plan.market_discharge_kw
    assert (discharge <= problem.power_kw[:, None] + tol).all()
    assert (plan.available_kw <= problem.power_kw[:, None] + tol).all()
    assert (plan.available_kw >= plan.market_discharge_kw - tol).all()
    no_export = ~problem.exports_allowed
    net = discharge - plan.charge_kw - np.maximum(problem.load_kw, 0)
    assert (net[no_export] <= tol * 10).all()


@pytest.mark.parametrize(("day", "hours"), [(date(2027, 3, 14), 23), (date(2027, 11, 7), 25)])
def test_dst_trading_days_have_23_or_25_hours_and_curves(day, hours):
    slots = trading_day_hours(day)
    assert len(slots) == hours
    assert slots[0][0] == trading_day_start(day)
    price = np.full(hours, 0.05)
    price[-5] = 0.7
    problem = BidProblem.build(
        ["a"], hours, price_usd_per_kwh=price, energy_usd_per_kwh=0.1, load_kw=400.0
    )
    plan = optimize_batteries(problem)
    assert plan.soc_kwh.shape == (1, hours)
    curves = [
        build_curve(
            available_kw=plan.available_kw[0, t],
            planned_market_kw=plan.market_discharge_kw[0, t],
            opportunity_cost_usd_per_kwh=plan.opportunity_cost_usd_per_kwh[0, t],
            price_forecast_usd_per_kwh=price[t],
        )
        for t in range(hours)
    ]
    assert len(curves) == hours
    assert curves[-5][0]["quantity_in_kw"] == pytest.approx(100.0)


def test_curve_is_ascending_priced_above_opportunity_cost_and_within_available():
    # the planned sale at the opportunity cost (above the forecast), the extra at its price
    curve = build_curve(
        available_kw=87.46, planned_market_kw=40.0, opportunity_cost_usd_per_kwh=0.123456,
        price_forecast_usd_per_kwh=0.05, extra_price_usd_per_kwh=0.30001,
    )  # fmt: skip
    assert curve == [
        {"quantity_in_kw": 40.0, "price": 0.1235},
        {"quantity_in_kw": 87.4, "price": 0.3001},
    ]
    # an extra price not above the first point's: one point for everything (a curve must rise)
    assert build_curve(
        available_kw=87.46, planned_market_kw=40.0, opportunity_cost_usd_per_kwh=0.123456,
        price_forecast_usd_per_kwh=0.05, extra_price_usd_per_kwh=0.1,
    ) == [{"quantity_in_kw": 87.4, "price": 0.1235}]  # fmt: skip
    # no extra price: only the planned sale
    assert build_curve(
        available_kw=40.0, planned_market_kw=40.0, opportunity_cost_usd_per_kwh=0.2,
        price_forecast_usd_per_kwh=0.25,
    ) == [{"quantity_in_kw": 40.0, "price": 0.25}]  # fmt: skip
    # energy worth more than Leap's $1.00 cap is not offered
    assert build_curve(
        available_kw=50, planned_market_kw=0, opportunity_cost_usd_per_kwh=1.2,
        price_forecast_usd_per_kwh=0.1,
    ) == []  # fmt: skip
    # the floor
    low = build_curve(
        available_kw=10, planned_market_kw=10, opportunity_cost_usd_per_kwh=0.0,
        price_forecast_usd_per_kwh=-0.02,
    )  # fmt: skip
    assert low == [{"quantity_in_kw": 10.0, "price": 0.01}]


def test_next_biddable_day_respects_the_24_hour_rule():
    from datetime import UTC, datetime

    # 06:00 PST on Dec 1 -> Dec 3 (Dec 2 starts in 18 hours)
    assert next_biddable_day(datetime(2026, 12, 1, 14, tzinfo=UTC)) == date(2026, 12, 3)
    # 23:50 PST on Dec 1: Dec 3 starts in 24 h 10 min, inside the 30-minute margin -> Dec 4
    assert next_biddable_day(datetime(2026, 12, 2, 7, 50, tzinfo=UTC)) == date(2026, 12, 4)
