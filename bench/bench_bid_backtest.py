"""Benchmark: the bid backtest over N trading days for every CAISO battery, on several seeds.

    .venv/bin/python bench/bench_bid_backtest.py \\
        --days 30 --end 2026-12-01 --seeds 7,11,23,5 [--ablation]

For each seed: the pipeline's policy, perfect foresight and the naive floor-price policy
settled by the same code (``vpp_pipeline.bidding.backtest``), their value, value capture,
the months' billed peaks and the award-raised peaks; the backtest's own time (budget: 60 s
for 30 days x 15 batteries), split into loading the sandbox truth, each policy's decisions
and the settlement. The first seed is run twice to check the results are identical.

``--ablation`` also runs the pipeline's policy as it was before each change (its first
version, then each improvement added) and with a plain threshold site controller, and
prints the before/after table: value capture and the months' billed peaks per seed.
Prints markdown tables and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp_pipeline.bidding.backtest import run_backtest  # noqa: E402
from vpp_pipeline.bidding.backtest_data import load_backtest_data  # noqa: E402
from vpp_pipeline.bidding.fleet import BidSettings  # noqa: E402
from vpp_pipeline.bidding.tariffs import load_tariffs  # noqa: E402

#: The pipeline's policy before and after each change (docs/bidding.md).
STEPS = (
    ("first policy (forecast peak, unused energy at +25 %)", {"peak_load_z": 0.0, "offer_mode": "headroom"}, True),
    ("+ cautious peak (forecast + 2 like-day spreads)", {"peak_load_z": 2.0, "offer_mode": "headroom"}, True),
    ("+ offers priced by expected surplus (the policy)", {}, True),
    ("the policy, plain threshold site controller", {}, False),
)  # fmt: skip


def _money(value: float) -> str:
    return f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--end", type=date.fromisoformat, default=date(2026, 12, 1))
    parser.add_argument("--seeds", default="7,11,23,5")
    parser.add_argument("--ablation", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    book = load_tariffs()
    summary: dict = {"days": args.days, "end": args.end.isoformat(), "cpus": os.cpu_count()}

    print("| seed | batteries | policy | market $ | bill savings $ | net value $ | capture "
          "| month peaks kW | award-raised peaks | backtest s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = {}
    for seed in seeds:
        result = run_backtest(seed, args.days, args.end, book=book)
        results[seed] = result
        t = result.timings
        for row in result.totals.iter_rows(named=True):
            print(
                f"| {seed} | {t['batteries']} | {row['policy']} | "
                f"{_money(row['market_revenue_usd'])} | {_money(row['bill_savings_usd'])} | "
                f"{_money(row['total_value_usd'])} | {row['value_capture']:.1%} | "
                f"{row['sum_month_peak_kw']:,.0f} | {row['days_awards_raised_peak']} | "
                f"{t['total_s']} |"
            )
        summary[f"seed_{seed}"] = {
            "timings": t,
            "capture": {r["policy"]: round(r["value_capture"], 4) for r in result.totals.iter_rows(named=True)},
        }  # fmt: skip

    print(
        "\n| seed | gap to PF $ | demand charge $ | TOU energy $ | market $ "
        "| PF market $ in hours above the TOU peak rate | month peaks kW (PF) "
        "| window load error |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for seed, result in results.items():
        rows = {r["policy"]: r for r in result.totals.iter_rows(named=True)}
        pipe, pf = rows["pipeline"], rows["perfect_foresight"]

        def gap(column, pipe=pipe, pf=pf):
            return pf[column] - pipe[column]

        print(
            f"| {seed} | {_money(gap('total_value_usd'))} | "
            f"{_money(-gap('demand_charge_usd'))} | {_money(gap('energy_savings_usd'))} | "
            f"{_money(gap('market_revenue_usd'))} | {_money(pf['revenue_above_tou_usd'])} | "
            f"{pipe['sum_month_peak_kw']:,.0f} ({pf['sum_month_peak_kw']:,.0f}) | "
            f"{pipe['window_load_error']:.1%} |"
        )

    first = seeds[0]
    again = run_backtest(first, args.days, args.end, book=book)
    summary["deterministic"] = again.rows.equals(results[first].rows)
    t = results[first].timings
    print(
        f"\nseed {first}: {t['batteries']} batteries x {args.days} days in {t['total_s']} s "
        f"(truth {t['load_truth_s']} s, pipeline decisions {t['decide_pipeline_s']} s, "
        f"perfect foresight {t['decide_perfect_foresight_s']} s, naive {t['decide_naive_s']} s, "
        f"settlement {t['settle_s']} s); re-run identical: {summary['deterministic']}"
    )

    if args.ablation:
        print(
            "\n| step | " + " | ".join(f"seed {s} capture / month peaks kW" for s in seeds) + " |"
        )
        print("|---|" + "---|" * len(seeds))
        for label, overrides, adaptive in STEPS:
            cells = []
            for seed in seeds:
                data = load_backtest_data(seed, args.days, args.end, book, BidSettings(**overrides))
                started = time.perf_counter()
                step = run_backtest(
                    data=data, book=book, settings=BidSettings(**overrides),
                    policies=("pipeline", "perfect_foresight"), adaptive_level=adaptive,
                )  # fmt: skip
                rows = {r["policy"]: r for r in step.totals.iter_rows(named=True)}
                pipe = rows["pipeline"]
                cells.append(
                    f"{pipe['value_capture']:.1%} / {pipe['sum_month_peak_kw']:,.0f} "
                    f"(PF {rows['perfect_foresight']['sum_month_peak_kw']:,.0f})"
                )
                summary.setdefault("ablation", {}).setdefault(label, {})[seed] = {
                    "capture": round(pipe["value_capture"], 4),
                    "month_peaks_kw": round(pipe["sum_month_peak_kw"], 1),
                    "award_raised_peaks": pipe["days_awards_raised_peak"],
                    "seconds": round(time.perf_counter() - started, 2),
                }
            print(f"| {label} | " + " | ".join(cells) + " |")
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
