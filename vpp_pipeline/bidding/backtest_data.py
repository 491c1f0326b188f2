"""The backtest's world: the sandbox's truth on one hourly grid, and the slice of it that was
known when a trading day was bid.

Everything is hourly (UTC hours; kW = kWh per hour) on one grid from the start of the
history to the end of the backtest window. Truth comes from the sandbox
(``vpp_pipeline.sandbox.bid_truth``): the site's load without its battery, the billing meter
as it was before the window (with the sandbox's own battery schedule in it) and the
realised day-ahead prices with the instant each day was published.

``decision_time(day)`` is when the pipeline bids a trading day: the ``bid_daily`` schedule
(06:00 Pacific) whose run picks it, two days before (about 42 hours ahead; never less
than Leap's 24). ``knowledge_at`` cuts the world at that instant: load reads that ended by
then (only the quarter hours the meter delivered), prices published by then, the billed
peak of the month so far. Nothing later is handed to the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import polars as pl

from vpp_pipeline import inventory
from vpp_pipeline.bidding import market
from vpp_pipeline.bidding.fleet import BidSettings, FleetSpec, fleet_spec
from vpp_pipeline.bidding.prices import ACTUALS_SCHEMA, SOURCE_SANDBOX
from vpp_pipeline.bidding.tariffs import TariffBook
from vpp_pipeline.leap.models import Meter

#: Local wall-clock time of the ``bid_daily`` schedule (assets/bid.py).
SCHEDULE_LOCAL_TIME = time(6, 0)
#: Days of history before the window: load like-days need 45, prices 21 (plus slack).
HISTORY_MARGIN_DAYS = 50


def decision_time(day: date) -> datetime:
    """UTC instant the daily schedule bids ``day``: 06:00 Pacific two days before."""
    local = datetime.combine(day - timedelta(days=2), SCHEDULE_LOCAL_TIME, tzinfo=market.MARKET_TZ)
    at = local.astimezone(UTC)
    if market.next_biddable_day(at) != day:  # the schedule's own rule must pick this day
        raise AssertionError(f"the 06:00 run of {local.date()} does not bid {day}")
    return at


@dataclass
class BacktestData:
    """Truth and static inputs. (B, N) arrays are batteries x grid hours; (Z, N) zones."""

    seed: int
    days: list[date]
    spec: FleetSpec
    meters: pl.DataFrame  # the batteries' rows of the pipeline's `meters` table
    zones: list[str]
    zone_of: np.ndarray  # (B,) index into zones
    hour_start: list[datetime]  # (N,) UTC
    site_load_kw: np.ndarray  # (B, N) truth: the site without its battery
    metered_kw: np.ndarray  # (B, N) the billing meter before the window (sandbox battery)
    present: np.ndarray  # (B, N) bool: the meter delivered the hour
    price_usd_per_kwh: np.ndarray  # (Z, N) realised day-ahead
    hour_end: np.ndarray  # (N,) datetime64[us] UTC, for cutting at an instant
    published_at: np.ndarray  # (N,) datetime64[us]: when the hour's price came out
    trading_day: np.ndarray  # (N,) datetime64[D]
    energy_usd_per_kwh: np.ndarray  # (B, N) retail TOU
    demand_window: np.ndarray  # (B, N) bool
    month: np.ndarray  # (N,) int: local year * 12 + month - 1
    day_slices: dict[date, slice]

    @property
    def window_start(self) -> int:
        return self.day_slices[self.days[0]].start

    def hours_of(self, day: date) -> list[datetime]:
        return self.hour_start[self.day_slices[day]]

    def prices_by_battery(self, cols: slice) -> np.ndarray:
        """Realised prices (B, hours) for each battery's zone."""
        return self.price_usd_per_kwh[self.zone_of][:, cols]


@dataclass
class Knowledge:
    """What the pipeline could know at ``at``: hourly site-load reads (``interval_reads``
    rows, one per hour: the hour's mean as a quarter-hour kWh), staged price actuals (``prices.ACTUALS_SCHEMA``) and each battery's
    billed peak of the trading day's month so far (kW)."""

    at: datetime
    reads: pl.DataFrame
    price_actuals: pl.DataFrame
    month_to_date_peak_kw: np.ndarray


def caiso_battery_meters(portfolio) -> pl.DataFrame:
    """The sandbox's CAISO battery meters as rows of the pipeline's ``meters`` table, sorted
    by meter_id (the order the bid pipeline uses)."""
    frame = inventory.meters_frame([Meter.model_validate(m) for m in portfolio.meters.values()])
    return frame.filter(
        pl.col("has_battery")
        & (pl.col("transmission_region") == "CAISO")
        & (pl.col("battery_power_kw") > 0)
        & (pl.col("battery_energy_kwh") > 0)
    ).sort("meter_id")


def load_backtest_data(
    seed: int,
    days: int,
    end: date,
    book: TariffBook,
    settings: BidSettings,
    *,
    n_meters: int = 72,
) -> BacktestData:
    """Build the sandbox portfolio (anchored just after ``end``) and its truth for the
    ``days`` trading days ending ``end`` plus the history they need."""
    from vpp_pipeline.sandbox import build_portfolio
    from vpp_pipeline.sandbox.bid_truth import day_ahead_price_truth, site_load_truth

    window = [end - timedelta(days=days - 1 - i) for i in range(days)]
    first = window[0] - timedelta(days=HISTORY_MARGIN_DAYS)
    grid_start, grid_end = market.trading_day_start(first), market.trading_day_end(end)
    anchor = datetime.combine(end + timedelta(days=2), time(0), tzinfo=UTC)
    portfolio = build_portfolio(
        seed=seed,
        n_meters=n_meters,
        history_days=(anchor - grid_start).days + 1,
        anchor=anchor,
    )
    meters = caiso_battery_meters(portfolio)
    per_meter = meters.select(
        "meter_id",
        pl.col("tariff").alias("tariff_code"),
        pl.col("battery_power_kw").alias("power_kw"),
        pl.col("battery_energy_kwh").alias("energy_kwh"),
        pl.col("battery_min_soc_pct").alias("min_soc_pct"),
        pl.col("battery_max_soc_pct").alias("max_soc_pct"),
        pl.col("meter_type").is_in(["SUBMETER", "DEVICE"]).alias("is_submeter"),
    )
    spec = fleet_spec(per_meter, book, settings)
    meter_ids = spec.meter_ids
    b = len(meter_ids)

    hour_start, day_slices, trading = [], {}, []
    day = first
    while day <= end:
        hours = [s for s, _ in market.trading_day_hours(day)]
        day_slices[day] = slice(len(hour_start), len(hour_start) + len(hours))
        hour_start.extend(hours)
        trading.extend([day] * len(hours))
        day += timedelta(days=1)
    n = len(hour_start)

    truth = site_load_truth(portfolio, meter_ids, grid_start, grid_end)
    if truth.height != b * n:
        raise ValueError(f"sandbox truth has {truth.height} rows, expected {b * n}")
    zones = sorted(set(meters["load_zone"].to_list()))
    prices = day_ahead_price_truth(seed, zones, first, end).sort("load_zone", "hour_start")
    if prices.height != len(zones) * n:
        raise ValueError(f"price truth has {prices.height} rows, expected {len(zones) * n}")
    energy, window_mask = spec.tariff_arrays(hour_start)
    local = [h.astimezone(market.MARKET_TZ) for h in hour_start]
    return BacktestData(
        seed=seed,
        days=window,
        spec=spec,
        meters=meters,
        zones=zones,
        zone_of=np.array([zones.index(z) for z in meters["load_zone"].to_list()]),
        hour_start=hour_start,
        site_load_kw=truth["site_load_kw"].to_numpy().reshape(b, n),
        metered_kw=truth["metered_kw"].to_numpy().reshape(b, n),
        present=(truth["quarters_present"].to_numpy() == 4).reshape(b, n),
        price_usd_per_kwh=prices["price_usd_per_kwh"].to_numpy().reshape(len(zones), n),
        hour_end=np.array([_utc64(h) for h in hour_start]) + np.timedelta64(1, "h"),
        published_at=prices["published_at"].to_numpy()[:n],
        trading_day=np.array(trading, dtype="datetime64[D]"),
        energy_usd_per_kwh=energy,
        demand_window=window_mask,
        month=np.array([t.year * 12 + t.month - 1 for t in local]),
        day_slices=day_slices,
    )


def _utc64(at: datetime) -> np.datetime64:
    return np.datetime64(at.astimezone(UTC).replace(tzinfo=None), "us")


def knowledge_at(data: BacktestData, billed_kw: np.ndarray, day: date, at: datetime) -> Knowledge:
    """Everything known at ``at`` for bidding ``day``. ``billed_kw`` (B, N): the policy's
    own billed import so far (NaN where it has not happened)."""
    n = len(data.hour_start)
    done = data.hour_end <= _utc64(at)  # the hour is over (its reads exist)
    b = len(data.spec.meter_ids)
    ids = np.repeat(np.array(data.spec.meter_ids, dtype=object), n).reshape(b, n)
    keep = done[None, :] & data.present
    starts = np.broadcast_to(np.array(data.hour_start, dtype=object), (b, n))
    reads = pl.DataFrame(
        {
            "meter_id": ids[keep].tolist(),
            "interval_start": starts[keep].tolist(),
            # the hour's mean as one quarter-hour read (kWh = kW x 0.25 h): the forecast
            # SQL averages an hour's quarter hours, so it reads the same kW
            "kwh": data.site_load_kw[keep] * 0.25,
        },
        schema={
            "meter_id": pl.String,
            "interval_start": pl.Datetime("us", "UTC"),
            "kwh": pl.Float64,
        },
    )
    published = data.published_at <= _utc64(at)
    zone_idx, hour_idx = np.nonzero(np.broadcast_to(published, data.price_usd_per_kwh.shape))
    trading = data.trading_day[hour_idx]
    opr = _opr_hours(data.trading_day)
    actuals = pl.DataFrame(
        {
            "load_zone": [data.zones[z] for z in zone_idx],
            "trading_day": trading,
            "opr_hr": opr[hour_idx],
            "hour_start": [data.hour_start[i] for i in hour_idx],
            "hour_end": [data.hour_start[i] + timedelta(hours=1) for i in hour_idx],
            "lmp_usd_per_mwh": data.price_usd_per_kwh[zone_idx, hour_idx] * 1000.0,
            "source": SOURCE_SANDBOX,
            "source_file": None,
        },
        schema=ACTUALS_SCHEMA,
    )
    month = day.year * 12 + day.month - 1
    counted = done[None, :] & (data.month == month)[None, :] & data.demand_window
    peak = np.where(counted, np.nan_to_num(billed_kw, nan=-np.inf), -np.inf).max(axis=1)
    return Knowledge(
        at=at,
        reads=reads,
        price_actuals=actuals,
        month_to_date_peak_kw=np.maximum(peak, 0.0),
    )


def _opr_hours(trading_day: np.ndarray) -> np.ndarray:
    """1-based hour of its trading day for each grid hour."""
    first = np.r_[True, trading_day[1:] != trading_day[:-1]]
    starts = np.maximum.accumulate(np.where(first, np.arange(len(trading_day)), 0))
    return np.arange(len(trading_day)) - starts + 1
