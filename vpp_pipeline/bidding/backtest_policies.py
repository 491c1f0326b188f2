"""The three policies the backtest settles, each turning one trading day into a ``DayPlan``.

- ``PipelinePolicy``: the bid pipeline itself. Its own DuckDB (in memory) holds the
  pipeline's tables; each day runs the same functions and SQL models as the Dagster assets
  (``price_model`` = ``sql/day_ahead_prices.sql``, ``build_load_forecast`` =
  ``sql/load_forecast.sql``, ``build_bid_inputs`` = the LP, ``curves_for_day``) on what was
  known at the decision time, and reads the plan back from ``bid_inputs``.
- ``PerfectForesight``: the same LP (``optimize.py``) over each calendar month of the window
  at once, with the realised loads and prices, offering exactly what it plans to sell at the
  realised price (clamped to Leap's [0.01, 1.00]; an hour below the floor cannot clear).
  Under the settlement's rules nothing can earn more: the upper bound of value.
- ``NaivePolicy``: what Leap's docs say most partners do: bid at the price floor. The
  battery keeps the sandbox's own schedule (charge 01:00-06:00 local, discharge evenly over
  16:00-21:00 local, all usable energy), and offers that discharge at $0.01/kWh.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import numpy as np
import polars as pl

from vpp_pipeline.bidding import market, pipeline
from vpp_pipeline.bidding.backtest_data import BacktestData, Knowledge
from vpp_pipeline.bidding.fleet import BidSettings
from vpp_pipeline.bidding.optimize import optimize_batteries
from vpp_pipeline.bidding.settlement import DayPlan, FleetState, curves_to_arrays, empty_curves
from vpp_pipeline.bidding.tariffs import TariffBook
from vpp_pipeline.bidding.validation import MAX_PRICE_USD_PER_KWH, MIN_PRICE_USD_PER_KWH
from vpp_pipeline.warehouse import stage_frame

NAIVE_CHARGE_LOCAL_HOURS = (1, 6)
NAIVE_OFFER_LOCAL_HOURS = (16, 21)


class PipelinePolicy:
    """The bid pipeline's policy, run through its own functions and SQL."""

    name = "pipeline"

    def __init__(self, data: BacktestData, book: TariffBook, settings: BidSettings) -> None:
        self.data, self.book, self.settings = data, book, settings
        self.conn = duckdb.connect()
        self.conn.execute("SET TimeZone = 'UTC'")
        # one thread: parallel aggregation may sum in another order and change the last bits
        # of a forecast, and the backtest is to be repeatable to the bit (the data are small)
        self.conn.execute("SET threads = 1")
        stage_frame(self.conn, "stg_meters", data.meters)
        self.conn.execute("CREATE TABLE meters AS SELECT * FROM stg_meters")
        # every battery enrolled and bidding for the whole window: the backtest asks what
        # bidding earns, not who is enrolled
        stage_frame(
            self.conn,
            "stg_enrollments",
            pl.DataFrame(
                {
                    "meter_id": data.spec.meter_ids,
                    "enrollment_status": "ACTIVE",
                    "delivery_period_start": data.hour_start[0],
                    "delivery_period_end": data.hour_start[-1] + timedelta(days=1),
                }
            ),
        )
        self.conn.execute("CREATE TABLE enrollments AS SELECT * FROM stg_enrollments")

    def close(self) -> None:
        self.conn.close()

    def decide(self, day: date, known: Knowledge) -> DayPlan:
        conn, settings = self.conn, self.settings
        stage_frame(
            conn,
            "stg_reads",
            known.reads.with_columns(
                (pl.col("interval_start") + pl.duration(hours=1)).alias("interval_end"),
                pl.col("interval_start")
                .dt.convert_time_zone(market.MARKET_TIMEZONE)
                .dt.date()
                .alias("local_date"),
            ),
        )
        conn.execute("CREATE OR REPLACE TABLE interval_reads AS SELECT * FROM stg_reads")
        # nothing but this decision's inputs: no earlier day's rows stay behind
        for table in ("day_ahead_prices", "load_forecast", "bid_inputs"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        first = pipeline.price_history_start(day, known.at, settings)
        actuals = known.price_actuals.filter(pl.col("trading_day") >= first)
        pipeline.price_model(
            conn, day, actuals, self.data.zones, history_start=first, settings=settings
        )
        pipeline.build_load_forecast(conn, day, self.book, history_end=known.at, settings=settings)
        # the billed peak so far comes from the billing meter (here: the backtest's own
        # settlement), not from the site-load reads the forecast is built from
        stage_frame(
            conn,
            "stg_month_peak",
            pl.DataFrame(
                {"meter_id": self.data.spec.meter_ids, "peak_kw": known.month_to_date_peak_kw}
            ),
        )
        conn.execute(
            "UPDATE load_forecast f SET month_to_date_peak_kw = s.peak_kw FROM stg_month_peak s "
            "WHERE f.meter_id = s.meter_id AND f.trading_day = $d",
            {"d": day},
        )
        pipeline.build_bid_inputs(conn, day, self.book, settings=settings)
        drafts = pipeline.curves_for_day(conn, day)
        plan = conn.execute(
            "SELECT planned_charge_kw, reserve_kw, planned_billed_peak_kw, peak_reserve_kwh, "
            "planned_soc_kwh, CASE WHEN is_submeter THEN 0 ELSE coalesce(load_forecast_kw, 0) "
            "END AS load_forecast_kw "
            "FROM bid_inputs "
            "WHERE trading_day = $d ORDER BY meter_id, hour_start",
            {"d": day},
        ).fetchnumpy()
        b, h = len(self.data.spec.meter_ids), len(self.data.hours_of(day))
        order = [d["meter_id"] for d in drafts[::h]]
        if order != self.data.spec.meter_ids:
            raise AssertionError("bid_inputs is not in the backtest's battery order")
        qty, price = curves_to_arrays([d["curve"] for d in drafts], b, h)
        spec = self.data.spec
        # the pipeline plans every day from half-way between the SoC limits
        start = (spec.soc_min_kwh + spec.soc_max_kwh) / 2
        end = plan["planned_soc_kwh"].reshape(b, h)
        return DayPlan(
            charge_kw=plan["planned_charge_kw"].reshape(b, h),
            self_discharge_kw=plan["reserve_kw"].reshape(b, h),
            soc_kwh=np.column_stack([start, end[:, :-1]]),
            billed_peak_kw=plan["planned_billed_peak_kw"].reshape(b, h)[:, 0],
            load_forecast_kw=plan["load_forecast_kw"].reshape(b, h),
            reserve_kwh=plan["peak_reserve_kwh"].reshape(b, h),
            curve_kw=qty,
            curve_usd_per_kwh=price,
        )


class PerfectForesight:
    """The LP with hindsight, one solve per calendar month of the window."""

    name = "perfect_foresight"

    def __init__(self, data: BacktestData, settings: BidSettings) -> None:
        self.data, self.settings = data, settings
        self._plans: dict[date, DayPlan] = {}

    def decide(self, day: date, state: FleetState) -> DayPlan:
        if day not in self._plans:
            self._solve_month_from(day, state)
        return self._plans.pop(day)

    def _solve_month_from(self, day: date, state: FleetState) -> None:
        data = self.data
        days = [d for d in data.days if d >= day and (d.year, d.month) == (day.year, day.month)]
        cols = slice(data.day_slices[days[0]].start, data.day_slices[days[-1]].stop)
        realised = data.prices_by_battery(cols)
        month = day.year * 12 + day.month - 1
        problem = data.spec.problem(
            data.hour_start[cols],
            load_kw=data.site_load_kw[:, cols],
            price_usd_per_kwh=np.minimum(realised, MAX_PRICE_USD_PER_KWH),
            can_bid=realised >= MIN_PRICE_USD_PER_KWH,
            month_to_date_peak_kw=state.month_peak_kw if state.month == month else 0.0,
            initial_soc_kwh=state.soc_kwh,
        )
        plan = optimize_batteries(
            problem, degradation_usd_per_kwh=self.settings.degradation_usd_per_kwh
        )
        offset = cols.start
        start_soc = np.column_stack([problem.initial_soc_kwh, plan.soc_kwh[:, :-1]])
        for d in days:
            s = slice(data.day_slices[d].start - offset, data.day_slices[d].stop - offset)
            m = plan.market_discharge_kw[:, s]
            price = np.clip(realised[:, s], MIN_PRICE_USD_PER_KWH, MAX_PRICE_USD_PER_KWH)
            self._plans[d] = DayPlan(
                charge_kw=plan.charge_kw[:, s],
                self_discharge_kw=plan.self_discharge_kw[:, s],
                soc_kwh=start_soc[:, s],
                billed_peak_kw=plan.billed_peak_kw,
                load_forecast_kw=problem.load_kw[:, s],
                reserve_kwh=plan.peak_reserve_kwh[:, s],
                curve_kw=m[..., None],
                curve_usd_per_kwh=np.where(m > 1e-9, price, np.inf)[..., None],
            )


class NaivePolicy:
    """The sandbox battery's own schedule, its discharge offered at the price floor."""

    name = "naive"

    def __init__(self, data: BacktestData) -> None:
        self.data = data

    def decide(self, day: date) -> DayPlan:
        spec = self.data.spec
        hours = self.data.hours_of(day)
        local = np.array([h.astimezone(market.MARKET_TZ).hour for h in hours])
        b, h = len(spec.meter_ids), len(hours)
        eta = np.sqrt(spec.round_trip_efficiency)
        usable = spec.soc_max_kwh - spec.soc_min_kwh
        lo, hi = NAIVE_CHARGE_LOCAL_HOURS
        charging = (local >= lo) & (local < hi)
        charge = np.minimum(spec.power_kw, usable / (eta * (hi - lo)))
        lo, hi = NAIVE_OFFER_LOCAL_HOURS
        offering = (local >= lo) & (local < hi)
        offer = np.minimum(spec.power_kw, usable * eta / (hi - lo))
        qty, price = empty_curves(b, h)
        qty[:, offering, 0] = offer[:, None]
        price[:, offering, 0] = MIN_PRICE_USD_PER_KWH
        return DayPlan(
            charge_kw=np.where(charging[None, :], charge[:, None], 0.0),
            self_discharge_kw=np.zeros((b, h)),
            soc_kwh=np.zeros((b, h)),  # no SoC plan to keep to
            billed_peak_kw=np.zeros(b),
            load_forecast_kw=np.zeros((b, h)),  # no forecast
            reserve_kwh=np.zeros((b, h)),
            curve_kw=qty,
            curve_usd_per_kwh=price,
        )
