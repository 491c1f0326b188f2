"""Accuracy of the bid stage's like-day load forecast against the sandbox's truth (issue 6).

For each CAISO battery site of the sandbox portfolio and each of the last ``--days`` trading
days, the forecast is built exactly as the ``load_forecast`` asset builds it (same SQL), from
interval reads known 24 hours before the trading day starts, and compared hour by hour with
the site's ground-truth counterfactual load (what it would have used without dispatch
response) and with its metered load. Prints JSON with MAE (kW), normalised MAE (% of mean
load), bias and the 90th percentile of absolute percentage error.

    .venv/bin/python bench/bench_load_forecast.py --days 14
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp_pipeline import inventory  # noqa: E402
from vpp_pipeline.bidding import market  # noqa: E402
from vpp_pipeline.bidding.pipeline import build_load_forecast  # noqa: E402
from vpp_pipeline.bidding.tariffs import load_tariffs  # noqa: E402
from vpp_pipeline.leap.models import Meter  # noqa: E402
from vpp_pipeline.sandbox import build_portfolio  # noqa: E402
from vpp_pipeline.sandbox.intervals import generate_intervals  # noqa: E402
from vpp_pipeline.warehouse import stage_frame  # noqa: E402

TZ = "America/Los_Angeles"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=14, help="trading days scored")
    parser.add_argument("--history-days", type=int, default=90)
    args = parser.parse_args()

    portfolio = build_portfolio(seed=args.seed, history_days=args.history_days)
    meters = inventory.meters_frame([Meter.model_validate(m) for m in portfolio.meters.values()])
    batteries = meters.filter(pl.col("has_battery") & (pl.col("transmission_region") == "CAISO"))
    data = generate_intervals(
        portfolio,
        portfolio.history_start,
        portfolio.anchor,
        meter_ids=batteries["meter_id"].to_list(),
    )
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    stage_frame(conn, "meters_stage", meters)
    conn.execute("CREATE TABLE meters AS SELECT * FROM meters_stage")
    stage_frame(conn, "truth", data)
    conn.execute(
        f"CREATE TABLE interval_reads AS SELECT meter_id, interval_start, interval_end, kwh, "
        f"CAST(timezone('{TZ}', interval_start) AS DATE) AS local_date FROM truth"
    )
    book = load_tariffs()
    last_day = market.trading_day_of(portfolio.anchor) - timedelta(days=1)
    for offset in range(args.days):
        day = last_day - timedelta(days=offset)
        build_load_forecast(
            conn, day, book, history_end=market.trading_day_start(day) - timedelta(hours=24)
        )

    scored = conn.sql(
        """
        WITH truth_hourly AS (
            SELECT meter_id, date_trunc('hour', interval_start) AS hour_start,
                   avg(counterfactual_kwh) * 4 AS counterfactual_kw, avg(kwh) * 4 AS metered_kw,
                   count(*) AS quarters
            FROM truth GROUP BY ALL
        )
        SELECT f.meter_id, f.trading_day, f.hour_start, f.load_forecast_kw,
               t.counterfactual_kw, t.metered_kw, m.meter_type
        FROM load_forecast f
        JOIN truth_hourly t USING (meter_id, hour_start)
        JOIN meters m USING (meter_id)
        WHERE f.load_forecast_kw IS NOT NULL AND t.quarters = 4
        """
    ).pl()

    def metrics(frame: pl.DataFrame, truth_col: str) -> dict:
        err = frame["load_forecast_kw"] - frame[truth_col]
        mean_load = frame[truth_col].abs().mean()
        ape = (err.abs() / frame[truth_col].abs().clip(lower_bound=1.0)) * 100
        return {
            "hours": frame.height,
            "mae_kw": round(err.abs().mean(), 2),
            "nmae_pct": round(err.abs().mean() / mean_load * 100, 1),
            "bias_kw": round(err.mean(), 2),
            "ape_p90_pct": round(ape.quantile(0.9), 1),
            "mean_load_kw": round(mean_load, 1),
        }

    sites = scored.filter(pl.col("meter_type") == "UTILITY_METER")
    result = {
        "seed": args.seed,
        "trading_days": args.days,
        "battery_sites": sites["meter_id"].n_unique(),
        "vs_counterfactual_load": metrics(sites, "counterfactual_kw"),
        "vs_metered_load": metrics(sites, "metered_kw"),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
