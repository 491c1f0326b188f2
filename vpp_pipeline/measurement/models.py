"""Thin helpers that stage the measurement inputs and run the SQL models of ``sql/``.

All work over interval data happens in DuckDB; Python only stages small frames (parameters,
NERC holidays, market time zones) and picks the model order and variables. Every function
takes an open DuckDB connection and rebuilds its tables whole (or one partition), inside
one transaction.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb

from vpp_pipeline.dispatch.examples import event_names_frame
from vpp_pipeline.measurement.config import MeasurementConfig
from vpp_pipeline.measurement.nerc_holidays import holidays_frame
from vpp_pipeline.warehouse import run_models, stage_frame, table_exists

#: Models that rebuild ``baselines`` from dispatch_events and interval_reads, in order.
BASELINE_MODELS = (
    "meter_profiles",
    "meter_dispatch_days",
    "meter_day_intervals",
    "baseline_requests",
    "eligible_days",
    "baseline_intervals",
)


def stage_measurement_inputs(
    conn: duckdb.DuckDBPyConnection, config: MeasurementConfig, first_year: int, last_year: int
) -> None:
    """Temp tables ``measurement_parameters``, ``nerc_holidays``, ``market_timezones``,
    ``leap_event_names`` and ``student_t_quantiles`` (for the placebo-event bounds)."""
    stage_frame(conn, "measurement_parameters", config.parameters_frame())
    stage_frame(conn, "nerc_holidays", holidays_frame(first_year, last_year))
    stage_frame(conn, "market_timezones", config.timezones_frame())
    stage_frame(conn, "leap_event_names", event_names_frame())
    stage_frame(conn, "student_t_quantiles", config.t_quantiles_frame())


def check_interval_day_counts(conn: duckdb.DuckDBPyConnection) -> None:
    """Make ``interval_day_counts`` (readings per meter and local day, which the ingest keeps
    with every partition) agree with ``interval_reads`` before the completeness check reads
    it: rebuilt whole when missing or when its total differs from the table's row count,
    which DuckDB answers from metadata. Reads added or removed outside the ingest change that
    count; an edit that moves readings between meters or days without changing it is not
    seen (drop the table after such an edit: the next run rebuilds it)."""
    if table_exists(conn, "interval_day_counts"):
        stored, counted = conn.execute(
            "SELECT (SELECT count(*) FROM interval_reads), "
            "(SELECT coalesce(sum(intervals_present), 0) FROM interval_day_counts)"
        ).fetchall()[0]
        if stored == counted:
            return
    run_models(conn, "interval_day_counts")


def _event_day_range(conn: duckdb.DuckDBPyConnection) -> tuple[date, date] | None:
    rows = conn.execute(
        "SELECT CAST(min(start_time) AS DATE), CAST(max(end_time) AS DATE) FROM dispatch_events"
    ).fetchall()
    first, last = rows[0]
    return None if first is None else (first, last)


def _common_variables(config: MeasurementConfig) -> dict:
    return {
        "default_timezone": config.default_timezone,
        "interval_local_timezone": config.interval_local_timezone,
    }


def _max_lookback_days(config: MeasurementConfig) -> int:
    return max(
        config.for_program(p).baseline_lookback_days for p in [None, *config.program_overrides]
    )


def build_baselines(conn: duckdb.DuckDBPyConnection, config: MeasurementConfig) -> None:
    """Rebuild ``baselines`` for every non-cancelled, non-test row of ``dispatch_events``."""
    day_range = _event_day_range(conn) or (date(2000, 1, 1), date(2000, 1, 1))
    days_from = day_range[0] - timedelta(days=_max_lookback_days(config) + 2)
    days_to = day_range[1] + timedelta(days=2)
    stage_measurement_inputs(conn, config, days_from.year - 1, days_to.year + 1)
    check_interval_day_counts(conn)
    run_models(
        conn,
        *BASELINE_MODELS,
        "baselines",
        purpose="events",
        as_of_date=days_to,
        days_from=days_from,
        days_to=days_to,
        **_common_variables(config),
    )


#: Battery columns of ``meters`` the flags read (older or hand-made tables may lack them).
_BATTERY_COLUMNS = (
    "battery_power_kw",
    "battery_energy_kwh",
    "battery_min_soc_pct",
    "battery_max_soc_pct",
)


def stage_meter_batteries(conn: duckdb.DuckDBPyConnection) -> None:
    """Temp table ``meter_batteries`` (meter_id, battery_power_kw, battery_usable_kwh): what
    each battery can deliver, usable energy = capacity x (max - min state of charge); empty
    when ``meters`` has no battery columns."""
    present = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'meters' "
            "AND schema_name = current_schema()"
        ).fetchall()
    }
    if set(_BATTERY_COLUMNS) <= present:
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE meter_batteries AS SELECT meter_id, "
            "any_value(battery_power_kw) AS battery_power_kw, any_value(battery_energy_kwh "
            "* (coalesce(battery_max_soc_pct, 100) - coalesce(battery_min_soc_pct, 0)) / 100) "
            "AS battery_usable_kwh FROM meters WHERE battery_power_kw IS NOT NULL GROUP BY meter_id"
        )
    else:
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE meter_batteries (meter_id VARCHAR, "
            "battery_power_kw DOUBLE, battery_usable_kwh DOUBLE)"
        )


#: Tables ``sql/group_event_members.sql`` reads (dispatch_events and the Manage stage's).
_MEMBERSHIP_INPUTS = ("dispatch_events", "enrollments", "nominations", "participation_preferences")


def stage_group_event_members(conn: duckdb.DuckDBPyConnection) -> None:
    """Temp table ``group_event_members`` (meter_event_id, was_member): whether each group
    share's meter was in the group at the event's start (``sql/group_event_members.sql``).
    Empty when an input table is missing: membership unknown, group shares not judged."""
    if all(table_exists(conn, table) for table in _MEMBERSHIP_INPUTS):
        run_models(conn, "group_event_members")
    else:
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE group_event_members "
            "(meter_event_id VARCHAR, was_member BOOLEAN, split_over_members BOOLEAN)"
        )


def build_event_performance(
    conn: duckdb.DuckDBPyConnection, config: MeasurementConfig, now: datetime
) -> None:
    """Rebuild ``event_performance`` from ``baselines`` as known at ``now`` (UTC-aware)."""
    stage_measurement_inputs(conn, config, now.year - 1, now.year + 1)
    stage_meter_batteries(conn)
    run_models(
        conn,
        "event_performance",
        now=now.astimezone(UTC),
        default_timezone=config.default_timezone,
    )


#: The evidence of an ``underperformers`` row: one struct per event behind it.
UNDERPERFORMER_EVIDENCE_TYPE = (
    "STRUCT(meter_event_id VARCHAR, event_date DATE, status VARCHAR, committed_kw DOUBLE, "
    "expected_kw DOUBLE, delivered_kw DOUBLE, delivered_kw_uncapped DOUBLE, delivered_kw_low DOUBLE, "
    "delivered_kw_high DOUBLE, performance_factor DOUBLE, performance_factor_low DOUBLE, "
    "performance_factor_high DOUBLE, event_window_completeness DOUBLE, placebo_days BIGINT, "
    "no_response BOOLEAN, missing_data BOOLEAN)[]"
)

#: ``underperformers`` columns in table order; later entries were added over time, and an
#: older table gains the missing ones (NULL in its old partitions) rather than being rebuilt,
#: so the history of as-of days is kept.
UNDERPERFORMER_COLUMNS = (
    ("as_of_date", "DATE"),
    ("meter_id", "VARCHAR"),
    ("reason_codes", "VARCHAR[]"),
    ("window_start", "DATE"),
    ("window_end", "DATE"),
    ("scored_events", "INTEGER"),
    ("mean_performance_factor", "DOUBLE"),
    ("no_response_events", "INTEGER"),
    ("no_response_event_ids", "VARCHAR[]"),
    ("min_performance_factor", "DOUBLE"),
    ("missing_data_events", "INTEGER"),
    ("missing_data_event_ids", "VARCHAR[]"),
    ("min_data_completeness", "DOUBLE"),
    ("flagged", "BOOLEAN"),
    ("reason", "VARCHAR"),
    ("min_event_window_completeness", "DOUBLE"),
    ("judged_events", "INTEGER"),
    ("pooled_performance_factor", "DOUBLE"),
    ("pooled_performance_low", "DOUBLE"),
    ("pooled_performance_high", "DOUBLE"),
    ("evidence", UNDERPERFORMER_EVIDENCE_TYPE),
)


def _ensure_underperformers_table(conn: duckdb.DuckDBPyConnection) -> None:
    columns = ", ".join(f"{name} {kind}" for name, kind in UNDERPERFORMER_COLUMNS)
    conn.execute(f"CREATE TABLE IF NOT EXISTS underperformers ({columns})")
    present = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM duckdb_columns() "
            "WHERE table_name = 'underperformers' AND schema_name = current_schema()"
        ).fetchall()
    }
    for name, kind in UNDERPERFORMER_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE underperformers ADD COLUMN {name} {kind}")


def build_underperformers(
    conn: duckdb.DuckDBPyConnection, config: MeasurementConfig, as_of_date: date
) -> None:
    """Replace the ``underperformers`` rows of ``as_of_date`` (a market-local day); other
    as-of days are kept (the table is the history of flags)."""
    stage_measurement_inputs(conn, config, as_of_date.year - 1, as_of_date.year + 1)
    stage_group_event_members(conn)
    _ensure_underperformers_table(conn)
    run_models(
        conn,
        "underperformers",
        as_of_date=as_of_date,
        timezone=config.interval_local_timezone,
    )


def build_baseline_accuracy(
    conn: duckdb.DuckDBPyConnection, config: MeasurementConfig, as_of_date: date
) -> None:
    """Rebuild ``baseline_accuracy`` over the trailing window before ``as_of_date``."""
    window = config.defaults.accuracy_window_days
    days_from = as_of_date - timedelta(days=window + _max_lookback_days(config) + 2)
    stage_measurement_inputs(conn, config, days_from.year - 1, as_of_date.year + 1)
    check_interval_day_counts(conn)
    run_models(
        conn,
        *BASELINE_MODELS,
        "baseline_accuracy",
        purpose="accuracy",
        as_of_date=as_of_date,
        days_from=days_from,
        days_to=as_of_date,
        **_common_variables(config),
    )
