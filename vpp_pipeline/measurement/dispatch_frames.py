"""Leap dispatch search records -> polars frames staged for ``sql/dispatch_events.sql``.

One row per timeslot. Times are UTC. ``is_test`` is Leap's ``communication_test`` (search
timeslots) or ``integration_test_notification`` when a record carries it; ``revision`` is
NULL unless the record carries one (the search API does not).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from vpp_pipeline.leap.models import GroupDispatch, MeterDispatch
from vpp_pipeline.warehouse import table_exists

#: Per-timeslot columns shared by the search frames here and the ops-store mirror
#: (``vpp_pipeline.dispatch.mirror``): both feed ``dispatch_events``.
SLOT_SCHEMA: dict[str, Any] = {
    "programs": pl.List(pl.String),
    "start_time": pl.Datetime("us", "UTC"),
    "end_time": pl.Datetime("us", "UTC"),
    "energy_kw": pl.Float64,
    "nomination_kw": pl.Float64,
    "priority": pl.Int32,
    "is_voluntary": pl.Boolean,
    "performance_compensation_cap": pl.String,
    "dispatch_event_types": pl.List(pl.String),
    "cancelled": pl.Boolean,
    "is_test": pl.Boolean,
    "revision": pl.Int32,
    "updated_at": pl.Datetime("us", "UTC"),
}

METERSLOT_SCHEMA = {"meter_event_id": pl.String, "meter_id": pl.String, **SLOT_SCHEMA}
GROUPSLOT_SCHEMA = {
    "market_group_event_id": pl.String,
    "market_group_id": pl.String,
    "meter_ids": pl.List(pl.String),
    **SLOT_SCHEMA,
}

#: The columns of ``dispatch_events`` (and of the ops-store mirror ``ops_dispatch_events``).
DISPATCH_EVENT_COLUMNS = """
    meter_event_id VARCHAR, market_group_event_id VARCHAR, market_group_id VARCHAR,
    meter_id VARCHAR, programs VARCHAR[], start_time TIMESTAMPTZ, end_time TIMESTAMPTZ,
    energy_kw DOUBLE, nomination_kw DOUBLE, committed_kw DOUBLE, priority INTEGER,
    is_voluntary BOOLEAN, performance_compensation_cap VARCHAR, dispatch_event_types VARCHAR[],
    cancelled BOOLEAN, is_test BOOLEAN, revision INTEGER, source VARCHAR, updated_at TIMESTAMPTZ
"""


def _slot_fields(slot: Any, fetched_at: datetime) -> dict[str, Any]:
    extra = slot.model_extra or {}
    is_test = bool(slot.communication_test) or bool(extra.get("integration_test_notification"))
    return {
        "programs": list(slot.programs),
        "start_time": slot.start_time,
        "end_time": slot.end_time,
        "energy_kw": slot.energy_kw,
        "nomination_kw": slot.nomination_kw,
        "priority": slot.priority,
        "is_voluntary": slot.is_voluntary,
        "performance_compensation_cap": slot.performance_compensation_cap,
        "dispatch_event_types": list(slot.dispatch_event_types),
        "cancelled": slot.cancelled,
        "is_test": is_test,
        "revision": extra.get("revision"),
        "updated_at": fetched_at,
    }


def meter_dispatch_frame(records: list[MeterDispatch], fetched_at: datetime) -> pl.DataFrame:
    """One row per meter-level timeslot; ``updated_at`` = when it was fetched."""
    rows = [
        {"meter_event_id": s.meter_event_id, "meter_id": r.meter_id, **_slot_fields(s, fetched_at)}
        for r in records
        for s in r.timeslots
    ]
    return pl.DataFrame(rows, schema=METERSLOT_SCHEMA)


def group_dispatch_frame(records: list[GroupDispatch], fetched_at: datetime) -> pl.DataFrame:
    """One row per group-level timeslot with the group's member meters."""
    rows = [
        {
            "market_group_event_id": s.market_group_event_id,
            "market_group_id": r.market_group_id,
            "meter_ids": list(r.meter_ids),
            **_slot_fields(s, fetched_at),
        }
        for r in records
        for s in r.timeslots
    ]
    return pl.DataFrame(rows, schema=GROUPSLOT_SCHEMA)


def stage_ops_dispatch_events(conn: duckdb.DuckDBPyConnection) -> bool:
    """Temp table ``stg_ops_dispatch_events``: a copy of the ops-store mirror when the table exists,
    otherwise empty with the same columns. Returns whether the mirror exists."""
    exists = table_exists(conn, "ops_dispatch_events")
    if exists:
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE stg_ops_dispatch_events AS "
            "SELECT meter_event_id, market_group_event_id, market_group_id, meter_id, programs, "
            "start_time, end_time, energy_kw, nomination_kw, committed_kw, priority, "
            "is_voluntary, performance_compensation_cap, dispatch_event_types, cancelled, "
            "is_test, revision, source, updated_at FROM main.ops_dispatch_events"
        )
    else:
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE stg_ops_dispatch_events ({DISPATCH_EVENT_COLUMNS})"
        )
    return exists
