"""Hand-made DuckDB inputs for the baseline and performance tests (no SQL of ours here).

Tables are created with the documented schemas: ``meters`` (the columns the measurement
models read), ``nominations``, ``interval_reads`` (issue 3 schema) and ``dispatch_events``.
Readings are generated per market-local day from a Python function of the local wall-clock
time, so each test can compute the expected baseline by hand from the same function.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from vpp_pipeline.measurement.dispatch_frames import DISPATCH_EVENT_COLUMNS

LA = ZoneInfo("America/Los_Angeles")
QUARTER = timedelta(minutes=15)


def connect(path) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path))
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute(
        "CREATE TABLE meters (meter_id VARCHAR, transmission_region VARCHAR, meter_type VARCHAR, "
        "load_types VARCHAR[])"
    )
    conn.execute(
        "CREATE TABLE nominations (meter_id VARCHAR, program_identifier VARCHAR, "
        "start_time TIMESTAMPTZ, end_time TIMESTAMPTZ, source VARCHAR, nomination_kw DOUBLE, "
        "updated_at TIMESTAMPTZ)"
    )
    conn.execute(
        "CREATE TABLE interval_reads (meter_id VARCHAR, interval_start TIMESTAMPTZ, "
        "interval_end TIMESTAMPTZ, kwh DOUBLE, consumed_kwh DOUBLE, generated_kwh DOUBLE, "
        "final BOOLEAN, source VARCHAR, source_file VARCHAR, loaded_at TIMESTAMPTZ, "
        "local_date DATE)"
    )
    conn.execute(f"CREATE TABLE dispatch_events ({DISPATCH_EVENT_COLUMNS})")
    return conn


def add_meter(
    conn,
    meter_id: str,
    *,
    region: str = "CAISO",
    meter_type: str = "UTILITY_METER",
    load_types: tuple[str, ...] = ("HVAC",),
) -> None:
    conn.execute(
        "INSERT INTO meters VALUES (?, ?, ?, ?)", [meter_id, region, meter_type, list(load_types)]
    )


def local_day_quarters(day: date, tz: ZoneInfo = LA) -> list[datetime]:
    """UTC starts of the quarter hours of a market-local day (92, 96 or 100 of them)."""
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    out, cursor = [], start
    while cursor < end:
        out.append(cursor)
        cursor += QUARTER
    return out


def add_reads(
    conn,
    meter_id: str,
    first_day: date,
    last_day: date,
    kwh: Callable[[datetime], float | None],
    tz: ZoneInfo = LA,
) -> None:
    """Readings for every quarter hour of local days first_day..last_day; ``kwh`` gets the
    local (aware) start time and returns kWh, or None to leave the quarter hour missing."""
    rows = []
    day = first_day
    while day <= last_day:
        for start in local_day_quarters(day, tz):
            value = kwh(start.astimezone(tz))
            if value is None:
                continue
            rows.append(
                {
                    "meter_id": meter_id,
                    "interval_start": start,
                    "interval_end": start + QUARTER,
                    "kwh": float(value),
                    "local_date": start.astimezone(LA).date(),
                }
            )
        day += timedelta(days=1)
    frame = pl.DataFrame(rows)
    conn.register("_reads", frame.to_arrow())
    conn.execute(
        "INSERT INTO interval_reads SELECT meter_id, interval_start, interval_end, kwh, NULL, "
        "NULL, true, 'csv', NULL, now(), local_date FROM _reads"
    )
    conn.unregister("_reads")


def add_event(
    conn,
    meter_event_id: str,
    meter_id: str,
    start: datetime,
    end: datetime,
    *,
    program: str = "ELRP",
    energy_kw: float | None = 10.0,
    nomination_kw: float | None = 10.0,
    cap: str = "grid-exports-allowed",
    cancelled: bool = False,
    is_test: bool = False,
    is_voluntary: bool = False,
) -> None:
    committed = energy_kw if energy_kw is not None else nomination_kw
    conn.execute(
        "INSERT INTO dispatch_events VALUES (?, NULL, NULL, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, "
        "['standard'], ?, ?, 1, 'webhook', now())",
        [
            meter_event_id,
            meter_id,
            [program],
            start,
            end,
            energy_kw,
            nomination_kw,
            committed,
            is_voluntary,
            cap,
            cancelled,
            is_test,
        ],
    )


def local(day: date, hour: int, minute: int = 0, tz: ZoneInfo = LA, fold: int = 0) -> datetime:
    """A market-local wall-clock time as a UTC instant."""
    return datetime.combine(day, time(hour, minute), tzinfo=tz).replace(fold=fold).astimezone(UTC)
