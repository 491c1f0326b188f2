"""Bid: day-ahead prices, load forecasts, optimised bid inputs and submitted bids for CAISO
batteries, partitioned by trading day (``America/Los_Angeles`` calendar day; 23-25 hours).

Leap wants initial bids at least 24 hours before the trading day starts, so the daily
schedule runs at 06:00 Pacific on day D and builds trading day D+2 (42 hours ahead). The
partitions reach three days past today (end_offset=4: the current, still open day is offset
1): in the last half hour of a Pacific day D+2's deadline is too close, so the next biddable
day, which the demo and ``vpp`` commands build, is D+3.
"""

from datetime import date

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from assets.checks import sql_check, unique_check
from vpp_pipeline.bidding import market, pipeline
from vpp_pipeline.bidding.tariffs import load_tariffs
from vpp_pipeline.bidding.validation import BidValidationError
from vpp_pipeline.resources import LeapResource
from vpp_pipeline.warehouse import preview_markdown, stage_frame

trading_days = dg.DailyPartitionsDefinition(
    start_date="2025-01-01", timezone=market.MARKET_TIMEZONE, end_offset=4
)


@dg.asset(group_name="bid", kinds={"duckdb"}, pool="duckdb")
def tariffs(duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Retail tariffs (TOU $/kWh by period, demand charge $/kW-month and its window) from
    vpp_pipeline/config/tariffs.toml or VPP_TARIFFS_PATH, as the DuckDB table `tariffs`
    (one row per tariff and TOU period; local hours [start, end)). Meters refer to them by
    their `tariff` code; unknown codes fall back to the book's fallback tariff."""
    book = load_tariffs()
    rows = [
        {
            "tariff": t.code,
            "name": t.name,
            "timezone": t.timezone,
            "period": p.name,
            "period_order": i,
            "period_days": p.window.days,
            "period_start_hour": p.window.start_hour,
            "period_end_hour": p.window.end_hour,
            "energy_usd_per_kwh": p.energy_usd_per_kwh,
            "demand_charge_usd_per_kw_month": t.demand_charge_usd_per_kw_month,
            "demand_days": t.demand_window.days,
            "demand_start_hour": t.demand_window.start_hour,
            "demand_end_hour": t.demand_window.end_hour,
            "is_fallback": t.code == book.fallback_code,
        }
        for t in book.tariffs.values()
        for i, p in enumerate(t.periods)
    ]
    with duckdb.get_connection() as conn:
        stage_frame(conn, "stg_tariffs", pl.DataFrame(rows))
        conn.execute(
            "CREATE OR REPLACE TABLE tariffs AS SELECT * FROM stg_tariffs ORDER BY tariff, period_order"
        )
    return dg.MaterializeResult(
        metadata={"tariffs": len(book.tariffs), "rows": len(rows), "fallback": book.fallback_code}
    )


def _day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


@dg.asset(group_name="bid", kinds={"duckdb"}, partitions_def=trading_days, pool="duckdb")
def day_ahead_prices(
    context: dg.AssetExecutionContext, leap: LeapResource, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """Hourly CAISO day-ahead LMP per load zone for the trading day ($/MWh and $/kWh, UTC
    hours): OASIS PRC_LMP CSV drops in VPP_PRICES_LANDING_DIR, else the prices endpoint
    (the sandbox's are synthetic: source 'sandbox_synthetic'); a day not yet published is
    forecast from recent like days (source 'forecast')."""
    day = _day(context)
    with leap.client() as client, duckdb.get_connection() as conn:
        summary = pipeline.build_day_ahead_prices(conn, day, client=client)
        preview = preview_markdown(
            conn,
            "SELECT load_zone, source, count(*) AS hours, round(avg(price_usd_per_kwh), 4) "
            f"AS mean_usd_per_kwh FROM day_ahead_prices WHERE trading_day = '{day}' "
            "GROUP BY ALL ORDER BY ALL",
            limit=10,
        )
    if summary["notice"]:
        context.log.warning(summary["notice"])
    return dg.MaterializeResult(
        metadata={
            "rows": sum(summary["rows_by_source"].values()),
            "origin": summary["origin"],
            "by_source": dg.MetadataValue.json(summary["rows_by_source"]),
            "preview": dg.MetadataValue.md(preview),
        }
    )


@dg.asset(
    group_name="bid",
    kinds={"duckdb"},
    partitions_def=trading_days,
    pool="duckdb",
    deps=["interval_reads", "meters", tariffs],
)
def load_forecast(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """Hourly load (kW) per CAISO battery site for the trading day: like-day average of
    its interval history known now; plus the month-to-date billed peak (kW)."""
    day = _day(context)
    with duckdb.get_connection() as conn:
        summary = pipeline.build_load_forecast(conn, day, load_tariffs())
    if summary["interval_reads_missing"]:
        context.log.warning("interval_reads does not exist yet: every load forecast is empty")
    if summary["tariff_problems"]:
        context.log.warning(f"tariff problems (fallback used): {summary['tariff_problems']}")
    return dg.MaterializeResult(
        metadata={
            "rows": summary["rows"],
            "meters": summary["meters"],
            "meters_without_history": summary["meters_without_history"],
            "tariff_problems": dg.MetadataValue.json(summary["tariff_problems"]),
        }
    )


@dg.asset(
    group_name="bid",
    kinds={"duckdb", "highs"},
    partitions_def=trading_days,
    pool="duckdb",
    deps=[
        load_forecast,
        day_ahead_prices,
        "meters",
        "enrollments",
        "participation_preferences",
        tariffs,
    ],
)
def bid_inputs(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Per CAISO battery and UTC hour: load forecast, planned SoC, reserve held for the
    site's own peak, kW available to offer and the opportunity cost of that energy, from a
    linear program per battery (HiGHS) over TOU energy, demand charge and day-ahead prices."""
    day = _day(context)
    with duckdb.get_connection() as conn:
        summary = pipeline.build_bid_inputs(conn, day, load_tariffs())
        preview = preview_markdown(
            conn,
            "SELECT status, count(DISTINCT meter_id) AS batteries, count(*) AS hours, "
            "round(sum(available_kw), 1) AS available_kwh, round(sum(reserve_kw), 1) AS reserve_kwh "
            f"FROM bid_inputs WHERE trading_day = '{day}' GROUP BY ALL ORDER BY ALL",
        )
    return dg.MaterializeResult(
        metadata={
            "batteries": summary["batteries"],
            "optimised": summary["optimised"],
            "hours": summary["hours"],
            "solve_seconds": summary["solve_seconds"],
            "by_status": dg.MetadataValue.md(preview),
        }
    )


@dg.asset(
    group_name="bid",
    kinds={"duckdb"},
    partitions_def=trading_days,
    pool="duckdb",
    deps=[bid_inputs],
)
def bids(
    context: dg.AssetExecutionContext, leap: LeapResource, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """The curve submitted to Leap (POST /v2/bidding/bids) per battery and UTC hour; empty
    curves cancel (idle, disenrolled, nothing to offer). Re-running replaces the day's bids.
    Fails, sending nothing, when any bid breaks a rule (reason codes in the error)."""
    day = _day(context)
    with leap.client() as client, duckdb.get_connection() as conn:
        try:
            summary, _report = pipeline.build_and_submit_bids(conn, day, client)
        except BidValidationError as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={
                    "reason_codes": dg.MetadataValue.json(sorted(exc.reason_codes)),
                    "first_problems": dg.MetadataValue.json(
                        [p.as_dict() for p in exc.problems[:10]]
                    ),
                },
            ) from exc
    return dg.MaterializeResult(
        metadata={
            "bids": summary["bids"],
            "with_curve": summary["with_curve"],
            "cancels": summary["cancels"],
            "offered_kwh": summary["offered_kwh"],
            "calls": summary["calls"],
            "leap_statuses": dg.MetadataValue.json(summary["leap_statuses"]),
            "deadline": summary["deadline"],
        }
    )


bid_inputs_unique = unique_check(
    "bid_inputs", "bid_inputs", ["trading_day", "meter_id", "hour_start"]
)
bids_unique = unique_check("bids", "bids", ["trading_day", "meter_id", "hour_start"])
bids_within_leap_limits = sql_check(
    asset="bids",
    table="bids",
    name="bids_within_leap_limits",
    description="Every curve point is priced in [0.01, 1.00] $/kWh with a positive quantity.",
    violations_sql=(
        "SELECT meter_id, hour_start, p FROM (SELECT meter_id, hour_start, "
        'unnest(from_json(curve, \'[{"quantity_in_kw": "DOUBLE", "price": "DOUBLE"}]\')) AS p '
        "FROM bids) WHERE p.price < 0.01 OR p.price > 1.0 OR p.quantity_in_kw <= 0"
    ),
)
bid_inputs_soc_within_limits = sql_check(
    asset="bid_inputs",
    table="bid_inputs",
    name="bid_inputs_soc_within_limits",
    description="Planned SoC stays within [0, energy]; offers within battery power.",
    violations_sql=(
        "SELECT meter_id, hour_start, planned_soc_kwh, available_kw FROM bid_inputs "
        "WHERE planned_soc_kwh < -1e-6 OR planned_soc_kwh > energy_kwh + 1e-6 "
        "OR available_kw > power_kw + 1e-6"
    ),
)

bid_job = dg.define_asset_job(
    "bid_job",
    selection=dg.AssetSelection.assets(tariffs, day_ahead_prices, load_forecast, bid_inputs, bids),
    partitions_def=trading_days,
    description="Prices, load forecasts, bid inputs and bids for one CAISO trading day.",
)


@dg.schedule(job=bid_job, cron_schedule="0 6 * * *", execution_timezone=market.MARKET_TIMEZONE)
def bid_daily(context: dg.ScheduleEvaluationContext):
    """At 06:00 Pacific, bid the next trading day still open under the 24-hour rule (D+2)."""
    day = market.next_biddable_day(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"bids-{day.isoformat()}", partition_key=day.isoformat())


JOBS = [bid_job]
SCHEDULES = [bid_daily]
