"""Analyze, part 2: dispatch events, baselines, event performance, underperformer flags,
baseline accuracy and reconciliation with Leap's performance figures.

Every asset is a thin wrapper around SQL in ``sql/`` (run by
``vpp_pipeline.measurement.models``) over whole tables in DuckDB. Parameters per program
come from ``VPP_MEASUREMENT_CONFIG`` (see ``vpp_pipeline.measurement.config``).

Events whose interval data has not arrived are ``pending_data``; ``baselines`` and
``event_performance`` carry an automation condition (requested when any upstream asset
updates, e.g. a new ``interval_reads`` partition, and daily for the pending_data grace
period), evaluated by ``analyze_performance_automation`` in ``SENSORS``. No sensor opens
DuckDB.
"""

import importlib.util
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.checks import enum_check, sql_check, unique_check
from vpp_pipeline import settings
from vpp_pipeline.measurement import config as measurement_config
from vpp_pipeline.measurement import event_history, models
from vpp_pipeline.measurement.dispatch_frames import (
    group_dispatch_frame,
    meter_dispatch_frame,
    stage_ops_dispatch_events,
)
from vpp_pipeline.resources import LeapResource
from vpp_pipeline.warehouse import preview_markdown, row_count, run_models, stage_frame

#: Requested whenever an upstream asset updated since this one was last requested, once
#: nothing upstream (or this asset) is still running.
ON_UPSTREAM_UPDATE = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
)
#: event_performance also re-runs daily: pending_data turns into a score once the grace
#: period after an event has passed, even when no new data arrives.
DAILY_RESCORE_CRON = "0 6 * * *"

UNDERPERFORMER_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=settings.interval_partitions_start(),
    timezone=settings.market_timezone(),
)


def _now() -> datetime:
    return datetime.now(UTC)


@dg.asset(group_name="analyze", kinds={"duckdb"}, deps=["nominations"], pool="duckdb")
def dispatch_events(
    context: dg.AssetExecutionContext, leap: LeapResource, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """Every meter event ever read, one row each (group events split per member meter in
    proportion to their nomination_kw), latest revision winning, with first/last seen (UTC)
    and revision count. Each refresh reads POST /v2/dispatch/{meter,group}/search from
    ``dispatch_lookback_days`` back (the first run: ``dispatch_backfill_days``) to
    ``dispatch_lookahead_days`` ahead, real-time events included, plus the ops-store mirror
    ``ops_dispatch_events`` (which wins where it holds an event), and merges that into the
    stored rows; events outside the window keep theirs. Times UTC; kW for energy,
    nomination and committed."""
    config = measurement_config.load_measurement_config()
    now = _now()
    with duckdb.get_connection() as conn:
        backfill = not event_history.has_history(conn)
    window = event_history.read_window(config, now, backfill)
    with leap.client() as client:
        meter_records = client.search_meter_dispatches(
            window.start, window.end, exclude_real_time_events=False
        )
        group_records = client.search_group_dispatches(
            window.start, window.end, exclude_real_time_events=False
        )
    with duckdb.get_connection() as conn:
        stage_frame(conn, "stg_meter_dispatch_slots", meter_dispatch_frame(meter_records, now))
        stage_frame(conn, "stg_group_dispatch_slots", group_dispatch_frame(group_records, now))
        mirrored = stage_ops_dispatch_events(conn)
        counts = event_history.merge_dispatch_reads(conn, window, now)
        preview = preview_markdown(
            conn,
            "SELECT first_seen_via, source, cancelled, is_test, count(*) AS events, "
            "count(market_group_event_id) AS from_groups FROM dispatch_events "
            "GROUP BY ALL ORDER BY ALL",
            limit=20,
        )
    context.log.info(
        f"{counts['total']} meter events kept, {counts['read']} read "
        f"({'backfill' if backfill else 'refresh'} from {window.start:%Y-%m-%d}), "
        f"{counts['new']} new, {counts['new_versions']} new versions "
        f"({'with' if mirrored else 'without'} ops mirror)"
    )
    return dg.MaterializeResult(
        metadata={
            "rows": counts["total"],
            "events_read": counts["read"],
            "events_new": counts["new"],
            "new_versions": counts["new_versions"],
            "backfill": backfill,
            "ops_mirror_used": mirrored,
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "by_source": dg.MetadataValue.md(preview),
        }
    )


@dg.asset(
    group_name="analyze",
    kinds={"duckdb"},
    deps=["interval_reads", "dispatch_events", "meters"],
    pool="duckdb",
    automation_condition=ON_UPSTREAM_UPDATE,
)
def baselines(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Per meter event and quarter hour of its window (UTC): baseline method, eligible
    market-local days, unadjusted and adjusted baseline kWh and the adjustment
    (docs/methodology.md). Whole table rebuilt in SQL (sql/baselines.sql and its helper models)."""
    config = measurement_config.load_measurement_config()
    with duckdb.get_connection() as conn:
        models.build_baselines(conn, config)
        rows = row_count(conn, "baselines")
        by_method = preview_markdown(
            conn,
            "SELECT method, baseline_status, count(DISTINCT meter_event_id) AS events, "
            "count(*) AS intervals FROM baselines GROUP BY ALL ORDER BY ALL",
            limit=20,
        )
    context.log.info(f"{rows} baseline intervals")
    return dg.MaterializeResult(
        metadata={"rows": rows, "by_method": dg.MetadataValue.md(by_method)}
    )


@dg.asset(
    group_name="analyze",
    kinds={"duckdb"},
    deps=["baselines", "dispatch_events"],
    pool="duckdb",
    automation_condition=ON_UPSTREAM_UPDATE
    | dg.AutomationCondition.on_cron(DAILY_RESCORE_CRON, "America/Los_Angeles"),
)
def event_performance(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """Per meter event: baseline, actual and delivered kWh, delivered kW, performance factor
    (delivered kW / committed kW), data completeness and status (scored, insufficient_data,
    pending_data, cancelled, test), with the compensation caps of docs/methodology.md."""
    config = measurement_config.load_measurement_config()
    with duckdb.get_connection() as conn:
        models.build_event_performance(conn, config, _now())
        counts = dict(
            conn.execute("SELECT status, count(*) FROM event_performance GROUP BY ALL").fetchall()
        )
        mean_pf = conn.execute(
            "SELECT avg(performance_factor) FROM event_performance WHERE status = 'scored'"
        ).fetchall()[0][0]
    context.log.info(f"event statuses: {counts}")
    return dg.MaterializeResult(
        metadata={
            "rows": sum(counts.values()),
            **{f"status_{status}": int(n) for status, n in sorted(counts.items())},
            "mean_performance_factor": None if mean_pf is None else float(mean_pf),
        }
    )


@dg.asset(
    group_name="analyze",
    kinds={"duckdb"},
    deps=["event_performance"],
    pool="duckdb",
    partitions_def=UNDERPERFORMER_PARTITIONS,
)
def underperformers(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """Meters flagged as of the partition's market-local day, one row each with reason codes
    (LOW_PERFORMANCE, NO_RESPONSE, MISSING_DATA) and the figures behind them, over their
    scored events of the trailing 90 days. Re-running a day replaces that day's rows."""
    config = measurement_config.load_measurement_config()
    as_of = date.fromisoformat(context.partition_key)
    with duckdb.get_connection() as conn:
        models.build_underperformers(conn, config, as_of)
        rows = conn.execute(
            "SELECT count(*) FROM underperformers WHERE as_of_date = $d", {"d": as_of}
        ).fetchall()[0][0]
        preview = preview_markdown(
            conn,
            f"SELECT meter_id, reason_codes, round(mean_performance_factor, 3) AS mean_pf, "
            f"round(min_data_completeness, 3) AS min_completeness FROM underperformers "
            f"WHERE as_of_date = DATE '{as_of.isoformat()}' ORDER BY meter_id",
            limit=20,
        )
    return dg.MaterializeResult(
        metadata={"flagged_meters": int(rows), "preview": dg.MetadataValue.md(preview)}
    )


@dg.asset(
    group_name="analyze",
    kinds={"duckdb"},
    deps=["interval_reads", "dispatch_events", "meters"],
    pool="duckdb",
)
def baseline_accuracy(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """Per meter and weekday method (10-in-10, high-4-of-5): relative RMSE and bias of the
    adjusted baseline against actual use on non-event weekdays of the trailing 90 days
    (before today, market-local); ``unreliable`` above 20 % RRMSE."""
    config = measurement_config.load_measurement_config()
    today = _now().astimezone(ZoneInfo(config.interval_local_timezone)).date()
    with duckdb.get_connection() as conn:
        models.build_baseline_accuracy(conn, config, today)
        rows = row_count(conn, "baseline_accuracy")
        unreliable = conn.execute(
            "SELECT count(*) FROM baseline_accuracy WHERE unreliable"
        ).fetchall()[0][0]
    return dg.MaterializeResult(
        metadata={"rows": rows, "unreliable": int(unreliable), "as_of_date": today.isoformat()}
    )


def _analytics_module():
    """``vpp_pipeline.leap.analytics`` when it exists (built concurrently), else None."""
    if importlib.util.find_spec("vpp_pipeline.leap.analytics") is None:
        return None
    return importlib.import_module("vpp_pipeline.leap.analytics")


@dg.asset(
    group_name="analyze",
    kinds={"duckdb"},
    deps=["event_performance"],
    pool="duckdb",
)
def performance_reconciliation(
    context: dg.AssetExecutionContext, leap: LeapResource, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """Scored events whose delivered kWh differs from Leap's meter-level performance
    (POST /v1.1/analytics/performance/meter/search) by more than 5 %, with reason code
    DELIVERED_DIFFERS, and events Leap scores that we do not (NOT_SCORED_HERE)."""
    analytics = _analytics_module()
    if analytics is None:
        context.log.warning(
            "skipped: vpp_pipeline.leap.analytics.fetch_meter_performance is not available yet"
        )
        return dg.MaterializeResult(metadata={"skipped": "leap analytics client not available"})
    with duckdb.get_connection() as conn:
        meter_ids, start, end = conn.execute(
            "SELECT list(DISTINCT meter_id ORDER BY meter_id), min(event_start), max(event_end) "
            "FROM event_performance WHERE status = 'scored'"
        ).fetchall()[0]
    if not meter_ids:
        return dg.MaterializeResult(metadata={"skipped": "no scored events"})
    with leap.client() as client:
        frame = analytics.fetch_meter_performance(client, meter_ids, start, end)
    with duckdb.get_connection() as conn:
        stage_frame(conn, "stg_leap_meter_performance", frame)
        run_models(conn, "performance_reconciliation", tolerance_pct=5.0)
        rows = row_count(conn, "performance_reconciliation")
    return dg.MaterializeResult(metadata={"rows": rows, "leap_rows": frame.height})


dispatch_events_unique = unique_check("dispatch_events", "dispatch_events", ["meter_event_id"])
dispatch_events_enums = enum_check(
    "dispatch_events",
    "dispatch_events",
    {
        "performance_compensation_cap": (
            "grid-exports-allowed",
            "up-to-nomination",
            "up-to-site-load",
        )
    },
)
dispatch_events_history = sql_check(
    asset="dispatch_events",
    table="dispatch_events",
    name="dispatch_events_history_consistent",
    description="Every row has been seen at least once: revision_count >= 1, "
    "first_seen_at <= last_seen_at, and first_seen_via is one of "
    f"{', '.join(event_history.SEEN_VIA)}.",
    violations_sql=f"""
        SELECT meter_event_id, first_seen_at, last_seen_at, revision_count, first_seen_via
        FROM dispatch_events
        WHERE revision_count IS NULL OR revision_count < 1 OR first_seen_at IS NULL
            OR last_seen_at IS NULL OR first_seen_at > last_seen_at
            OR first_seen_via IS NULL
            OR first_seen_via NOT IN ({", ".join(f"'{v}'" for v in event_history.SEEN_VIA)})
    """,
)
baselines_unique = unique_check("baselines", "baselines", ["meter_event_id", "interval_start"])
baselines_one_row_per_interval = sql_check(
    asset="baselines",
    table="baselines",
    name="baselines_one_row_per_event_interval",
    description="Each non-cancelled, non-test event has exactly one baseline row per quarter "
    "hour of its window.",
    violations_sql="""
        SELECT e.meter_event_id, e.start_time, e.end_time, count(b.interval_start) AS rows,
            CAST(ceil(epoch(e.end_time) / 900) - floor(epoch(e.start_time) / 900) AS BIGINT)
                AS expected
        FROM dispatch_events e LEFT JOIN baselines b USING (meter_event_id)
        WHERE NOT e.cancelled AND NOT e.is_test AND e.end_time > e.start_time
        GROUP BY ALL HAVING count(b.interval_start) <> expected
    """,
)
performance_unique = unique_check("event_performance", "event_performance", ["meter_event_id"])
performance_enums = enum_check(
    "event_performance",
    "event_performance",
    {"status": measurement_config.EVENT_STATUSES},
)
performance_values = sql_check(
    asset="event_performance",
    table="event_performance",
    name="event_performance_values_in_range",
    description="performance_factor and delivered kWh are finite; data_completeness is in "
    "[0, 1]; scored events have a performance figure.",
    violations_sql="""
        SELECT meter_event_id, status, performance_factor, delivered_kwh, data_completeness
        FROM event_performance
        WHERE (performance_factor IS NOT NULL AND NOT isfinite(performance_factor))
            OR (delivered_kwh IS NOT NULL AND NOT isfinite(delivered_kwh))
            OR data_completeness < 0 OR data_completeness > 1
            OR (status = 'scored' AND delivered_kwh IS NULL)
    """,
)

performance_job = dg.define_asset_job(
    "performance_job",
    selection=dg.AssetSelection.assets(
        dispatch_events, baselines, event_performance, baseline_accuracy
    ),
    description="Refresh dispatch events from Leap, then baselines, performance and accuracy.",
)
performance_schedule = dg.ScheduleDefinition(
    name="performance_daily",
    job=performance_job,
    cron_schedule="30 4 * * *",
    execution_timezone="America/Los_Angeles",
)
underperformers_job = dg.define_asset_job(
    "underperformers_job",
    selection=dg.AssetSelection.assets(underperformers),
    partitions_def=UNDERPERFORMER_PARTITIONS,
)
underperformers_daily = dg.build_schedule_from_partitioned_job(
    underperformers_job, name="underperformers_daily", hour_of_day=7
)
analyze_performance_automation = dg.AutomationConditionSensorDefinition(
    "analyze_performance_automation",
    target=dg.AssetSelection.assets(baselines, event_performance),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Scores pending events when their interval data arrives (no manual step).",
)

JOBS = [performance_job, underperformers_job]
SCHEDULES = [performance_schedule, underperformers_daily]
SENSORS = [analyze_performance_automation]
