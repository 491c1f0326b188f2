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
from vpp_pipeline.warehouse import run_models, stage_frame

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
    """Temp tables ``measurement_parameters``, ``nerc_holidays``, ``market_timezones`` and
    ``leap_event_names``."""
    stage_frame(conn, "measurement_parameters", config.parameters_frame())
    stage_frame(conn, "nerc_holidays", holidays_frame(first_year, last_year))
    stage_frame(conn, "market_timezones", config.timezones_frame())
    stage_frame(conn, "leap_event_names", event_names_frame())


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


def build_event_performance(
    conn: duckdb.DuckDBPyConnection, config: MeasurementConfig, now: datetime
) -> None:
    """Rebuild ``event_performance`` from ``baselines`` as known at ``now`` (UTC-aware)."""
    stage_measurement_inputs(conn, config, now.year - 1, now.year + 1)
    run_models(
        conn,
        "event_performance",
        now=now.astimezone(UTC),
        default_timezone=config.default_timezone,
    )


def build_underperformers(
    conn: duckdb.DuckDBPyConnection, config: MeasurementConfig, as_of_date: date
) -> None:
    """Replace the ``underperformers`` rows of ``as_of_date`` (a market-local day)."""
    stage_measurement_inputs(conn, config, as_of_date.year - 1, as_of_date.year + 1)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS underperformers (as_of_date DATE, meter_id VARCHAR, "
        "reason_codes VARCHAR[], window_start DATE, window_end DATE, scored_events INTEGER, "
        "mean_performance_factor DOUBLE, no_response_events INTEGER, "
        "no_response_event_ids VARCHAR[], min_performance_factor DOUBLE, "
        "missing_data_events INTEGER, missing_data_event_ids VARCHAR[], "
        "min_data_completeness DOUBLE)"
    )
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
