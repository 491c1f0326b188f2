"""Ground truth for the bid backtest: what each battery site really consumed and what the
day-ahead market really paid.

- ``site_load_truth``: per meter and UTC hour, the site's own load (kW, hourly mean) without
  its battery and without any dispatch response: the sandbox's counterfactual net load minus
  the behind-the-meter battery's scheduled charge/discharge (the schedule the sandbox runs
  when nobody bids the battery). For a battery SUBMETER it is the submeter's auxiliary draw.
  ``metered_kw`` is the same hour of the billing meter with that battery schedule in it (what
  the site's bill saw before anybody bid the battery). ``quarters_present`` counts the
  quarter hours the meter actually delivered (``gaps`` meters miss some): the hour's truth is
  always complete, the pipeline only ever sees the present quarters.
- ``day_ahead_price_truth``: the synthetic day-ahead LMP per zone and UTC hour
  (``prices.synthetic_prices``) with the instant each day was published (13:00 Pacific the
  day before), so a caller can take only what was out at a given time.

``POST /_sandbox/ground_truth/site_load`` (``{"meter_ids", "start", "end"}``, at most 31 days)
serves ``site_load_truth`` as JSON.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vpp_pipeline.bidding.market import MARKET_TZ

# The sandbox's own interval model; these helpers are internal to the sandbox package.
from .intervals import _evaluate, _in_charge, _in_peak, _interval_index, _model
from .prices import PUBLISH_LOCAL_TIME, synthetic_prices
from .state import SandboxState
from .timefmt import parse_datetime

MAX_TRUTH_DAYS = 31

SITE_LOAD_SCHEMA = {
    "meter_id": pl.String,
    "hour_start": pl.Datetime("us", "UTC"),
    "site_load_kw": pl.Float64,
    "metered_kw": pl.Float64,
    "quarters_present": pl.Int32,
}


def site_load_truth(portfolio, meter_ids: list[str], start: datetime, end: datetime):
    """Hourly site load truth for ``meter_ids`` over whole UTC hours in ``[start, end)``
    (intervals after the portfolio's anchor do not exist and are left out). Columns:
    ``SITE_LOAD_SCHEMA``; ordered by meter (as given) then hour."""
    model = _model(portfolio)
    rows = np.array([model.row_of[m] for m in meter_ids], dtype=np.int64)
    t0 = _interval_index(start, ceil=True)
    t1 = min(_interval_index(end, ceil=True), model.anchor_t)
    t0, t1 = -(-t0 // 4) * 4, t1 // 4 * 4  # whole hours only
    if t1 <= t0 or len(rows) == 0:
        return pl.DataFrame(schema=SITE_LOAD_SCHEMA)
    span = t1 - t0
    row = np.repeat(rows, span)
    t = np.tile(np.arange(t0, t1), len(rows))
    arrays, present = _evaluate(model, row, t)
    slot = arrays.local_slot
    battery_kw = np.where(_in_charge(slot), model.btm_charge_kw[row], 0.0) - np.where(
        _in_peak(slot), model.btm_discharge_kw[row], 0.0
    )
    metered_kw = arrays.counterfactual_kwh * 4
    site_kw = metered_kw - battery_kw
    hours = span // 4
    shape = (len(rows), hours, 4)
    hour_ns = (np.arange(t0, t1, 4) * 900 * 1_000_000).astype(np.int64)
    return pl.DataFrame(
        {
            "meter_id": np.repeat(np.array(meter_ids, dtype=object), hours).tolist(),
            "hour_start": pl.Series(np.tile(hour_ns, len(rows))).cast(pl.Datetime("us", "UTC")),
            "site_load_kw": site_kw.reshape(shape).mean(axis=2).ravel(),
            "metered_kw": metered_kw.reshape(shape).mean(axis=2).ravel(),
            "quarters_present": present.reshape(shape).sum(axis=2).ravel(),
        },
        schema=SITE_LOAD_SCHEMA,
    )


def published_at(day: date) -> datetime:
    """UTC instant a trading day's day-ahead prices come out (13:00 Pacific the day before)."""
    local = datetime.combine(day - timedelta(days=1), PUBLISH_LOCAL_TIME, tzinfo=MARKET_TZ)
    return local.astimezone(UTC)


def day_ahead_price_truth(seed: int, zones: list[str], first: date, last: date) -> pl.DataFrame:
    """Realised day-ahead prices for trading days ``[first, last]``: ``load_zone``,
    ``trading_day``, ``opr_hr``, ``hour_start``, ``hour_end`` (UTC), ``lmp_usd_per_mwh``,
    ``price_usd_per_kwh`` and ``published_at`` (UTC)."""
    rows = []
    day = first
    while day <= last:
        out = published_at(day)
        for zone in zones:
            for r in synthetic_prices(seed, zone, day):
                rows.append(
                    (
                        zone,
                        day,
                        r["opr_hr"],
                        parse_datetime(r["interval_start_time"]),
                        parse_datetime(r["interval_end_time"]),
                        r["lmp_usd_per_mwh"],
                        out,
                    )
                )
        day += timedelta(days=1)
    frame = pl.DataFrame(
        rows,
        schema={
            "load_zone": pl.String,
            "trading_day": pl.Date,
            "opr_hr": pl.Int32,
            "hour_start": pl.Datetime("us", "UTC"),
            "hour_end": pl.Datetime("us", "UTC"),
            "lmp_usd_per_mwh": pl.Float64,
            "published_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )
    return frame.with_columns(
        (pl.col("lmp_usd_per_mwh") / 1000.0).alias("price_usd_per_kwh")
    ).select(
        "load_zone",
        "trading_day",
        "opr_hr",
        "hour_start",
        "hour_end",
        "lmp_usd_per_mwh",
        "price_usd_per_kwh",
        "published_at",
    )


def _admin_error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def truth_routes(state: SandboxState) -> list[Route]:
    async def site_load(request: Request) -> Response:
        try:
            body = await request.json()
            meter_ids = [str(m).lower() for m in body["meter_ids"]]
            start, end = parse_datetime(body["start"]), parse_datetime(body["end"])
        except (ValueError, KeyError, TypeError) as exc:
            return _admin_error(f"expected {{meter_ids, start, end}}: {exc}")
        unknown = [m for m in meter_ids if m not in state.portfolio.meters]
        if unknown:
            return _admin_error(f"unknown meter_id(s): {unknown[:5]}", 404)
        if end - start > timedelta(days=MAX_TRUTH_DAYS):
            return _admin_error(f"at most {MAX_TRUTH_DAYS} days per request")
        frame = site_load_truth(state.portfolio, meter_ids, start, end)
        records = [
            {**r, "hour_start": r["hour_start"].strftime("%Y-%m-%dT%H:%M:%SZ")}
            for r in frame.iter_rows(named=True)
        ]
        return JSONResponse({"site_load": records})

    return [Route("/_sandbox/ground_truth/site_load", site_load, methods=["POST"])]


__all__ = [
    "SITE_LOAD_SCHEMA",
    "day_ahead_price_truth",
    "published_at",
    "site_load_truth",
    "truth_routes",
]
