"""Analyze, part 1: 15-minute interval reads in market-local daily partitions.

Two sources, one table:
* CSV drops in Leap's upload format land in ``VPP_INTERVAL_LANDING_DIR``; once a drop is
  complete, the ``interval_landing_sensor`` requests ONE run for its files and every
  partition they touch (conventions: docs/landing.md).
* Leap's meter-level intervals API, for the meters and days a run asks for (the daily
  schedule asks for yesterday, market time).

``interval_files`` validates and loads the complete files (each checked on its own: Leap's
error codes, rejects kept, files archived to accepted/ or failed/ with errors.csv, links and
other non-files refused and left in place); ``interval_reads`` rebuilds its days from every
delivery with the correction rule (sql/interval_reads.sql).
"""

import hashlib
import time
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource

from vpp_pipeline import settings
from vpp_pipeline.intervals.drops import DropCursor, plan_drop, touched_local_dates
from vpp_pipeline.intervals.ingest import (
    ingest_api_frame,
    ingest_landing_files,
    local_day_bounds_utc,
    rebuild_interval_reads,
)
from vpp_pipeline.intervals.landing import scan_landing
from vpp_pipeline.resources import IntervalSourceResource, LeapResource
from vpp_pipeline.warehouse import preview_markdown, table_exists

INTERVAL_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=settings.interval_partitions_start(),
    timezone=settings.market_timezone(),
)


class IntervalFilesConfig(dg.Config):
    """Which landing files an ``interval_files`` run loads."""

    files: list[str] = []  # noqa: RUF012 (pydantic copies defaults)
    """Files as ``name:size:mtime_ns``, as the landing sensor saw them complete (one changed
    since is left for a later run). Empty: every complete file in the folder (a ``.done``
    marker, or unchanged for ``quiet_seconds``)."""


@dg.asset(group_name="analyze", kinds={"duckdb"}, deps=["meters"], pool="duckdb")
def interval_files(
    context: dg.AssetExecutionContext,
    config: IntervalFilesConfig,
    duckdb: DuckDBResource,
    interval_source: IntervalSourceResource,
) -> dg.MaterializeResult:
    """Interval CSVs from the landing folder, each read once and checked on its own, validated
    like Leap validates and loaded into ``interval_deliveries`` (good rows) and
    ``interval_rejects`` (one row per problem, with Leap's codes); each file is then archived
    to ``accepted/`` or ``failed/`` beside an ``errors.csv``. A file that is not UTF-8 text
    (``ENC_0001``, with the byte offset), binary or not Leap CSV is rejected whole; links and
    other non-files are refused (``FIL_0005``/``FIL_0006``) and left in place. Ledger:
    ``interval_files``."""
    with duckdb.get_connection() as conn:
        report = ingest_landing_files(
            conn,
            interval_source.landing_path,
            market_tz=interval_source.market_timezone,
            files=config.files or None,
            quiet_seconds=interval_source.quiet_seconds,
            require_done_marker=interval_source.require_done_marker,
        )
    table = "\n".join(
        [
            "| file | status | rows loaded | rows rejected | days | problem |",
            "|---|---|---|---|---|---|",
        ]
        + [
            f"| {f.file_name} | {f.status} | {f.rows_accepted} | {f.rows_rejected} | "
            f"{', '.join(d.isoformat() for d in f.local_dates[:5])}{' ...' if len(f.local_dates) > 5 else ''} | "
            f"{(f.problem or '')[:120]} |"
            for f in report.files
        ]
    )
    context.log.info(
        f"{len(report.files)} file(s): {report.rows_accepted} rows loaded, "
        f"{report.rows_rejected} rejected; {len(report.waiting)} still incomplete"
    )
    return dg.MaterializeResult(
        metadata={
            "files": len(report.files),
            "files_failed": sum(f.status == "failed" for f in report.files),
            "files_refused": sum(f.status == "refused" for f in report.files),
            "files_not_ready": sum(f.status == "not_ready" for f in report.files)
            + len(report.waiting),
            "rows_loaded": report.rows_accepted,
            "rows_rejected": report.rows_rejected,
            "local_dates": [d.isoformat() for d in report.local_dates],
            "details": dg.MetadataValue.md(
                table if report.files else "(no complete files waiting)"
            ),
        }
    )


class IntervalReadsConfig(dg.Config):
    """What an ``interval_reads`` run loads besides the landed files."""

    fetch_api: bool = True
    """Fetch the partition's days from Leap's meter-level intervals API."""
    meter_ids: list[str] = []  # noqa: RUF012 (pydantic copies defaults)
    """Meters to fetch from the API; empty = every meter in ``meters``."""
    api_page_size: int = 100_000
    """Intervals per API page (Leap-style paging; the sandbox allows up to 100,000)."""


@dg.asset(
    partitions_def=INTERVAL_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="analyze",
    kinds={"duckdb"},
    deps=["interval_files", "meters"],
    pool="duckdb",
)
def interval_reads(
    context: dg.AssetExecutionContext,
    config: IntervalReadsConfig,
    leap: LeapResource,
    duckdb: DuckDBResource,
    interval_source: IntervalSourceResource,
) -> dg.MaterializeResult:
    """15-minute reads per meter (UTC; kwh = net consumption, export negative; final flag;
    source csv/api), one daily partition per market-local day (92, 96 or 100 intervals per
    meter). Rebuilt from every delivery: final beats non-final, then the newest delivery.
    A backfill of many days runs as one run."""
    window = context.partition_time_window
    start_date: date = window.start.date()
    end_date: date = (window.end - timedelta(days=1)).date()
    tz = interval_source.market_timezone
    api_note = "not asked"
    with duckdb.get_connection() as conn:
        if config.fetch_api:
            api_note = _fetch_from_api(context, conn, leap, config, start_date, end_date, tz)
        rows = rebuild_interval_reads(conn, start_date, end_date)
        stats = conn.execute(
            """
            SELECT count(DISTINCT meter_id), count(DISTINCT local_date),
                   count(*) FILTER (WHERE final), count(*) FILTER (WHERE source = 'csv')
            FROM interval_reads WHERE local_date BETWEEN $s AND $e
            """,
            {"s": start_date, "e": end_date},
        ).fetchall()[0]
        preview = preview_markdown(
            conn,
            f"SELECT local_date, count(DISTINCT meter_id) AS meters, count(*) AS intervals, "
            f"round(sum(kwh), 1) AS kwh FROM interval_reads WHERE local_date BETWEEN "
            f"DATE '{start_date}' AND DATE '{end_date}' GROUP BY ALL ORDER BY local_date",
            limit=10,
        )
    return dg.MaterializeResult(
        metadata={
            "rows": rows,
            "meters": stats[0],
            "local_days": stats[1],
            "final_rows": stats[2],
            "csv_rows": stats[3],
            "api": api_note,
            "by_day": dg.MetadataValue.md(preview),
        }
    )


def _fetch_from_api(context, conn, leap, config, start_date, end_date, tz) -> str:
    from vpp_pipeline.leap.analytics import fetch_meter_intervals

    meter_ids = config.meter_ids or [
        r[0] for r in conn.execute("SELECT meter_id FROM meters ORDER BY meter_id").fetchall()
    ]
    start_utc, end_utc = local_day_bounds_utc(start_date, end_date, tz)
    # Only completed intervals exist; asking past "now" would just return nothing.
    now = datetime.now(UTC)
    end_utc = min(
        end_utc, now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    )
    if not meter_ids or end_utc <= start_utc:
        return "nothing to fetch"
    with leap.client() as client:
        frame = fetch_meter_intervals(
            client, meter_ids, start_utc, end_utc, page_size=config.api_page_size
        )
    report = ingest_api_frame(conn, frame, market_tz=tz)
    note = (
        f"{report.api_rows_fetched} rows fetched for {len(meter_ids)} meters, "
        f"{report.api_rows_new} new or changed, {report.api_rows_rejected} rejected"
    )
    context.log.info(note)
    return note


interval_reads_job = dg.define_asset_job(
    "interval_reads_job",
    selection=dg.AssetSelection.assets(interval_files, interval_reads),
    partitions_def=INTERVAL_PARTITIONS,
    description="Load waiting CSV drops, then rebuild the requested days of interval_reads.",
)

interval_files_job = dg.define_asset_job(
    "interval_files_job",
    selection=dg.AssetSelection.assets(interval_files),
    description="Validate, load and archive waiting interval CSV drops (no partition).",
)

interval_reads_daily = dg.build_schedule_from_partitioned_job(
    interval_reads_job,
    name="interval_reads_daily",
    # Yesterday's partition (market time), once the meter data of the day has arrived.
    hour_of_day=6,
    minute_of_hour=0,
)

CSV_ONLY_RUN_CONFIG = {"ops": {"interval_reads": {"config": {"fetch_api": False}}}}


def landing_run_request(keys: list[str], days: list[str]) -> dg.RunRequest:
    """ONE run for one drop: its files, and every partition they touch as one range (the
    days between are rebuilt too: idempotent, and one run instead of one per day)."""
    files_config = {"interval_files": {"config": {"files": sorted(keys)}}}
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:24]
    names = sorted({key.rsplit(":", 2)[0] for key in keys})
    tags = {"vpp/landing_files": ", ".join(names)[:200], "vpp/landing_file_count": str(len(names))}
    if not days:
        # Not CSV, or no usable day: still needs validating, rejecting and archiving.
        return dg.RunRequest(
            run_key=f"landing-files-{digest}",
            job_name=interval_files_job.name,
            run_config={"ops": files_config},
            tags=tags,
        )
    run_config = {"ops": {**CSV_ONLY_RUN_CONFIG["ops"], **files_config}}
    if days[0] == days[-1]:
        return dg.RunRequest(
            run_key=f"landing-{digest}",
            job_name=interval_reads_job.name,
            partition_key=days[0],
            run_config=run_config,
            tags=tags,
        )
    return dg.RunRequest(
        run_key=f"landing-{digest}",
        job_name=interval_reads_job.name,
        run_config=run_config,
        tags={
            **tags,
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[-1],
        },
    )


@dg.sensor(
    jobs=[interval_reads_job, interval_files_job],
    minimum_interval_seconds=30,
    description="One run per complete drop in the landing folder: its files and every "
    "interval_reads partition they touch.",
    # On by default: it only lists a folder, and a dropped file should not wait for a person.
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def interval_landing_sensor(
    context: dg.SensorEvaluationContext, interval_source: IntervalSourceResource
):
    """Looks at the landing folder only (never DuckDB). A file is complete when its ``.done``
    marker is there or it is unchanged since the previous tick; complete files wait up to
    ``max_hold_seconds`` for the rest of a burst, then all go into one run (one partition
    range). The cursor holds the files seen and those requested that are still waiting."""
    landing = interval_source.landing_path
    entries = scan_landing(landing)
    plan = plan_drop(
        entries,
        DropCursor.from_json(context.cursor),
        now_s=time.time(),
        require_done_marker=interval_source.require_done_marker,
        max_hold_seconds=interval_source.max_hold_seconds,
    )
    waiting = ", ".join(f"{e.name} ({why})" for e, why in plan.waiting[:10])
    if not plan.request:
        context.update_cursor(plan.cursor.to_json())
        if plan.held:
            return dg.SkipReason(
                f"{len(plan.complete)} complete file(s) held for the rest of the drop, "
                f"{len(plan.waiting)} still incomplete: {waiting}"
            )
        if plan.waiting:
            return dg.SkipReason(f"{len(plan.waiting)} file(s) not complete yet: {waiting}")
        return dg.SkipReason(
            f"no new files in {landing} ({len(entries)} waiting, already requested)"
        )
    valid_keys = set(INTERVAL_PARTITIONS.get_partition_keys())
    days: set[str] = set()
    for entry in plan.complete:
        touched = touched_local_dates(landing, entry, interval_source.market_timezone)
        days.update(d.isoformat() for d in touched if d.isoformat() in valid_keys)
    if plan.waiting:
        context.log.info(f"not complete yet, left for a later run: {waiting}")
    context.update_cursor(plan.cursor.to_json())
    return [landing_run_request(plan.keys, sorted(days))]


# --- checks (scoped to the partitions of the run) -----------------------------------------


#: A check run on its own (no partitions in the run) looks at this many recent local days.
CHECK_DAYS_WITHOUT_PARTITIONS = 7


def _partition_dates(context, conn) -> tuple[date, date]:
    """The local days the run materialized (one partition or a range), or, for a check run on
    its own, the last CHECK_DAYS_WITHOUT_PARTITIONS days that have reads."""
    if context.has_partition_key or context.has_partition_key_range:
        window = context.partition_time_window
        return window.start.date(), (window.end - timedelta(days=1)).date()
    last = conn.execute("SELECT max(local_date) FROM interval_reads").fetchall()[0][0]
    last = last or date.today()
    return last - timedelta(days=CHECK_DAYS_WITHOUT_PARTITIONS - 1), last


def _check(conn, sql: str, params: dict) -> tuple[int, str, list[str]]:
    """Findings of a check query: count, a markdown preview and the meters concerned."""
    count = conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchall()[0][0]
    if not count:
        return 0, "", []
    meters = [
        r[0]
        for r in conn.execute(
            f"SELECT DISTINCT meter_id FROM ({sql}) ORDER BY meter_id", params
        ).fetchall()
    ]
    literal = sql.replace("$s", f"DATE '{params['s']}'").replace("$e", f"DATE '{params['e']}'")
    return count, preview_markdown(conn, literal), meters


def _interval_check(name: str, description: str, sql: str, severity: dg.AssetCheckSeverity):
    # Not partitioned, on purpose: a backfill runs many days as one run (a partition range), and
    # Dagster records a partitioned check's result per partition only for single-partition runs,
    # so the UI listed such checks as "Skipped" while their detail showed the range's result.
    # Unpartitioned, the check is evaluated once per run over the run's days, and list and
    # detail agree.
    @dg.asset_check(asset=interval_reads, name=name, description=description)
    def _run(
        context: dg.AssetCheckExecutionContext,
        duckdb: DuckDBResource,
        interval_source: IntervalSourceResource,
    ) -> dg.AssetCheckResult:
        with duckdb.get_connection() as conn:
            conn.execute("SET VARIABLE market_tz = $tz", {"tz": interval_source.market_timezone})
            if not table_exists(conn, "interval_reads"):
                return dg.AssetCheckResult(
                    passed=False, metadata={"problem": "no interval_reads table"}
                )
            start, end = _partition_dates(context, conn)
            count, examples, meters = _check(conn, sql, {"s": start, "e": end})
        metadata = {"violations": count, "days": f"{start} .. {end}"}
        if examples:
            metadata["examples"] = dg.MetadataValue.md(examples)
            # which meters: a known data gap (e.g. a site offline) is told apart from a new one
            metadata["meters_with_findings"] = len(meters)
            metadata["meter_ids"] = meters[:100]
        return dg.AssetCheckResult(passed=count == 0, severity=severity, metadata=metadata)

    return _run


interval_reads_no_duplicates = _interval_check(
    "interval_reads_no_duplicates",
    "At most one row per (meter_id, interval_start).",
    "SELECT meter_id, interval_start, count(*) AS copies FROM interval_reads "
    "WHERE local_date BETWEEN $s AND $e GROUP BY ALL HAVING count(*) > 1",
    dg.AssetCheckSeverity.ERROR,
)

#: Incomplete (meter, local day) pairs of local days $s..$e (variable market_tz).
COMPLETE_DAYS_SQL = (
    "WITH days AS (SELECT DISTINCT local_date, "
    "  (epoch(timezone(getvariable('market_tz'), (local_date + 1)::TIMESTAMP)) "
    "   - epoch(timezone(getvariable('market_tz'), local_date::TIMESTAMP))) / 900 AS expected "
    "  FROM interval_reads WHERE local_date BETWEEN $s AND $e) "
    "SELECT r.meter_id, r.local_date, count(*) AS intervals, any_value(d.expected) AS expected "
    "FROM interval_reads r JOIN days d USING (local_date) "
    "WHERE r.local_date BETWEEN $s AND $e GROUP BY ALL HAVING count(*) <> any_value(d.expected)"
)

interval_reads_complete_days = _interval_check(
    "interval_reads_complete_days",
    "Each meter has every interval of each local day: 96, or 92 / 100 on DST days "
    "(meters with no data that day are not counted here).",
    sql=COMPLETE_DAYS_SQL,
    severity=dg.AssetCheckSeverity.WARN,
)

interval_reads_no_gaps = _interval_check(
    "interval_reads_no_gaps",
    "No meter skips an interval between its first and last read of the days checked.",
    "SELECT meter_id, interval_start AS gap_after, next_start, "
    "  (epoch(next_start) - epoch(interval_start)) / 900 - 1 AS missing_intervals FROM ("
    "  SELECT meter_id, interval_start, lead(interval_start) OVER (PARTITION BY meter_id ORDER BY interval_start) AS next_start "
    "  FROM interval_reads WHERE local_date BETWEEN $s AND $e) "
    "WHERE next_start - interval_start > INTERVAL 15 MINUTE",
    dg.AssetCheckSeverity.WARN,
)

interval_reads_no_negative_consumption = _interval_check(
    "interval_reads_no_negative_consumption",
    "consumed_kwh and generated_kwh are never negative (net kwh may be: export).",
    "SELECT meter_id, interval_start, consumed_kwh, generated_kwh FROM interval_reads "
    "WHERE local_date BETWEEN $s AND $e AND (consumed_kwh < 0 OR generated_kwh < 0)",
    dg.AssetCheckSeverity.ERROR,
)

JOBS = [interval_reads_job, interval_files_job]
SCHEDULES = [interval_reads_daily]
SENSORS = [interval_landing_sensor]
