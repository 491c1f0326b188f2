"""The bid pipeline's steps over the DuckDB file, one function per table. The Dagster assets
in ``assets/bid.py`` are thin wrappers around these; ``run_bid_demo`` drives them through
Dagster.

Each step replaces one trading day's rows (idempotent) and returns a small summary dict.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from vpp_pipeline.bidding import curves, market, prices
from vpp_pipeline.bidding.fleet import BidSettings, fleet_spec
from vpp_pipeline.bidding.offers import plan_offers, price_candidates
from vpp_pipeline.bidding.optimize import BidProblem, cautious_peak_load, optimize_batteries
from vpp_pipeline.bidding.submission import SubmissionReport, submit_bids
from vpp_pipeline.bidding.tariffs import TariffBook
from vpp_pipeline.bidding.validation import (
    BidValidationError,
    check_against_inputs,
    format_utc,
)
from vpp_pipeline.leap import LeapClient
from vpp_pipeline.warehouse import run_models, stage_frame, table_exists

STATUS_BID = "BID"
STATUS_IDLE = "IDLE"
STATUS_DISENROLLED = "DISENROLLED"
STATUS_NOT_ENROLLED = "NOT_ENROLLED"
STATUS_NO_LOAD_HISTORY = "NO_LOAD_HISTORY"
STATUS_NO_PRICES = "NO_PRICES"
#: The documented defaults (``fleet.BidSettings``).
DEFAULT_SETTINGS = BidSettings()


def _day_variables(day: date) -> dict:
    return {
        "trading_day": day,
        "day_start": market.trading_day_start(day),
        "day_end": market.trading_day_end(day),
        "market_tz": market.MARKET_TIMEZONE,
    }


def caiso_zones(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Load zones of the CAISO battery meters, plus the three DLAPs."""
    zones = set(prices.CAISO_LOAD_ZONES)
    if table_exists(conn, "meters"):
        zones |= {
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT load_zone FROM meters WHERE has_battery "
                "AND transmission_region = 'CAISO' AND load_zone IS NOT NULL"
            ).fetchall()
        }
    return sorted(zones)


def price_history_start(day: date, now: datetime, settings: BidSettings = DEFAULT_SETTINGS) -> date:
    """First trading day of the price history used to forecast ``day`` at ``now``: prices are
    out at most a day ahead, so for a later trading day the lookback ends at the latest day
    that can be out."""
    today = market.trading_day_of(now)
    return min(day, today + timedelta(days=1)) - timedelta(days=settings.price_lookback_days)


def build_day_ahead_prices(
    conn: duckdb.DuckDBPyConnection,
    day: date,
    *,
    client: LeapClient | None = None,
    landing_dir=None,
    now: datetime | None = None,
    settings: BidSettings = DEFAULT_SETTINGS,
) -> dict:
    """Stage actual prices for ``day`` and its lookback (CSV drops when the landing folder
    holds any for the window, else the API when ``client`` is given) and build the day's
    ``day_ahead_prices`` rows (forecast where the day is not published)."""
    zones = caiso_zones(conn)
    first = price_history_start(day, now or datetime.now(UTC), settings)
    last_history = min(day, first + timedelta(days=settings.price_lookback_days))
    folder = landing_dir if landing_dir is not None else prices.landing_dir()
    files = sorted(folder.glob("*.csv")) if folder.exists() else []
    notice = None
    actuals = prices.read_oasis_csvs(files, zones) if files else prices.empty_actuals()
    actuals = actuals.filter(
        pl.col("trading_day").is_between(first, last_history) | (pl.col("trading_day") == day)
    )
    origin = "csv" if not actuals.is_empty() else "none"
    if actuals.is_empty() and client is not None:
        actuals, _, notice = prices.fetch_api_prices(client, first, last_history, zones)
        if day > last_history:
            target, _, _ = prices.fetch_api_prices(client, day, day, zones)
            actuals = pl.concat([actuals, target])
        origin = "api"
    by_source = price_model(conn, day, actuals, zones, history_start=first, settings=settings)
    return {
        "trading_day": day.isoformat(),
        "origin": origin,
        "csv_files": len(files),
        "rows_by_source": by_source,
        "zones": zones,
        "notice": notice,
    }


def price_model(
    conn: duckdb.DuckDBPyConnection,
    day: date,
    actuals: pl.DataFrame,
    zones: list[str],
    *,
    history_start: date,
    settings: BidSettings = DEFAULT_SETTINGS,
) -> dict[str, int]:
    """Run ``sql/day_ahead_prices.sql`` for ``day`` on staged ``actuals``
    (``prices.ACTUALS_SCHEMA``); returns the day's row count by source."""
    stage_frame(conn, "stg_price_actuals", actuals.cast(prices.ACTUALS_SCHEMA))
    stage_frame(conn, "stg_price_zones", pl.DataFrame({"load_zone": zones}))
    run_models(
        conn,
        "day_ahead_prices",
        history_start=history_start,
        like_days=settings.price_like_days,
        **_day_variables(day),
    )
    return dict(
        conn.execute(
            "SELECT source, count(*) FROM day_ahead_prices WHERE trading_day = $d GROUP BY ALL",
            {"d": day},
        ).fetchall()
    )


def _demand_hours(conn: duckdb.DuckDBPyConnection, book: TariffBook) -> tuple[pl.DataFrame, dict]:
    """Each battery meter's demand-window local hours from its tariff, plus tariff problems."""
    meters = conn.execute(
        "SELECT meter_id, tariff FROM meters WHERE has_battery AND transmission_region = 'CAISO'"
    ).fetchall()
    rows, problems = [], {}
    for meter_id, code in meters:
        tariff, reason = book.resolve(code)
        if reason:
            problems[meter_id] = reason
        if tariff.demand_charge_usd_per_kw_month <= 0:
            continue
        window = tariff.demand_window
        for hour in range(window.start_hour, window.end_hour):
            rows.append((meter_id, hour, window.days == "weekdays"))
    frame = pl.DataFrame(
        rows,
        schema={"meter_id": pl.String, "local_hour": pl.Int64, "weekdays_only": pl.Boolean},
        orient="row",
    )
    return frame, problems


def build_load_forecast(
    conn: duckdb.DuckDBPyConnection,
    day: date,
    book: TariffBook,
    *,
    history_end: datetime | None = None,
    settings: BidSettings = DEFAULT_SETTINGS,
) -> dict:
    """Build the day's ``load_forecast`` rows from ``interval_reads`` known before
    ``history_end`` (default now, never after the day starts)."""
    day_start = market.trading_day_start(day)
    history_end = min(history_end or datetime.now(UTC), day_start)
    missing_reads = not table_exists(conn, "interval_reads")
    if missing_reads:
        # a session-only empty stand-in, so the SQL runs and every forecast is NULL
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS interval_reads (meter_id VARCHAR, "
            "interval_start TIMESTAMPTZ, interval_end TIMESTAMPTZ, kwh DOUBLE, local_date DATE)"
        )
    demand_hours, tariff_problems = _demand_hours(conn, book)
    stage_frame(conn, "stg_demand_hours", demand_hours)
    run_models(
        conn,
        "load_forecast",
        history_end=history_end,
        lookback_days=settings.load_lookback_days,
        like_days=settings.load_like_days,
        **_day_variables(day),
    )
    (rows, meters, missing), *_ = conn.execute(
        "SELECT count(*), count(DISTINCT meter_id), "
        "count(DISTINCT meter_id) FILTER (WHERE load_forecast_kw IS NULL) "
        "FROM load_forecast WHERE trading_day = $d",
        {"d": day},
    ).fetchall()
    return {
        "trading_day": day.isoformat(),
        "rows": rows,
        "meters": meters,
        "meters_without_history": missing,
        "interval_reads_missing": missing_reads,
        "history_end": history_end.isoformat(),
        "tariff_problems": tariff_problems,
    }


def _hour_status(conn: duckdb.DuckDBPyConnection, day: date, frame: pl.DataFrame) -> pl.DataFrame:
    """Adds ``status`` from enrollments and participation preferences (small tables)."""
    start, end = market.trading_day_start(day), market.trading_day_end(day)
    enrolled: set[str] = set()
    if table_exists(conn, "enrollments"):
        enrolled = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT meter_id FROM enrollments WHERE enrollment_status = 'ACTIVE' "
                "AND delivery_period_start < $end AND delivery_period_end > $start",
                {"start": start, "end": end},
            ).fetchall()
        }
    windows = pl.DataFrame(
        schema={
            "meter_id": pl.String,
            "pref": pl.String,
            "ws": pl.Datetime("us", "UTC"),
            "we": pl.Datetime("us", "UTC"),
        }
    )
    if table_exists(conn, "participation_preferences"):
        windows = conn.sql(
            "SELECT meter_id, participation_preference AS pref, start_time AS ws, end_time AS we "
            "FROM participation_preferences WHERE participation_preference IN ('IDLE', 'DISENROLL')"
        ).pl()
    blocked = (
        frame.select("meter_id", "hour_start", "hour_end")
        .join(windows, on="meter_id")
        .filter(
            (pl.col("ws") < pl.col("hour_end"))
            & (pl.col("we").is_null() | (pl.col("we") > pl.col("hour_start")))
        )
        .group_by("meter_id", "hour_start")
        .agg((pl.col("pref") == "DISENROLL").any().alias("disenrolled"))
    )
    return (
        frame.join(blocked, on=["meter_id", "hour_start"], how="left")
        .with_columns(
            pl.when(~pl.col("meter_id").is_in(list(enrolled)))
            .then(pl.lit(STATUS_NOT_ENROLLED))
            .when(pl.col("disenrolled"))
            .then(pl.lit(STATUS_DISENROLLED))
            .when(pl.col("disenrolled").is_not_null())
            .then(pl.lit(STATUS_IDLE))
            .when(pl.col("price_usd_per_kwh").is_null())
            .then(pl.lit(STATUS_NO_PRICES))
            .when(pl.col("load_forecast_kw").is_null() & ~pl.col("is_submeter"))
            .then(pl.lit(STATUS_NO_LOAD_HISTORY))
            .otherwise(pl.lit(STATUS_BID))
            .alias("status")
        )
        .drop("disenrolled")
    )


def build_bid_inputs(
    conn: duckdb.DuckDBPyConnection,
    day: date,
    book: TariffBook,
    *,
    settings: BidSettings = DEFAULT_SETTINGS,
) -> dict:
    """Optimise every CAISO battery for ``day`` and write the day's ``bid_inputs``."""
    frame = conn.sql(
        f"""
        SELECT f.meter_id, f.hour_start, f.hour_end, f.load_forecast_kw, f.month_to_date_peak_kw,
               coalesce(f.load_spread_kw, 0) AS load_spread_kw,
               m.load_zone, m.tariff AS tariff_code, m.battery_power_kw AS power_kw,
               m.battery_energy_kwh AS energy_kwh,
               coalesce(m.battery_min_soc_pct, {settings.default_min_soc_pct}) AS min_soc_pct,
               coalesce(m.battery_max_soc_pct, {settings.default_max_soc_pct}) AS max_soc_pct,
               coalesce(m.meter_type IN ('SUBMETER', 'DEVICE'), false) AS is_submeter,
               p.price_usd_per_kwh, p.source AS price_source, p.price_p50_usd_per_kwh,
               p.price_p75_usd_per_kwh, p.price_tail_usd_per_kwh, p.price_samples
        FROM load_forecast f
        JOIN meters m USING (meter_id)
        LEFT JOIN day_ahead_prices p
          ON p.trading_day = f.trading_day AND p.load_zone = m.load_zone
         AND p.hour_start = f.hour_start
        WHERE f.trading_day = '{day.isoformat()}'
          AND m.battery_power_kw > 0 AND m.battery_energy_kwh > 0
        ORDER BY f.meter_id, f.hour_start
        """
    ).pl()
    hours = market.trading_day_hours(day)
    h = len(hours)
    frame = _hour_status(conn, day, frame)
    meter_ids = frame["meter_id"].unique(maintain_order=True).to_list()
    if frame.height != len(meter_ids) * h:
        raise ValueError(f"load_forecast for {day} does not have {h} hours for every battery")
    status = frame["status"].to_numpy().reshape(-1, h)
    # a battery is optimised unless it cannot bid at all for a reason of the whole day
    whole_day = np.isin(status, [STATUS_NOT_ENROLLED, STATUS_NO_PRICES, STATUS_NO_LOAD_HISTORY])
    solve = ~whole_day.all(axis=1)

    per_meter = frame.group_by("meter_id", maintain_order=True).first()
    spec = fleet_spec(per_meter, book, settings)
    hour_starts = [start for start, _ in hours]
    problem = spec.problem(
        hour_starts,
        load_kw=frame["load_forecast_kw"].to_numpy().astype(float).reshape(-1, h),
        price_usd_per_kwh=frame["price_usd_per_kwh"].to_numpy().astype(float).reshape(-1, h),
        can_bid=status == STATUS_BID,
        month_to_date_peak_kw=per_meter["month_to_date_peak_kw"].to_numpy().astype(float),
    )
    if settings.peak_load_z > 0:
        # plan once on the forecast, then against a cautious load the battery could cover
        first = np.full(len(meter_ids), np.inf)
        first[solve] = optimize_batteries(
            _subset(problem, solve), degradation_usd_per_kwh=settings.degradation_usd_per_kwh
        ).billed_peak_kw
        problem.peak_load_kw = cautious_peak_load(
            problem.load_kw,
            frame["load_spread_kw"].to_numpy().astype(float).reshape(-1, h),
            settings.peak_load_z,
            first,
            problem.power_kw,
            problem.demand_window,
        )
    sub = _subset(problem, solve)
    plan = optimize_batteries(sub, degradation_usd_per_kwh=settings.degradation_usd_per_kwh)
    candidates, survival = price_candidates(
        frame["price_p50_usd_per_kwh"].to_numpy().astype(float),
        frame["price_p75_usd_per_kwh"].to_numpy().astype(float),
        frame["price_tail_usd_per_kwh"].to_list(),
        frame["price_samples"].to_numpy(),
    )
    offered, offer_price = plan_offers(
        plan,
        sub,
        candidates.reshape(len(meter_ids), h, -1)[solve],
        survival.reshape(len(meter_ids), h, -1)[solve],
        mode=settings.offer_mode,
        premium=settings.premium,
    )
    zeros = np.zeros((len(meter_ids), h))

    def full(values: np.ndarray) -> np.ndarray:
        out = zeros.copy()
        out[solve] = values
        return out

    soc = full(plan.soc_kwh)
    soc[~solve] = problem.initial_soc_kwh[~solve, None]
    peak = np.zeros(len(meter_ids))
    peak[solve] = plan.billed_peak_kw
    # NULL where nothing extra is offered (inf) and for batteries that were not planned
    extra_price = np.full(zeros.shape, np.nan)
    extra_price[solve] = np.where(np.isfinite(offer_price), offer_price, np.nan)
    stg = frame.select(
        pl.lit(day).alias("trading_day"),
        "meter_id",
        "hour_start",
        "hour_end",
        "status",
        "load_zone",
        "tariff_code",
        pl.Series("tariff_used", [t.code for t in spec.tariffs for _ in range(h)], pl.String),
        pl.Series("tariff_problem", [r for r in spec.tariff_problems for _ in range(h)], pl.String),
        "is_submeter",
        "power_kw",
        "energy_kwh",
        "load_forecast_kw",
        "load_spread_kw",
        pl.Series("peak_load_kw", problem.peak_load_kw.ravel()),
        "price_usd_per_kwh",
        "price_source",
        pl.Series("energy_usd_per_kwh", problem.energy_usd_per_kwh.ravel()),
        pl.Series("in_demand_window", problem.demand_window.ravel()),
        "month_to_date_peak_kw",
        pl.Series("planned_billed_peak_kw", np.repeat(peak, h)),
        pl.Series("planned_charge_kw", full(plan.charge_kw).ravel()),
        pl.Series("planned_market_kw", full(plan.market_discharge_kw).ravel()),
        pl.Series("planned_soc_kwh", soc.ravel()),
        pl.Series("reserve_kw", full(plan.reserve_kw).ravel()),
        pl.Series("peak_reserve_kwh", full(plan.peak_reserve_kwh).ravel()),
        pl.Series("available_kw", full(offered).ravel()),
        pl.Series("opportunity_cost_usd_per_kwh", full(plan.opportunity_cost_usd_per_kwh).ravel()),
        pl.Series("offer_price_usd_per_kwh", extra_price.ravel(), nan_to_null=True),
        pl.lit(datetime.now(UTC)).alias("computed_at"),
    )
    stage_frame(conn, "stg_bid_inputs", stg)
    run_models(conn, "bid_inputs", trading_day=day)
    return {
        "trading_day": day.isoformat(),
        "hours": h,
        "batteries": len(meter_ids),
        "optimised": int(solve.sum()),
        "solve_seconds": round(plan.solve_seconds, 3),
        "status_rows": stg.group_by("status").len().sort("status").rows(),
    }


def _subset(problem: BidProblem, mask: np.ndarray) -> BidProblem:
    values = {
        name: getattr(problem, name)[mask]
        for name in problem.__dataclass_fields__
        if name != "meter_ids"
    }
    return BidProblem(
        meter_ids=[m for m, keep in zip(problem.meter_ids, mask, strict=True) if keep], **values
    )


def curves_for_day(conn: duckdb.DuckDBPyConnection, day: date) -> list[dict]:
    """One bid per battery and hour of ``day`` from ``bid_inputs`` (empty curve = cancel),
    each with its inputs (``_inputs``) for the pipeline's own checks."""
    rows = conn.sql(
        "SELECT meter_id, hour_start, hour_end, status, available_kw, planned_market_kw, "
        "opportunity_cost_usd_per_kwh, price_usd_per_kwh, offer_price_usd_per_kwh "
        "FROM bid_inputs "
        f"WHERE trading_day = '{day.isoformat()}' ORDER BY meter_id, hour_start"
    ).pl()
    bids = []
    for row in rows.iter_rows(named=True):
        curve = []
        if row["status"] == STATUS_BID:
            curve = curves.build_curve(
                available_kw=row["available_kw"],
                planned_market_kw=row["planned_market_kw"],
                opportunity_cost_usd_per_kwh=row["opportunity_cost_usd_per_kwh"],
                price_forecast_usd_per_kwh=row["price_usd_per_kwh"] or 0.0,
                extra_price_usd_per_kwh=row["offer_price_usd_per_kwh"],
            )
        bids.append(
            {
                "meter_id": row["meter_id"],
                "start_time": format_utc(row["hour_start"]),
                "end_time": format_utc(row["hour_end"]),
                "curve": curve,
                "_inputs": row,
            }
        )
    return bids


def build_and_submit_bids(
    conn: duckdb.DuckDBPyConnection,
    day: date,
    client: LeapClient,
    *,
    now: datetime | None = None,
    settings: BidSettings = DEFAULT_SETTINGS,
) -> tuple[dict, SubmissionReport]:
    """Curves for the day, checked against Leap's rules and the bid inputs, submitted, and
    recorded in ``bids``. Raises :class:`BidValidationError` (nothing sent) on any problem."""
    now = now or datetime.now(UTC)
    drafts = curves_for_day(conn, day)
    payload = [{k: v for k, v in b.items() if k != "_inputs"} for b in drafts]
    own = check_against_inputs(
        payload, {(b["meter_id"], b["start_time"]): b["_inputs"] for b in drafts}
    )
    if own:
        raise BidValidationError(own)
    report = submit_bids(client, payload, now=now)
    answers = {(r.get("meter_id"), r.get("start_time")): r.get("status") for r in report.results}
    import json

    stg = pl.DataFrame(
        {
            "trading_day": [day] * len(drafts),
            "meter_id": [b["meter_id"] for b in drafts],
            "hour_start": [b["_inputs"]["hour_start"] for b in drafts],
            "hour_end": [b["_inputs"]["hour_end"] for b in drafts],
            "input_status": [b["_inputs"]["status"] for b in drafts],
            "curve": [json.dumps(b["curve"]) for b in drafts],
            "points": [len(b["curve"]) for b in drafts],
            "offered_kw": [b["curve"][-1]["quantity_in_kw"] if b["curve"] else 0.0 for b in drafts],
            "min_price_usd_per_kwh": [
                b["curve"][0]["price"] if b["curve"] else None for b in drafts
            ],
            "leap_status": [answers.get((b["meter_id"], b["start_time"])) for b in drafts],
            "submitted_at": [now] * len(drafts),
        },
        schema_overrides={"min_price_usd_per_kwh": pl.Float64, "leap_status": pl.String},
    )
    stage_frame(conn, "stg_bids", stg)
    conn.execute("ALTER TABLE stg_bids ALTER curve TYPE JSON")
    run_models(conn, "bids", trading_day=day)
    summary = {
        "trading_day": day.isoformat(),
        "bids": len(drafts),
        "with_curve": int(sum(1 for b in drafts if b["curve"])),
        "cancels": int(sum(1 for b in drafts if not b["curve"])),
        "offered_kwh": round(float(stg["offered_kw"].sum()), 1),
        "calls": report.calls,
        "leap_statuses": report.statuses,
        "deadline": market.bid_deadline(day).isoformat(),
    }
    return summary, report
