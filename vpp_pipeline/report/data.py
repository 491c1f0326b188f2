"""What the performance report shows, read from the analytics database in a few SQL queries.

Every function takes an open DuckDB connection and returns polars frames (small: one row per
program-month, flagged meter, event, meter, or site command; one per quarter hour only for the
plotted events). A table that does not exist yet gives an empty frame, so a report can be made
at any stage of a first run. Times: instants stay UTC; ``*_local`` values are wall-clock times
in the meter's market zone (``event_performance.meter_timezone``).
"""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from vpp_pipeline.warehouse import table_exists

#: Columns of ``underperformers`` that are bookkeeping, not evidence.
FLAG_BOOKKEEPING = {"as_of_date", "meter_id"}
#: Names of the column holding a flag's reason codes (the first present is used).
REASON_COLUMNS = ("reason_codes", "reasons", "reason_code", "reason")


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = $t "
            "AND schema_name = 'main' AND database_name = current_database() "
            "ORDER BY column_index",
            {"t": table},
        ).fetchall()
    ]


def meter_names(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """meter_id -> company name (or partner reference), for labels beside ids."""
    if not table_exists(conn, "meters"):
        return {}
    rows = conn.execute(
        "SELECT meter_id, coalesce(nullif(company_name, ''), nullif(partner_reference, ''), "
        "'(no name)') FROM meters"
    ).fetchall()
    return dict(rows)


def portfolio_by_program_month(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per program and market-local month (of the event's local start date): scored committed
    events, their committed and delivered kW, and the portfolio performance factor =
    sum(delivered_kw) / sum(committed_kw) (large commitments weigh more, as in settlement)."""
    if not table_exists(conn, "event_performance"):
        return pl.DataFrame()
    return conn.sql(
        """
        SELECT
            coalesce(program_identifier, programs[1]) AS program,
            strftime(date_trunc('month', event_local_date), '%Y-%m') AS month,
            count(*) AS scored_events,
            sum(committed_kw) AS committed_kw,
            sum(delivered_kw) AS delivered_kw,
            sum(delivered_kw) / sum(committed_kw) AS performance_factor
        FROM event_performance
        WHERE status = 'scored' AND committed_kw > 0
        GROUP BY ALL
        ORDER BY month, program
        """
    ).pl()


def latest_flags(conn: duckdb.DuckDBPyConnection) -> tuple[date | None, pl.DataFrame]:
    """The flags of the latest as-of day, every column the table has (so new evidence columns
    show up without a change here), with ``company_name`` beside ``meter_id``; flagged meters
    first, then the INCONCLUSIVE rows (not flags)."""
    if not table_exists(conn, "underperformers"):
        return None, pl.DataFrame()
    as_of = conn.execute("SELECT max(as_of_date) FROM underperformers").fetchall()[0][0]
    if as_of is None:
        return None, pl.DataFrame()
    frame = conn.sql(
        "SELECT u.*, m.company_name FROM underperformers u "
        "LEFT JOIN (SELECT meter_id, any_value(company_name) AS company_name FROM meters "
        "GROUP BY ALL) m USING (meter_id) WHERE u.as_of_date = $d ORDER BY u.flagged DESC, u.meter_id",
        params={"d": as_of},
    ).pl()
    return as_of, frame


def flag_reason_column(flags: pl.DataFrame) -> str | None:
    return next((c for c in REASON_COLUMNS if c in flags.columns), None)


def referenced_event_ids(value) -> list[str]:
    """Event ids named in one evidence cell: a list of ids, a struct / list of structs with a
    ``meter_event_id``, or one id."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        inner = value.get("meter_event_id")
        return [inner] if isinstance(inner, str) else []
    if isinstance(value, list | tuple | pl.Series):
        out: list[str] = []
        for item in value:
            out += referenced_event_ids(item)
        return out
    return []


def meter_events(
    conn: duckdb.DuckDBPyConnection, meter_ids: list[str], since: date | None
) -> pl.DataFrame:
    """Every event of ``meter_ids`` whose local start date is on or after ``since``, newest
    first, with the figures the report tables show."""
    if not meter_ids or not table_exists(conn, "event_performance"):
        return pl.DataFrame()
    wanted = {"since": since or date(1970, 1, 1), "meters": meter_ids}
    optional = [
        c
        for c in ("delivered_kw_low", "delivered_kw_high")
        if c in _columns(conn, "event_performance")
    ]
    extra = "".join(f", {c}" for c in optional)
    return conn.sql(
        f"""
        SELECT meter_event_id, meter_id, coalesce(program_identifier, programs[1]) AS program,
            event_name, event_start, event_end, event_hours, meter_timezone, event_local_start,
            committed_kw, is_voluntary, baseline_method, status, delivered_kw,
            performance_factor, data_completeness{extra}
        FROM event_performance
        WHERE meter_id IN (SELECT unnest($meters)) AND event_local_date >= $since
        ORDER BY meter_id, event_start DESC
        """,
        params=wanted,
    ).pl()


def event_load(
    conn: duckdb.DuckDBPyConnection, event_ids: list[str], before_h: float, after_h: float
) -> pl.DataFrame:
    """Quarter-hour load of the given events, in kW (kWh x 4), from ``before_h`` hours before
    the start to ``after_h`` after the end: ``series`` 'actual' (interval_reads),
    'baseline' (adjusted) and 'baseline (unadjusted)' (baselines, event window only).
    ``hours_from_start`` places each quarter hour relative to the event start."""
    if not event_ids or not table_exists(conn, "interval_reads"):
        return pl.DataFrame()
    have_baselines = table_exists(conn, "baselines")
    baseline_sql = (
        """
        UNION ALL
        SELECT e.meter_event_id,
            (epoch(b.interval_start) - epoch(e.event_start)) / 3600.0, b.adjusted_kwh * 4,
            'baseline'
        FROM chosen e JOIN baselines b USING (meter_event_id)
        WHERE b.adjusted_kwh IS NOT NULL
        UNION ALL
        SELECT e.meter_event_id,
            (epoch(b.interval_start) - epoch(e.event_start)) / 3600.0, b.unadjusted_kwh * 4,
            'baseline (unadjusted)'
        FROM chosen e JOIN baselines b USING (meter_event_id)
        WHERE b.unadjusted_kwh IS NOT NULL AND b.method <> 'meter-generator-output'
        """
        if have_baselines
        else ""
    )
    return conn.sql(
        f"""
        WITH chosen AS (
            SELECT meter_event_id, meter_id, event_start, event_end
            FROM event_performance WHERE meter_event_id IN (SELECT unnest($ids))
        )
        SELECT e.meter_event_id,
            (epoch(r.interval_start) - epoch(e.event_start)) / 3600.0 AS hours_from_start,
            r.kwh * 4 AS kw, 'actual' AS series
        FROM chosen e
        JOIN interval_reads r
            ON r.meter_id = e.meter_id
            AND r.interval_start >= e.event_start - to_seconds(CAST($before * 3600 AS BIGINT))
            AND r.interval_start < e.event_end + to_seconds(CAST($after * 3600 AS BIGINT))
        {baseline_sql}
        ORDER BY 1, 4, 2
        """,
        params={"ids": event_ids, "before": before_h, "after": after_h},
    ).pl()


def close_steps(load: pl.DataFrame, step_h: float = 0.25) -> pl.DataFrame:
    """Each series' last quarter hour drawn to its end: a step line of readings at interval
    starts would otherwise stop where the last interval begins (and a one-interval series,
    e.g. the baseline of a 5-minute event, would draw nothing)."""
    if load.is_empty():
        return load
    ends = (
        load.sort("hours_from_start")
        .group_by("meter_event_id", "series", maintain_order=True)
        .last()
        .with_columns(pl.col("hours_from_start") + step_h)
        .select(load.columns)
    )
    return pl.concat([load, ends]).sort("meter_event_id", "series", "hours_from_start")


def baseline_accuracy(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per meter and method: RRMSE, bias and test days, with the company name."""
    if not table_exists(conn, "baseline_accuracy"):
        return pl.DataFrame()
    return conn.sql(
        "SELECT a.meter_id, m.company_name, a.method, a.test_days, a.rrmse, a.bias, "
        "a.unreliable, a.as_of_date FROM baseline_accuracy a "
        "LEFT JOIN (SELECT meter_id, any_value(company_name) AS company_name FROM meters "
        "GROUP BY ALL) m USING (meter_id) WHERE a.rrmse IS NOT NULL ORDER BY a.meter_id, a.method"
    ).pl()


def dispatch_timeline(conn: duckdb.DuckDBPyConnection, recent_events: int) -> pl.DataFrame:
    """Site commands of the ``recent_events`` most recently received dispatch events, with
    seconds from the webhook's receipt to planning and to the end of delivery."""
    if not table_exists(conn, "dispatch_actions"):
        return pl.DataFrame()
    events_join = (
        "LEFT JOIN (SELECT meter_event_id, market_group_event_id, any_value(programs) AS programs, "
        "any_value(dispatch_event_types) AS dispatch_event_types, any_value(start_time) AS "
        "event_start FROM ops_dispatch_events GROUP BY ALL) e "
        "ON e.meter_event_id = a.event_id OR e.market_group_event_id = a.event_id "
        if table_exists(conn, "ops_dispatch_events")
        else "LEFT JOIN (SELECT NULL::VARCHAR[] AS programs, NULL::VARCHAR[] AS "
        "dispatch_event_types, NULL::TIMESTAMPTZ AS event_start) e ON true "
    )
    return conn.sql(
        f"""
        WITH recent AS (
            SELECT event_key, min(received_at) AS first_received
            FROM dispatch_actions GROUP BY ALL
            ORDER BY first_received DESC LIMIT $n
        )
        SELECT a.action_id, a.event_key, a.event_id, a.level, a.meter_id, a.command, a.status, a.reason_code,
            a.dry_run, a.attempts, a.http_status, a.received_at, a.planned_at, a.finished_at,
            epoch(a.planned_at) - epoch(a.received_at) AS planned_s,
            epoch(a.finished_at) - epoch(a.received_at) AS finished_s,
            any_value(e.programs) AS programs,
            any_value(e.dispatch_event_types) AS dispatch_event_types,
            any_value(coalesce(e.event_start, a.start_time)) AS event_start,
            r.first_received
        FROM dispatch_actions a JOIN recent r USING (event_key)
        {events_join}
        GROUP BY ALL
        ORDER BY r.first_received DESC, a.action_id
        """,
        params={"n": recent_events},
    ).pl()
