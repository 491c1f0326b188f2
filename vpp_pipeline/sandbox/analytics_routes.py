"""Leap-style analytics endpoints of the sandbox, plus its ground-truth admin endpoints.

- ``POST /v1.1/analytics/intervals/meter/search`` and ``POST /v1.1/analytics/performance/meter/search``
  (paths, limits and fields defined once in ``vpp_pipeline.leap.analytics``), served through
  ``api_endpoint`` (auth, faults, request log) with the analytics error envelope
  ``{"title", "status", "details": [{"message", "description"}]}``;
- ``POST /_sandbox/ground_truth/intervals`` (``{"meter_ids", "start", "end"}`` -> counterfactual and actual
  kWh per interval), ``GET /_sandbox/ground_truth/events`` (``intervals.event_truth``; optional repeated
  ``meter_id`` query parameter) and ``GET /_sandbox/ground_truth/response_profile`` (category per meter):
  no auth, no faults, not logged, like the other ``/_sandbox`` endpoints.

The performance endpoint uses the sandbox's OWN simple method, on purpose a little different from the
pipeline's: the baseline of an event interval is the mean kWh at the same local wall-clock quarter hour on
the 5 most recent earlier local weekdays on which the meter had no event and has data (within 45 days);
no day-of adjustment, no holiday handling, no caps. performance = baseline - usage.

Interval data comes from ``IntervalStore``: generated per (meter, UTC day) on first use and kept (LRU) in
the sandbox state, so repeated and paginated requests are cheap.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vpp_pipeline.leap.analytics import (
    DEFAULT_PERFORMANCE_EVENT_TYPES,
    INTERVAL_15MIN,
    INTERVAL_MINUTES,
    INTERVALS_DEFAULT_PAGE_SIZE,
    INTERVALS_MAX_PAGE_SIZE,
    MAX_ANALYTICS_DATA_POINTS,
    MAX_ANALYTICS_METERS,
    MAX_ANALYTICS_WINDOW,
    METER_INTERVALS_SEARCH,
    METER_PERFORMANCE_SEARCH,
    PERFORMANCE_DEFAULT_PAGE_SIZE,
    PERFORMANCE_EVENT_TYPES,
    PERFORMANCE_MAX_PAGE_SIZE,
)

from . import intervals
from .catalog import PROGRAM_IDENTIFIERS
from .errors import ANALYTICS, ApiError
from .portfolio import Portfolio
from .state import SandboxState
from .timefmt import fmt_z, parse_datetime
from .validate import opt_enum, opt_int, opt_list, opt_page_token, opt_uuid_list, req_datetime

_DAY_INTERVALS = 96
#: how far back the sandbox's performance method looks for baseline days
BASELINE_LOOKBACK_DAYS = 45
BASELINE_DAYS = 5

# --- interval cache ------------------------------------------------------------------------------------------


class IntervalStore:
    """Interval data of one portfolio, generated per (meter, UTC day) on first use and kept in an LRU cache
    of at most ``max_meter_days`` entries (each ~5 KB)."""

    def __init__(self, portfolio: Portfolio, max_meter_days: int = 40_000) -> None:
        self.portfolio = portfolio
        self.max_meter_days = max_meter_days
        self.row_of = {m: i for i, m in enumerate(portfolio.meters)}
        self.generated_meter_days = 0
        self._blocks: OrderedDict[tuple[int, int], intervals.IntervalArrays] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._blocks)

    def get(self, meter_ids: list[str], start: datetime, end: datetime) -> intervals.IntervalArrays:
        """The present intervals of ``meter_ids`` (unknown ones skipped) starting in ``[start, end)``,
        ordered by meter (as given) then time."""
        rows = [self.row_of[m] for m in meter_ids if m in self.row_of]
        t0 = math.ceil(start.timestamp() / intervals.INTERVAL_SECONDS)
        t1 = math.ceil(end.timestamp() / intervals.INTERVAL_SECONDS)
        if not rows or t1 <= t0:
            return intervals.IntervalArrays.concat([])
        days = range(t0 // _DAY_INTERVALS, (t1 - 1) // _DAY_INTERVALS + 1)
        with self._lock:
            for day in days:
                missing = sorted({r for r in rows if (r, day) not in self._blocks})
                if missing:
                    self._generate(missing, day)
            parts = []
            for row in rows:
                for day in days:
                    block = self._blocks[(row, day)]
                    self._blocks.move_to_end((row, day))
                    parts.append(block)
            # evict only after assembling, so one large request never evicts its own blocks
            while len(self._blocks) > self.max_meter_days:
                self._blocks.popitem(last=False)
        arrays = intervals.IntervalArrays.concat(parts)
        if days.start * _DAY_INTERVALS < t0 or (days.stop * _DAY_INTERVALS) > t1:
            arrays = arrays.select((arrays.t >= t0) & (arrays.t < t1))
        return arrays

    def _generate(self, rows: list[int], day: int) -> None:
        meter_ids = list(self.portfolio.meters)
        day_start = datetime.fromtimestamp(day * _DAY_INTERVALS * intervals.INTERVAL_SECONDS, UTC)
        arrays = intervals.interval_arrays(
            self.portfolio, [meter_ids[r] for r in rows], day_start, day_start + timedelta(days=1)
        )
        # rows come back in ascending row order (we asked in that order)
        lo = np.searchsorted(arrays.row, rows, side="left")
        hi = np.searchsorted(arrays.row, rows, side="right")
        for row, a, b in zip(rows, lo, hi, strict=True):
            self._blocks[(row, day)] = arrays.select(slice(int(a), int(b)))
        self.generated_meter_days += len(rows)


_stores: weakref.WeakKeyDictionary[SandboxState, IntervalStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def interval_store(state: SandboxState) -> IntervalStore:
    """The interval cache of a sandbox state (created on first use; rebuilt if the portfolio changed)."""
    with _stores_lock:
        store = _stores.get(state)
        if store is None or store.portfolio is not state.portfolio:
            store = IntervalStore(state.portfolio)
            _stores[state] = store
        return store


# --- request validation --------------------------------------------------------------------------------------


def _bad(message: str, description: str, field: str | None = None) -> ApiError:
    return ApiError(400, message, field=field, details={"description": description})


def _meter_ids(body: dict) -> list[str]:
    ids = opt_uuid_list(body, "meter_ids", min_items=1, max_items=MAX_ANALYTICS_METERS)
    if ids is None:
        raise _bad(
            "meter_ids: is required",
            f"Send between 1 and {MAX_ANALYTICS_METERS} meter ids",
            "meter_ids",
        )
    return ids


def _date_range(body: dict) -> tuple[datetime, datetime]:
    start = req_datetime(body, "date_range_start")
    end = req_datetime(body, "date_range_end")
    if end <= start:
        raise _bad(
            "date_range_end: must be after date_range_start",
            "date_range_start is inclusive, date_range_end exclusive",
            "date_range_end",
        )
    if end - start > MAX_ANALYTICS_WINDOW:
        days = (end - start).total_seconds() / 86400
        raise _bad(
            f"date_range_end: must be at most 31 days after date_range_start; got {days:g} days",
            "Reduce the date range to at most 31 days",
            "date_range_end",
        )
    return start, end


def _continue(state: SandboxState, kind: str, body: dict, query_of) -> tuple[dict, int]:
    """(query, offset): a fresh query from ``body``, or the one a ``page_token`` continues."""
    token = opt_page_token(body, must_be_uuid=False)
    if token is None:
        return query_of(body), 0
    cursor = state.pages.resolve(kind, token)
    if cursor is None:
        raise _bad(
            f"page_token: unknown or expired page token {token!r}",
            "Use next_page_token from the previous response",
            "page_token",
        )
    return cursor.query, cursor.offset


def _stamps(t_values: np.ndarray) -> dict[int, str]:
    return {
        int(t): fmt_z(datetime.fromtimestamp(int(t) * intervals.INTERVAL_SECONDS, UTC))
        for t in np.unique(t_values)
    }


def _wh(kwh: np.ndarray) -> list[float]:
    return np.round(kwh * 1000.0, 1).tolist()


# --- intervals -----------------------------------------------------------------------------------------------


def _interval_query(body: dict) -> dict:
    meter_ids = _meter_ids(body)
    start, end = _date_range(body)
    interval = opt_enum(body, "interval", tuple(INTERVAL_MINUTES)) or INTERVAL_15MIN
    page_size = opt_int(body, "page_size", 1, INTERVALS_MAX_PAGE_SIZE, INTERVALS_DEFAULT_PAGE_SIZE)
    points = len(meter_ids) * math.ceil(
        (end - start) / timedelta(minutes=INTERVAL_MINUTES[interval])
    )
    if points > MAX_ANALYTICS_DATA_POINTS:
        raise _bad(
            f"The request covers {points} data points ({len(meter_ids)} meters x "
            f"{points // len(meter_ids)} intervals); the maximum is {MAX_ANALYTICS_DATA_POINTS}",
            "Reduce the number of days or meters",
        )
    return {
        "meter_ids": meter_ids,
        "date_range_start": start.isoformat(),
        "date_range_end": end.isoformat(),
        "interval": interval,
        "page_size": page_size,
    }


def _hourly(arrays: intervals.IntervalArrays) -> dict[str, np.ndarray]:
    """Leap's 1-hour roll-up: the mean of the four 15-minute values of each UTC hour; hours without
    exactly four are dropped. Rows are ordered by meter then time, so an hour's rows are contiguous."""
    hour_key = (arrays.row << 32) | (arrays.t // 4)
    if len(hour_key) == 0:
        empty = np.empty(0)
        return {
            "row": arrays.row,
            "t": arrays.t,
            "kwh": empty,
            "consumed": empty,
            "generated": empty,
            "final": np.empty(0, dtype=bool),
            "step": 4,
        }
    starts = np.flatnonzero(np.r_[True, hour_key[1:] != hour_key[:-1]])
    counts = np.diff(np.r_[starts, len(hour_key)])
    keep = counts == 4

    def mean(values: np.ndarray) -> np.ndarray:
        return (np.add.reduceat(values, starts) / 4)[keep]

    return {
        "row": arrays.row[starts][keep],
        "t": (arrays.t[starts] // 4 * 4)[keep],
        "kwh": mean(arrays.kwh),
        "consumed": mean(arrays.consumed_kwh),
        "generated": mean(arrays.generated_kwh),
        "final": np.logical_and.reduceat(arrays.final, starts)[keep],
        "step": 4,
    }


def search_meter_intervals(state: SandboxState, body: dict) -> dict:
    """``POST /v1.1/analytics/intervals/meter/search``: see ``vpp_pipeline.leap.analytics``."""
    kind = "analytics-intervals"
    query, offset = _continue(state, kind, body, _interval_query)
    start, end = parse_datetime(query["date_range_start"]), parse_datetime(query["date_range_end"])
    arrays = interval_store(state).get(query["meter_ids"], start, end)
    if query["interval"] == INTERVAL_15MIN:
        data = {
            "row": arrays.row,
            "t": arrays.t,
            "kwh": arrays.kwh,
            "consumed": arrays.consumed_kwh,
            "generated": arrays.generated_kwh,
            "final": arrays.final,
            "step": 1,
        }
    else:
        data = _hourly(arrays)
    total = len(data["t"])
    page_size = query["page_size"]
    page = slice(offset, offset + page_size)
    t = data["t"][page]
    step = data["step"]
    stamps = _stamps(np.concatenate([t, t + step]))
    meter_ids = list(state.portfolio.meters)
    records = [
        {
            "meter_id": meter_ids[row],
            "start_date_time_utc": stamps[ti],
            "end_date_time_utc": stamps[ti + step],
            "energy_net_wh": net,
            "energy_consumed_wh": consumed,
            "energy_generated_wh": generated,
            "final": final,
        }
        for row, ti, net, consumed, generated, final in zip(
            data["row"][page].tolist(),
            t.tolist(),
            _wh(data["kwh"][page]),
            _wh(data["consumed"][page]),
            _wh(data["generated"][page]),
            data["final"][page].tolist(),
            strict=True,
        )
    ]
    next_token = (
        state.pages.issue(kind, query, offset + page_size) if offset + page_size < total else None
    )
    return {"intervals": records, "next_page_token": next_token}


# --- performance ---------------------------------------------------------------------------------------------


def _performance_query(body: dict) -> dict:
    meter_ids = _meter_ids(body)
    start, end = _date_range(body)
    programs = opt_list(body, "programs", min_items=1, max_items=100, allowed=PROGRAM_IDENTIFIERS)
    types = opt_list(
        body, "dispatch_event_types", min_items=1, max_items=10, allowed=PERFORMANCE_EVENT_TYPES
    )
    return {
        "meter_ids": meter_ids,
        "date_range_start": start.isoformat(),
        "date_range_end": end.isoformat(),
        "programs": programs,
        "dispatch_event_types": types or list(DEFAULT_PERFORMANCE_EVENT_TYPES),
        "page_size": opt_int(
            body, "page_size", 1, PERFORMANCE_MAX_PAGE_SIZE, PERFORMANCE_DEFAULT_PAGE_SIZE
        ),
    }


def _matching_events(portfolio: Portfolio, query: dict) -> pl.DataFrame:
    """Events (one row per meter and event) of the query, ordered by meter (as requested), start, id."""
    order = {m: i for i, m in enumerate(query["meter_ids"])}
    # the dispatch API's lower-case, hyphenated types, e.g. DAY_AHEAD -> day-ahead
    types = [t.lower().replace("_", "-") for t in query["dispatch_event_types"]]
    if "real-time" in types:
        types.append("5m")
    events = intervals.event_table(portfolio)
    if events.is_empty():
        return events
    selected = events.filter(
        pl.col("meter_id").is_in(list(order))
        & (pl.col("start") >= parse_datetime(query["date_range_start"]))
        & (pl.col("start") < parse_datetime(query["date_range_end"]))
        & (pl.col("dispatch_event_types").list.set_intersection(types).list.len() > 0)
    )
    if query["programs"]:
        selected = selected.filter(
            pl.col("programs").list.set_intersection(query["programs"]).list.len() > 0
        )
    return (
        selected.with_columns(
            pl.col("meter_id").replace_strict(order, return_dtype=pl.Int64).alias("_o")
        )
        .sort("_o", "start", "meter_event_id")
        .drop("_o")
    )


def _compute_performance(
    store: IntervalStore, events: pl.DataFrame, all_events: pl.DataFrame
) -> list[dict]:
    """The response records of ``events`` (see the module docstring for the baseline method)."""
    if events.is_empty():
        return []
    row_of = store.row_of
    meters = events["meter_id"].unique(maintain_order=True).to_list()
    first = events["start"].min() - timedelta(days=BASELINE_LOOKBACK_DAYS + 1)
    last = events["end"].max()
    arrays = store.get(meters, first, last)
    data = pl.DataFrame(
        {
            "row": arrays.row,
            "t": arrays.t,
            "kwh": arrays.kwh,
            "day": arrays.local_day,
            "slot": arrays.local_slot,
        }
    )
    ev = events.with_row_index("i").select(
        "i",
        pl.col("meter_id").replace_strict(row_of, return_dtype=pl.Int64).alias("row"),
        pl.col("local_date").cast(pl.Int64).alias("event_day"),
        (pl.col("start").dt.epoch("s") // intervals.INTERVAL_SECONDS).alias("t0"),
        (
            (pl.col("end").dt.epoch("s") + intervals.INTERVAL_SECONDS - 1)
            // intervals.INTERVAL_SECONDS
        ).alias("t1"),
    )
    event_days = (
        all_events.filter(pl.col("meter_id").is_in(meters))
        .select(
            pl.col("meter_id").replace_strict(row_of, return_dtype=pl.Int64).alias("row"),
            pl.col("local_date").cast(pl.Int64).alias("day"),
        )
        .unique()
    )
    eligible = (
        data.select("row", "day")
        .unique()
        .filter(((pl.col("day") + 3) % 7) < 5)
        .join(event_days, on=["row", "day"], how="anti")
    )
    candidates = (
        ev.select("i", "row", "event_day")
        .join(eligible, on="row")
        .filter(
            (pl.col("day") < pl.col("event_day"))
            & (pl.col("day") >= pl.col("event_day") - BASELINE_LOOKBACK_DAYS)
        )
        .sort("i", "day", descending=[False, True])
        .group_by("i", maintain_order=True)
        .head(BASELINE_DAYS)
        .select("i", "day")
    )
    usage = (
        ev.select("i", "row", pl.int_ranges("t0", "t1").alias("t"))
        .explode("t")
        .join(data.select("row", "t", "kwh", "slot"), on=["row", "t"])
    )
    slot_means = data.group_by("row", "day", "slot").agg(pl.col("kwh").mean())
    baseline = (
        usage.select("i", "row", "t", "slot")
        .join(candidates, on="i")
        .join(slot_means, on=["row", "day", "slot"])
        .group_by("i", "t")
        .agg(pl.col("kwh").mean().alias("baseline_kwh"))
    )
    per_interval = usage.join(baseline, on=["i", "t"], how="left").sort("i", "t")
    by_event: dict[int, list[tuple]] = {}
    for i, t, kwh, base in per_interval.select("i", "t", "kwh", "baseline_kwh").iter_rows():
        by_event.setdefault(i, []).append((t, kwh, base))

    records = []
    for i, row in enumerate(events.iter_rows(named=True)):
        items = []
        base_total = usage_total = perf_total = 0.0
        has_baseline = False
        for t, kwh, base in by_event.get(i, []):
            start = datetime.fromtimestamp(t * intervals.INTERVAL_SECONDS, UTC)
            usage_wh = round(kwh * 1000, 1)
            usage_total += kwh
            item = {"start_date_time_utc": fmt_z(start), "usage_wh": usage_wh}
            if base is None:
                item.update(baseline_wh=None, performance_wh=None)
            else:
                has_baseline = True
                base_total += base
                perf_total += base - kwh
                item.update(
                    baseline_wh=round(base * 1000, 1), performance_wh=round((base - kwh) * 1000, 1)
                )
            items.append(item)
        records.append(
            {
                "meter_id": row["meter_id"],
                "meter_event_id": row["meter_event_id"],
                "programs": row["programs"],
                "start_date_time_utc": fmt_z(row["start"]),
                "end_date_time_utc": fmt_z(row["end"]),
                "baseline_wh": round(base_total * 1000, 1) if has_baseline else None,
                "usage_wh": round(usage_total * 1000, 1),
                "performance_wh": round(perf_total * 1000, 1) if has_baseline else None,
                "intervals": items,
            }
        )
    return records


def search_meter_performance(state: SandboxState, body: dict) -> dict:
    """``POST /v1.1/analytics/performance/meter/search``: see ``vpp_pipeline.leap.analytics``."""
    kind = "analytics-performance"
    query, offset = _continue(state, kind, body, _performance_query)
    events = _matching_events(state.portfolio, query)
    page_size = query["page_size"]
    page = events.slice(offset, page_size)
    records = _compute_performance(
        interval_store(state), page, intervals.event_table(state.portfolio)
    )
    next_token = (
        state.pages.issue(kind, query, offset + page_size)
        if offset + page_size < events.height
        else None
    )
    return {"performance": records, "next_page_token": next_token}


# --- ground truth (sandbox only) -----------------------------------------------------------------------------


def _admin_error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _truth_records(frame: pl.DataFrame) -> list[dict]:
    return [
        {**row, "start": fmt_z(row["start"]), "end": fmt_z(row["end"])}
        for row in frame.iter_rows(named=True)
    ]


def routes(state: SandboxState) -> list[Route]:
    """The analytics and ground-truth routes over ``state`` (``create_app`` adds them)."""
    from .app import api_endpoint  # late import: app imports this module

    async def truth_intervals(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _admin_error("body must be a JSON object {meter_ids, start, end}")
        if not isinstance(body, dict):
            return _admin_error("body must be a JSON object {meter_ids, start, end}")
        meter_ids = body.get("meter_ids")
        if not isinstance(meter_ids, list) or not all(isinstance(m, str) for m in meter_ids):
            return _admin_error("meter_ids: must be a list of meter ids")
        meter_ids = [m.lower() for m in meter_ids]
        unknown = [m for m in meter_ids if m not in state.portfolio.meters]
        if unknown:
            return _admin_error(f"unknown meter_id(s): {unknown[:5]}", 404)
        try:
            start, end = parse_datetime(body.get("start")), parse_datetime(body.get("end"))
        except ValueError as exc:
            return _admin_error(f"start/end: {exc}")
        if end <= start:
            return _admin_error("end must be after start")
        points = len(meter_ids) * math.ceil((end - start) / intervals.INTERVAL)
        if points > MAX_ANALYTICS_DATA_POINTS:
            return _admin_error(
                f"too many intervals ({points}); at most {MAX_ANALYTICS_DATA_POINTS}"
            )
        arrays = interval_store(state).get(meter_ids, start, end)
        frame = intervals.arrays_to_frame(state.portfolio, arrays)
        stamps = _stamps(arrays.t)
        records = [
            {
                "meter_id": meter_id,
                "interval_start": stamps[t],
                "kwh": kwh,
                "counterfactual_kwh": cf,
                "event_id": event_id,
            }
            for meter_id, t, kwh, cf, event_id in zip(
                frame["meter_id"].to_list(),
                arrays.t.tolist(),
                arrays.kwh.tolist(),
                arrays.counterfactual_kwh.tolist(),
                frame["event_id"].to_list(),
                strict=True,
            )
        ]
        return JSONResponse({"intervals": records})

    async def truth_events(request: Request) -> Response:
        wanted = [m.lower() for m in request.query_params.getlist("meter_id")]
        unknown = [m for m in wanted if m not in state.portfolio.meters]
        if unknown:
            return _admin_error(f"unknown meter_id(s): {unknown[:5]}", 404)
        frame = intervals.event_truth(state.portfolio, wanted or None)
        return JSONResponse({"events": _truth_records(frame)})

    async def truth_profile(request: Request) -> Response:
        return JSONResponse({"meters": intervals.response_profile(state.portfolio)})

    return [
        Route(
            METER_INTERVALS_SEARCH,
            api_endpoint(state, ANALYTICS, search_meter_intervals),
            methods=["POST"],
        ),
        Route(
            METER_PERFORMANCE_SEARCH,
            api_endpoint(state, ANALYTICS, search_meter_performance),
            methods=["POST"],
        ),
        Route("/_sandbox/ground_truth/intervals", truth_intervals, methods=["POST"]),
        Route("/_sandbox/ground_truth/events", truth_events, methods=["GET"]),
        Route("/_sandbox/ground_truth/response_profile", truth_profile, methods=["GET"]),
    ]
