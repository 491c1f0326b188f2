"""Leap's analytics API: meter-level interval data and meter-level event performance.

Leap documents these endpoints (digest section 12) but publishes neither their paths nor their response
field names, so both are defined here ONCE and the sandbox serves exactly these:

- ``POST /v1.1/analytics/intervals/meter/search``: raw (gap-filled at Leap) usage in **Wh** per interval,
  event or not. Body: ``meter_ids`` (1-1000), ``date_range_start`` (inclusive), ``date_range_end``
  (exclusive, at most 31 days later; an interval is included if it *starts* in the range), ``interval``
  (``INTERVAL_15MIN`` default, or ``INTERVAL_1HR``: the average of four 15-minute Wh values, hours without
  exactly four dropped), ``page_size`` (default 10,000, max 100,000), ``page_token``. At most 1,000,000 data
  points (meters x intervals) per request, else 400.
  Response ``{"intervals": [{"meter_id", "start_date_time_utc", "end_date_time_utc", "energy_net_wh",
  "energy_consumed_wh", "energy_generated_wh", "final"}], "next_page_token"}``.
- ``POST /v1.1/analytics/performance/meter/search``: per meter event, baseline / usage / performance in
  **Wh**, in total and per interval. Body: ``meter_ids``, ``date_range_start``, ``date_range_end`` (at most
  31 days; events *starting* in the range), optional ``programs``, ``dispatch_event_types`` (default
  ``DAY_AHEAD, HOUR_AHEAD, CAPACITY_TEST, STANDARD``), ``page_size``, ``page_token``. Response
  ``{"performance": [{"meter_id", "meter_event_id", "programs", "start_date_time_utc",
  "end_date_time_utc", "baseline_wh", "usage_wh", "performance_wh", "intervals": [{"start_date_time_utc",
  "baseline_wh", "usage_wh", "performance_wh"}]}], "next_page_token"}``; a group event appears per member
  meter with ``meter_event_id`` ``<market_group_event_id>:<meter_id>``.

Errors come in the analytics envelope ``{"title", "status", "details": [{"message", "description"}]}``.

``fetch_meter_intervals`` and ``fetch_meter_performance`` split any request into ones Leap accepts (31-day
windows; meter chunks so that meters x intervals <= 1,000,000), follow ``next_page_token``, get retries
and error handling from ``LeapClient.post_json``, convert Wh to kWh and return polars frames (UTC).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from vpp_pipeline.leap.client import LeapClient, dispatch_windows, format_utc, page_limit_error
from vpp_pipeline.leap.errors import LeapResponseError

METER_INTERVALS_SEARCH = "/v1.1/analytics/intervals/meter/search"
METER_PERFORMANCE_SEARCH = "/v1.1/analytics/performance/meter/search"

#: Leap rejects analytics ranges longer than this.
MAX_ANALYTICS_WINDOW = timedelta(days=31)
#: Leap rejects interval requests with more data points (meters x intervals) than this.
MAX_ANALYTICS_DATA_POINTS = 1_000_000
MAX_ANALYTICS_METERS = 1000
INTERVALS_DEFAULT_PAGE_SIZE = 10_000
INTERVALS_MAX_PAGE_SIZE = 100_000
PERFORMANCE_DEFAULT_PAGE_SIZE = 100
PERFORMANCE_MAX_PAGE_SIZE = 1000
INTERVAL_15MIN = "INTERVAL_15MIN"
INTERVAL_1HR = "INTERVAL_1HR"
INTERVAL_MINUTES = {INTERVAL_15MIN: 15, INTERVAL_1HR: 60}
#: ``dispatch_event_types`` of the performance endpoint (upper case, unlike the dispatch API) and its default
PERFORMANCE_EVENT_TYPES = ("DAY_AHEAD", "HOUR_AHEAD", "CAPACITY_TEST", "STANDARD", "REAL_TIME")
DEFAULT_PERFORMANCE_EVENT_TYPES = ("DAY_AHEAD", "HOUR_AHEAD", "CAPACITY_TEST", "STANDARD")

_UTC = pl.Datetime("us", "UTC")
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"

INTERVAL_COLUMNS = {
    "meter_id": pl.String,
    "interval_start": _UTC,
    "interval_end": _UTC,
    "kwh": pl.Float64,
    "consumed_kwh": pl.Float64,
    "generated_kwh": pl.Float64,
    "final": pl.Boolean,
}
PERFORMANCE_COLUMNS = {
    "meter_id": pl.String,
    "meter_event_id": pl.String,
    "programs": pl.List(pl.String),
    "start": _UTC,
    "end": _UTC,
    "baseline_kwh": pl.Float64,
    "usage_kwh": pl.Float64,
    "delivered_kwh": pl.Float64,
    "intervals": pl.Int64,
}

_INTERVAL_WIRE = {
    "meter_id": pl.String,
    "start_date_time_utc": pl.String,
    "end_date_time_utc": pl.String,
    "energy_net_wh": pl.Float64,
    "energy_consumed_wh": pl.Float64,
    "energy_generated_wh": pl.Float64,
    "final": pl.Boolean,
}
_PERFORMANCE_WIRE = {
    "meter_id": pl.String,
    "meter_event_id": pl.String,
    "programs": pl.List(pl.String),
    "start_date_time_utc": pl.String,
    "end_date_time_utc": pl.String,
    "baseline_wh": pl.Float64,
    "usage_wh": pl.Float64,
    "performance_wh": pl.Float64,
    "intervals": pl.List(pl.Struct({"start_date_time_utc": pl.String})),
}


def meters_per_request(window: timedelta, interval_minutes: int = 15) -> int:
    """How many meters one interval request over ``window`` may hold (<= 1000 and meters x intervals <=
    1,000,000)."""
    n_intervals = max(1, math.ceil(window / timedelta(minutes=interval_minutes)))
    return max(1, min(MAX_ANALYTICS_METERS, MAX_ANALYTICS_DATA_POINTS // n_intervals))


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _pages(client: LeapClient, path: str, body: dict[str, Any], key: str) -> Iterator[list[dict]]:
    """Each page's list under ``key``, following ``next_page_token`` to the end."""
    endpoint = f"POST {path}"
    request = dict(body)
    seen: set[str] = set()
    while True:
        data = client.post_json(path, request)
        if not isinstance(data, dict):
            raise LeapResponseError(endpoint, f"expected a JSON object, got {type(data).__name__}")
        items = data.get(key)
        if not isinstance(items, list):
            raise LeapResponseError(
                endpoint, f"field {key!r} is missing or not a list (keys: {sorted(data)[:10]})"
            )
        if not all(isinstance(item, dict) for item in items):
            raise LeapResponseError(endpoint, f"{key} items must be JSON objects")
        yield items
        token = data.get("next_page_token")
        if not token:
            return
        if not isinstance(token, str):
            raise LeapResponseError(endpoint, f"next_page_token must be a string, got {token!r}")
        if token in seen:
            raise LeapResponseError(endpoint, f"next_page_token {token!r} repeats: pagination loop")
        seen.add(token)
        if len(seen) >= client.max_pages:
            raise page_limit_error(endpoint, client.max_pages)
        request = {**body, "page_token": token}


def _wire_frame(
    endpoint: str, items: list[dict], schema: dict, required: tuple[str, ...]
) -> pl.DataFrame:
    try:
        frame = pl.DataFrame(items, schema=schema, orient="row")
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise LeapResponseError(
            endpoint, f"records do not match the expected schema: {exc}"
        ) from None
    for column in required:
        nulls = frame[column].null_count()
        if nulls:
            raise LeapResponseError(endpoint, f"{nulls} record(s) lack a value for {column!r}")
    return frame


def _utc(column: str, alias: str) -> pl.Expr:
    return (
        pl.col(column)
        .str.replace(" ", "T", literal=True)
        .str.to_datetime(_TIMESTAMP_FORMAT, time_zone="UTC", time_unit="us")
        .alias(alias)
    )


def _parse_times(endpoint: str, frame: pl.DataFrame, mapping: dict[str, str]) -> pl.DataFrame:
    try:
        return frame.with_columns([_utc(wire, name) for wire, name in mapping.items()])
    except pl.exceptions.PolarsError as exc:
        raise LeapResponseError(endpoint, f"unparsable timestamp: {exc}") from None


def _empty(columns: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=columns)


def fetch_meter_intervals(
    client: LeapClient,
    meter_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    page_size: int = INTERVALS_MAX_PAGE_SIZE,
) -> pl.DataFrame:
    """Meter-level 15-minute interval data starting in ``[start, end)`` (UTC; naive = UTC), any length.

    Returns columns ``meter_id``, ``interval_start``, ``interval_end`` (UTC), ``kwh`` (net consumption over
    the interval, export negative), ``consumed_kwh``, ``generated_kwh`` (kWh = Leap's Wh / 1000; NULL when
    Leap omits them) and ``final``; one row per (meter_id, interval_start) (a repeated one keeps the last),
    ordered by meter and time. Raises ``LeapApiError`` / ``LeapConnectionError`` (after retries) or
    ``LeapResponseError`` on a malformed answer.
    """
    endpoint = f"POST {METER_INTERVALS_SEARCH}"
    ids = list(dict.fromkeys(meter_ids))
    if not ids:
        return _empty(INTERVAL_COLUMNS)
    frames: list[pl.DataFrame] = []
    for window_start, window_end in dispatch_windows(start, end, MAX_ANALYTICS_WINDOW):
        per_request = meters_per_request(window_end - window_start)
        for chunk in _chunks(ids, per_request):
            body = {
                "meter_ids": chunk,
                "date_range_start": format_utc(window_start),
                "date_range_end": format_utc(window_end),
                "interval": INTERVAL_15MIN,
                "page_size": page_size,
            }
            for items in _pages(client, METER_INTERVALS_SEARCH, body, "intervals"):
                if items:
                    frames.append(
                        _wire_frame(
                            endpoint,
                            items,
                            _INTERVAL_WIRE,
                            ("meter_id", "start_date_time_utc", "end_date_time_utc"),
                        )
                    )
    if not frames:
        return _empty(INTERVAL_COLUMNS)
    wire = pl.concat(frames)
    net_missing = wire.filter(
        pl.col("energy_net_wh").is_null()
        & (pl.col("energy_consumed_wh").is_null() | pl.col("energy_generated_wh").is_null())
    ).height
    if net_missing:
        raise LeapResponseError(endpoint, f"{net_missing} interval(s) carry no energy value")
    frame = _parse_times(
        endpoint,
        wire,
        {"start_date_time_utc": "interval_start", "end_date_time_utc": "interval_end"},
    )
    return (
        frame.select(
            "meter_id",
            "interval_start",
            "interval_end",
            (
                pl.coalesce(
                    pl.col("energy_net_wh"),
                    pl.col("energy_consumed_wh") - pl.col("energy_generated_wh"),
                )
                / 1000
            ).alias("kwh"),
            (pl.col("energy_consumed_wh") / 1000).alias("consumed_kwh"),
            (pl.col("energy_generated_wh") / 1000).alias("generated_kwh"),
            "final",
        )
        .unique(subset=["meter_id", "interval_start"], keep="last", maintain_order=True)
        .sort("meter_id", "interval_start")
    )


def fetch_meter_performance(
    client: LeapClient,
    meter_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    programs: Sequence[str] | None = None,
    page_size: int = PERFORMANCE_MAX_PAGE_SIZE,
) -> pl.DataFrame:
    """Leap's meter-level event performance for events starting in ``[start, end)`` (UTC), any length.

    One row per meter event: ``meter_id``, ``meter_event_id`` (group events: ``<market_group_event_id>:
    <meter_id>``), ``programs``, ``start``, ``end`` (UTC), ``baseline_kwh``, ``usage_kwh``,
    ``delivered_kwh`` (Leap's performance: baseline - usage; kWh = Wh / 1000) and ``intervals`` (how many
    interval records Leap sent). Raises ``LeapResponseError`` on a malformed answer.
    """
    endpoint = f"POST {METER_PERFORMANCE_SEARCH}"
    ids = list(dict.fromkeys(meter_ids))
    if not ids:
        return _empty(PERFORMANCE_COLUMNS)
    frames: list[pl.DataFrame] = []
    for window_start, window_end in dispatch_windows(start, end, MAX_ANALYTICS_WINDOW):
        for chunk in _chunks(ids, MAX_ANALYTICS_METERS):
            body: dict[str, Any] = {
                "meter_ids": chunk,
                "date_range_start": format_utc(window_start),
                "date_range_end": format_utc(window_end),
                "page_size": page_size,
            }
            if programs:
                body["programs"] = list(programs)
            for items in _pages(client, METER_PERFORMANCE_SEARCH, body, "performance"):
                if items:
                    frames.append(
                        _wire_frame(
                            endpoint,
                            items,
                            _PERFORMANCE_WIRE,
                            (
                                "meter_id",
                                "meter_event_id",
                                "start_date_time_utc",
                                "end_date_time_utc",
                                "usage_wh",
                            ),
                        )
                    )
    if not frames:
        return _empty(PERFORMANCE_COLUMNS)
    frame = _parse_times(
        endpoint,
        pl.concat(frames),
        {"start_date_time_utc": "start", "end_date_time_utc": "end"},
    )
    return (
        frame.select(
            "meter_id",
            "meter_event_id",
            pl.col("programs").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            "start",
            "end",
            (pl.col("baseline_wh") / 1000).alias("baseline_kwh"),
            (pl.col("usage_wh") / 1000).alias("usage_kwh"),
            (pl.col("performance_wh") / 1000).alias("delivered_kwh"),
            pl.col("intervals").list.len().fill_null(0).cast(pl.Int64).alias("intervals"),
        )
        .unique(subset=["meter_id", "meter_event_id"], keep="last", maintain_order=True)
        .sort("meter_id", "start", "meter_event_id")
    )
