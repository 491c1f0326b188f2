"""The bid backtest: a day settled by hand, perfect foresight equal to its LP, no look-ahead,
and the whole backtest on the sandbox (award-raised peaks, ordering, determinism, CLI)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import httpx
import numpy as np
import pytest

from vpp_pipeline.bidding import market
from vpp_pipeline.bidding.backtest import run_backtest
from vpp_pipeline.bidding.backtest_data import decision_time, knowledge_at, load_backtest_data
from vpp_pipeline.bidding.backtest_policies import PipelinePolicy
from vpp_pipeline.bidding.fleet import BidSettings
from vpp_pipeline.bidding.optimize import BidProblem, optimize_batteries
from vpp_pipeline.bidding.settlement import (
    DayPlan,
    DayTruth,
    Fleet,
    FleetState,
    awards,
    empty_curves,
    settle_day,
)
from vpp_pipeline.bidding.tariffs import load_tariffs
from vpp_pipeline.cli import main
from vpp_pipeline.sandbox.bid_truth import site_load_truth

END = date(2026, 11, 5)  # the window holds 2026-11-01, a 25-hour trading day (DST ends)


def _one_battery() -> Fleet:
    return Fleet(
        meter_ids=["m"],
        power_kw=np.array([100.0]),
        soc_min_kwh=np.array([20.0]),
        soc_max_kwh=np.array([220.0]),
        round_trip_efficiency=np.array([0.81]),  # 0.9 each way
        demand_charge_usd_per_kw_month=np.array([10.0]),
        exports_allowed=np.array([False]),
        self_use_allowed=np.array([True]),
        degradation_usd_per_kwh=0.01,
    )


def test_one_day_settled_by_hand():
    fleet = _one_battery()
    truth = DayTruth(
        load_kw=np.array([[300.0, 300.0, 500.0, 400.0]]),
        price_usd_per_kwh=np.array([[0.05, 0.40, 0.20, 0.60]]),
        energy_usd_per_kwh=np.array([[0.10, 0.10, 0.30, 0.30]]),
        demand_window=np.array([[False, False, True, True]]),
        month=7,
    )
    qty, price = empty_curves(1, 4, 2)
    qty[0, 1], price[0, 1] = [50.0, 80.0], [0.30, 0.50]  # only the first point clears (0.40)
    qty[0, 2, 0], price[0, 2, 0] = 30.0, 0.25  # 0.25 > 0.20: nothing
    qty[0, 3, 0], price[0, 3, 0] = 40.0, 0.55  # clears at 0.60, paid 0.55 (pay-as-bid)
    plan = DayPlan(
        charge_kw=np.array([[100.0, 0.0, 0.0, 0.0]]),
        self_discharge_kw=np.array([[0.0, 0.0, 100.0, 60.0]]),
        soc_kwh=np.array([[120.0, 210.0, 210.0, 120.0]]),
        billed_peak_kw=np.array([400.0]),
        load_forecast_kw=truth.load_kw.copy(),
        reserve_kwh=np.zeros((1, 4)),
        curve_kw=qty,
        curve_usd_per_kwh=price,
    )
    state = FleetState(np.array([120.0]), 7, np.array([350.0]), np.array([350.0]))
    day, after = settle_day(fleet, truth, plan, state)

    # hour 0: charge 100 kW -> SoC 120 + 0.9 x 100 = 210 (energy for the later awards kept)
    # hour 1: award 50 kW at $0.30 -> SoC 210 - 50 / 0.9 = 154.44
    # hour 2: 121 kWh deliverable, 40 kept for hour 3's award: 81 kWh can shave. Holding 400
    #   here (100 kW) would leave hour 3 short, so the controller holds the level 81 kWh can
    #   keep over both hours: 500 - 81 = 419 now, 400 (forecast) next -> discharge 81 kW,
    #   import 419, SoC 154.44 - 81 / 0.9 = 64.44
    # hour 3: award 40 kW at $0.55 takes the last 40 kWh -> SoC 20, no self-use, import 400
    np.testing.assert_allclose(day.awarded_kw, [[0, 50, 0, 40]])
    np.testing.assert_allclose(day.delivered_kw, [[0, 50, 0, 40]], atol=1e-9)
    np.testing.assert_allclose(day.charge_kw, [[100, 0, 0, 0]])
    np.testing.assert_allclose(day.self_discharge_kw, [[0, 0, 81, 0]], atol=1e-6)
    np.testing.assert_allclose(day.soc_kwh, [[210, 154.4444, 64.4444, 20]], atol=1e-3)
    np.testing.assert_allclose(day.billed_import_kw, [[400, 300, 419, 400]], atol=1e-6)
    assert day.market_revenue_usd[0] == pytest.approx(50 * 0.30 + 40 * 0.55)  # 37
    assert day.energy_savings_usd[0] == pytest.approx(0.10 * -100 + 0.30 * 81)  # 14.3
    assert day.demand_charge_usd[0] == pytest.approx(10 * (419 - 350))  # 690
    assert day.idle_demand_charge_usd[0] == pytest.approx(10 * (500 - 350))  # 1500
    assert day.degradation_usd[0] == pytest.approx(0.01 * (50 + 81 + 40))  # 1.71
    assert day.bill_savings_usd[0] == pytest.approx(14.3 + 1500 - 690)
    assert day.net_value_usd[0] == pytest.approx(37 + 824.3 - 1.71)
    assert after.month_peak_kw[0] == pytest.approx(419) and after.soc_kwh[0] == pytest.approx(20)

    # the same plan without its awards holds 400 kW: the awards raised the month's peak by 19
    quiet, _ = settle_day(fleet, truth, plan, state, with_awards=False)
    np.testing.assert_allclose(quiet.self_discharge_kw, [[0, 0, 100, 60]], atol=1e-6)
    assert quiet.month_peak_kw[0] == pytest.approx(400)
    # a new month starts from nothing
    fresh, _ = settle_day(fleet, replace(truth, month=8), plan, state)
    assert fresh.demand_charge_usd[0] == pytest.approx(10 * 419)


def test_awards_clear_at_or_below_the_realised_price_and_never_below_the_floor():
    qty = np.array([[[40.0, 80.0, 200.0]]])
    price = np.array([[[0.18, 0.24, 0.28]]])
    for realised, awarded in ((0.17, 0), (0.18, 40), (0.25, 80), (0.50, 200)):
        assert awards(qty, price, np.array([[realised]]))[0, 0] == awarded
    floor = np.array([[[10.0]]]), np.array([[[0.01]]])
    assert awards(*floor, np.array([[0.009]]))[0, 0] == 0


def test_perfect_foresight_settles_to_the_value_of_its_lp():
    """The settlement of the LP's own optimum on realised data equals the LP's objective:
    perfect foresight is the optimum of the very rules every policy is settled by."""
    rng = np.random.default_rng(5)
    b, h = 6, 24
    window = np.zeros(h, bool)
    window[16:21] = True
    load = 300 + 200 * window + rng.uniform(-40, 40, (b, h))
    price = rng.uniform(0.02, 0.12, (b, h))
    price[:, 19] = rng.choice([0.05, 0.6], b)
    tou = np.where(window, 0.25, 0.12)
    problem = BidProblem.build(
        [f"m{i}" for i in range(b)], h, power_kw=rng.choice([100.0, 200.0], b),
        load_kw=load, price_usd_per_kwh=price, energy_usd_per_kwh=tou, demand_window=window,
        demand_charge_usd_per_kw_month=20.0, month_to_date_peak_kw=rng.uniform(350, 500, b),
        exports_allowed=np.array([False, False, False, False, True, True]),
        self_use_allowed=np.array([True, True, True, True, False, False]),
    )  # fmt: skip
    plan = optimize_batteries(problem)
    fleet = Fleet(
        problem.meter_ids, problem.power_kw, problem.soc_min_kwh, problem.soc_max_kwh,
        problem.round_trip_efficiency, problem.demand_charge_usd_per_kw_month,
        problem.exports_allowed, problem.self_use_allowed, 0.005,
    )  # fmt: skip
    day_plan = DayPlan(
        charge_kw=plan.charge_kw,
        self_discharge_kw=plan.self_discharge_kw,
        soc_kwh=np.column_stack([problem.initial_soc_kwh, plan.soc_kwh[:, :-1]]),
        billed_peak_kw=plan.billed_peak_kw,
        load_forecast_kw=load,
        reserve_kwh=plan.peak_reserve_kwh,
        curve_kw=plan.market_discharge_kw[..., None],
        curve_usd_per_kwh=np.where(plan.market_discharge_kw > 1e-9, price, np.inf)[..., None],
    )
    truth = DayTruth(load, price, np.broadcast_to(tou, (b, h)), np.broadcast_to(window, (b, h)), 1)
    mtd = problem.month_to_date_peak_kw
    state = FleetState(problem.initial_soc_kwh, 1, mtd, mtd)
    day, _ = settle_day(fleet, truth, day_plan, state)
    assert plan.market_discharge_kw.sum() > 1  # the test covers market sales too
    np.testing.assert_allclose(
        day.market_revenue_usd + day.energy_savings_usd - day.degradation_usd
        - day.demand_charge_usd,
        -plan.objective_usd + 20.0 * mtd,
        rtol=1e-6, atol=1e-4,
    )  # fmt: skip
    np.testing.assert_allclose(day.delivered_kw, plan.market_discharge_kw, atol=1e-6)


@pytest.fixture(scope="module")
def world():
    book, settings = load_tariffs(), BidSettings()
    return load_backtest_data(7, 6, END, book, settings), book, settings


def test_bids_use_nothing_known_after_the_decision_time(world):
    data, book, settings = world
    day = data.days[-1]
    at = decision_time(day)
    assert at <= market.trading_day_start(day) - timedelta(hours=24)
    assert market.next_biddable_day(at) == day  # the daily schedule's own pick
    n = len(data.hour_start)
    billed = np.where(np.arange(n) < data.window_start, data.metered_kw, np.nan)
    billed[:, data.window_start : data.day_slices[data.days[1]].stop] = 900.0  # settled so far

    def decide(d, billed_kw):
        policy = PipelinePolicy(d, book, settings)
        try:
            known = knowledge_at(d, billed_kw, day, at)
            return known, policy.decide(day, known)
        finally:
            policy.close()

    known, honest = decide(data, billed)
    assert known.reads["interval_start"].max() + timedelta(hours=1) <= at
    assert known.price_actuals["trading_day"].max() < day - timedelta(days=1)

    # change every load, price and billed import after the decision time: same bids
    later = data.hour_end > np.datetime64(at.astimezone(UTC).replace(tzinfo=None), "us")
    out = data.published_at > np.datetime64(at.astimezone(UTC).replace(tzinfo=None), "us")
    future = replace(
        data,
        site_load_kw=np.where(later, data.site_load_kw * 3, data.site_load_kw),
        metered_kw=np.where(later, data.metered_kw * 3, data.metered_kw),
        price_usd_per_kwh=np.where(out, data.price_usd_per_kwh * 5 + 0.3, data.price_usd_per_kwh),
    )
    _, blind = decide(future, np.where(later, 5000.0, billed))
    for field in ("curve_kw", "curve_usd_per_kwh", "charge_kw", "self_discharge_kw"):
        np.testing.assert_array_equal(getattr(blind, field), getattr(honest, field))
    assert honest.curve_kw.max() > 0  # there are bids to compare

    # the same change before the decision time does change them (the check can fail)
    past = replace(data, site_load_kw=np.where(later, data.site_load_kw, data.site_load_kw * 1.3))
    _, moved = decide(past, billed)
    assert not np.allclose(moved.self_discharge_kw, honest.self_discharge_kw)


def test_backtest_on_the_sandbox(world):
    data, book, settings = world
    result = run_backtest(data=data, book=book, settings=settings)
    rows, totals = result.rows, {r["policy"]: r for r in result.totals.iter_rows(named=True)}
    batteries = len(data.spec.meter_ids)
    assert batteries >= 15
    assert rows.height == 3 * batteries * len(data.days)
    hours = {d: len(market.trading_day_hours(d)) for d in data.days}
    assert hours[date(2026, 11, 1)] == 25
    pipeline, foresight, naive = (totals[p] for p in ("pipeline", "perfect_foresight", "naive"))
    # no month's demand charge raised by awards the plan did not mean to risk
    assert pipeline["days_awards_raised_peak"] == 0
    assert foresight["days_awards_raised_peak"] == 0 and foresight["shortfall_kwh"] < 1e-6
    # ... and the count does see such cases: the naive policy's floor bids raise peaks
    assert naive["days_awards_raised_peak"] > 0
    assert foresight["value_capture"] == pytest.approx(1.0)
    assert foresight["total_value_usd"] >= pipeline["total_value_usd"] > naive["total_value_usd"]
    assert pipeline["value_capture"] > 0.8
    # every figure adds up
    for row in (pipeline, foresight, naive):
        assert row["net_value_usd"] == pytest.approx(
            row["market_revenue_usd"] + row["bill_savings_usd"] - row["degradation_usd"]
        )


def test_backtest_is_deterministic_by_seed():
    first = run_backtest(seed=7, days=2, end=END)
    again = run_backtest(seed=7, days=2, end=END)
    assert first.rows.equals(again.rows)
    other = run_backtest(seed=11, days=2, end=END, policies=("naive",))
    assert set(other.rows["meter_id"]) != set(first.rows["meter_id"])


def test_cli_prints_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(
        ["backtest-bids", "--days", "2", "--end", END.isoformat(), "--json", str(out),
         "--policies", "pipeline,perfect_foresight"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "perfect_foresight" in printed and "capture" in printed
    report = json.loads(out.read_text())
    assert {t["policy"] for t in report["totals"]} == {"pipeline", "perfect_foresight"}
    assert report["last_day"] == END.isoformat() and len(report["per_day"]) == 4
    assert main(["backtest-bids", "--days", "0"]) == 2
    assert main(["backtest-bids", "--policies", "pipeline,oracle"]) == 2


def test_site_load_truth_over_http(sandbox):
    """The ground-truth endpoint serves the same hourly site load as the Python function."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    portfolio = sandbox.state.portfolio
    meter = next(m for m, s in portfolio.sites.items() if s.battery_power_kw)
    answer = httpx.post(
        sandbox.base_url + "/_sandbox/ground_truth/site_load",
        json={"meter_ids": [meter], "start": day.isoformat(), "end": (day + timedelta(hours=6)).isoformat()},
    )  # fmt: skip
    assert answer.status_code == 200
    rows = answer.json()["site_load"]
    frame = site_load_truth(portfolio, [meter], day, day + timedelta(hours=6))
    assert len(rows) == 6 == frame.height
    assert [r["site_load_kw"] for r in rows] == pytest.approx(frame["site_load_kw"].to_list())
    bad = httpx.post(sandbox.base_url + "/_sandbox/ground_truth/site_load", json={"meter_ids": []})
    assert bad.status_code == 400
