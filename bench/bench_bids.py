"""Benchmark: bid inputs (LP per battery, HiGHS) and curves for N batteries, one trading day.

    .venv/bin/python bench/bench_bids.py [--batteries 500] [--day 2026-12-03]

Synthetic but realistic inputs: site loads 200-2000 kW with an evening bump, batteries
15-45 % of peak with 2-4 h duration, PG&E/SCE/SDG&E tariffs from the packaged file, a duck-
curve day-ahead price with a spike on some batteries' zones. Times what ``build_bid_inputs``
does (two LP solves: on the forecast, then against the cautious peak load), the offers beyond
the planned sale, the curves and Leap validation; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np

from vpp_pipeline.bidding import market
from vpp_pipeline.bidding.curves import build_curve
from vpp_pipeline.bidding.fleet import BidSettings
from vpp_pipeline.bidding.offers import plan_offers, price_candidates
from vpp_pipeline.bidding.optimize import BidProblem, cautious_peak_load, optimize_batteries
from vpp_pipeline.bidding.tariffs import load_tariffs
from vpp_pipeline.bidding.validation import format_utc, validate_bids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batteries", type=int, default=500)
    parser.add_argument("--day", type=date.fromisoformat, default=date(2026, 12, 3))
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    b = args.batteries
    hours = market.trading_day_hours(args.day)
    starts = [s for s, _ in hours]
    h = len(hours)
    local_hour = np.array([s.astimezone(market.MARKET_TZ).hour for s in starts])
    book = load_tariffs()
    codes = rng.choice(["PGE-B19", "PGE-B20", "SCE-TOU-GS-3", "SCE-TOU-8", "SDGE-AL-TOU"], b)

    started = time.perf_counter()
    rates = {c: book.tariffs[c].energy_usd_per_kwh(starts) for c in set(codes)}
    windows = {c: book.tariffs[c].in_demand_window(starts) for c in set(codes)}
    charges = {c: book.tariffs[c].demand_charge_usd_per_kw_month for c in set(codes)}
    peak = rng.uniform(200, 2000, b)
    load = peak[:, None] * (0.55 + 0.35 * ((local_hour >= 16) & (local_hour < 21)))[None, :]
    load = load * rng.uniform(0.9, 1.1, (b, h))
    power = np.round(peak * rng.uniform(0.15, 0.45, b) / 50) * 50 + 50
    shape = np.where((local_hour >= 17) & (local_hour < 21), 0.10, 0.04)
    price = shape[None, :] * rng.uniform(0.8, 1.2, (b, h))
    spiky = rng.random(b) < 0.2
    price[spiky, int(np.argmax(local_hour == 19))] = 0.6
    problem = BidProblem.build(
        [f"meter-{i:04d}" for i in range(b)], h,
        power_kw=power, energy_kwh=power * rng.choice([2, 3, 4], b),
        load_kw=load, price_usd_per_kwh=price,
        energy_usd_per_kwh=np.stack([rates[c] for c in codes]),
        demand_window=np.stack([windows[c] for c in codes]),
        demand_charge_usd_per_kw_month=np.array([charges[c] for c in codes]),
        month_to_date_peak_kw=peak * rng.uniform(0.6, 1.0, b),
    )  # fmt: skip
    built = time.perf_counter()
    # as build_bid_inputs: a plan on the forecast, then one against the cautious peak load
    # (like-day spread: 5 % of the load here), then the offers beyond the planned sale
    first = optimize_batteries(problem)
    first_solved = time.perf_counter()
    problem.peak_load_kw = cautious_peak_load(
        problem.load_kw, 0.05 * problem.load_kw, BidSettings().peak_load_z,
        first.billed_peak_kw, problem.power_kw, problem.demand_window,
    )  # fmt: skip
    plan = optimize_batteries(problem)
    solved = time.perf_counter()
    tail = price[..., None] * np.array([4.0, 3.5, 3.0, 2.5, 2.0, 1.6, 1.4, 1.2])
    candidates, survival = price_candidates(
        price.ravel(), 1.15 * price.ravel(), list(tail.reshape(b * h, -1)), np.full(b * h, 63)
    )
    offered, extra_price = plan_offers(
        plan, problem, candidates.reshape(b, h, -1), survival.reshape(b, h, -1)
    )
    offers_done = time.perf_counter()
    bids = [
        {
            "meter_id": problem.meter_ids[i],
            "start_time": format_utc(hours[t][0]),
            "end_time": format_utc(hours[t][1]),
            "curve": build_curve(
                available_kw=offered[i, t],
                planned_market_kw=plan.market_discharge_kw[i, t],
                opportunity_cost_usd_per_kwh=plan.opportunity_cost_usd_per_kwh[i, t],
                price_forecast_usd_per_kwh=price[i, t],
                extra_price_usd_per_kwh=extra_price[i, t],
            ),
        }
        for i in range(b)
        for t in range(h)
    ]
    curved = time.perf_counter()
    now = market.trading_day_start(args.day) - timedelta(hours=30)
    problems = [
        p
        for lo in range(0, b, 100)
        for p in validate_bids(
            [x for x in bids if int(x["meter_id"][-4:]) in range(lo, lo + 100)], now=now
        )
    ]
    validated = time.perf_counter()
    print(
        json.dumps(
            {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "batteries": b,
                "hours": h,
                "lp_chunks": plan.chunks,
                "inputs_s": round(built - started, 3),
                "optimize_s": round(solved - built, 3),
                "first_solve_s": round(first_solved - built, 3),
                "offers_s": round(offers_done - solved, 3),
                "curves_s": round(curved - offers_done, 3),
                "validate_s": round(validated - curved, 3),
                "total_s": round(validated - started, 3),
                "bids": len(bids),
                "bids_with_curve": sum(1 for x in bids if x["curve"]),
                "validation_problems": len(problems),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
