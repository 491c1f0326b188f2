"""Load interval data into DuckDB: landing CSV files and API fetches, validated like Leap.

Both sources go through the same SQL: candidates -> checked (Leap's codes) ->
``interval_deliveries`` (accepted rows, as delivered) + ``interval_rejects`` (one row per
problem). ``interval_reads`` is then rebuilt per market-local day from the deliveries
(:func:`rebuild_interval_reads`), applying the correction rule.

Python here loops over files and batches, never over rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from vpp_pipeline.intervals.codes import CSV_COLUMNS, US_STATES
from vpp_pipeline.intervals.landing import (
    CsvHeader,
    FileProblem,
    archive_path,
    delivered_at,
    move_file,
    pending_files,
    read_header,
    sha256_of,
)
from vpp_pipeline.warehouse import execute_models, sql_text, stage_frame, table_exists, transaction

log = logging.getLogger(__name__)

#: Files read by one SQL pass. Bounded so a year of daily files never sits in memory at once.
FILES_PER_BATCH = 16

FILE_OUTCOME_SCHEMA = {
    "file_name": pl.String,
    "sha256": pl.String,
    "delivered_at": pl.Datetime("us", "UTC"),
    "loaded_at": pl.Datetime("us", "UTC"),
    "status": pl.String,
    "rows_accepted": pl.Int64,
    "rows_rejected": pl.Int64,
    "problem": pl.String,
    "local_dates": pl.List(pl.Date),
    "archived_path": pl.String,
}


@dataclass
class FileOutcome:
    """What became of one landing file."""

    file_name: str
    status: str  # accepted | failed | already_loaded
    rows_accepted: int = 0
    rows_rejected: int = 0
    local_dates: list[date] = field(default_factory=list)
    archived_path: Path | None = None
    problem: str | None = None


@dataclass
class IngestReport:
    files: list[FileOutcome] = field(default_factory=list)
    api_rows_fetched: int = 0
    api_rows_new: int = 0
    api_rows_rejected: int = 0

    @property
    def rows_accepted(self) -> int:
        return sum(f.rows_accepted for f in self.files) + self.api_rows_new

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files) + self.api_rows_rejected

    @property
    def local_dates(self) -> list[date]:
        return sorted({d for f in self.files for d in f.local_dates})


def _require_meters(conn: duckdb.DuckDBPyConnection) -> None:
    if not table_exists(conn, "meters"):
        raise RuntimeError(
            "table meters does not exist: materialize the connect group (meters) first, "
            "so interval rows can be checked against the portfolio (MTR_0003)"
        )


def _ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    # CREATE TABLE IF NOT EXISTS statements of the models, without their inserts.
    for model in ("interval_deliveries", "interval_rejects", "interval_files"):
        ddl = sql_text(model).split("CREATE TABLE IF NOT EXISTS", 1)[1].split(";", 1)[0]
        conn.execute("CREATE TABLE IF NOT EXISTS" + ddl)


def _common_variables(now: datetime, loaded_at: datetime, market_tz: str) -> dict:
    return {"now": now, "loaded_at": loaded_at, "market_tz": market_tz, "us_states": US_STATES}


def ingest_landing_files(
    conn: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    *,
    market_tz: str,
    now: datetime | None = None,
    files_per_batch: int = FILES_PER_BATCH,
) -> IngestReport:
    """Validate and load every file waiting in ``landing_dir``, then archive each one.

    Each batch of files is one DuckDB transaction; files move to ``accepted/`` or
    ``failed/`` only after it commits, so a crash never loses a file. A file already in
    ``interval_files`` with the same hash is archived without being loaded again.
    """
    _require_meters(conn)
    _ensure_tables(conn)
    now = now or datetime.now(UTC)
    report = IngestReport()
    files = pending_files(landing_dir)
    if not files:
        return report

    readable: dict[CsvHeader, list[tuple[Path, str]]] = defaultdict(list)
    for path in files:
        digest = sha256_of(path)
        previous = conn.execute(
            "SELECT status FROM interval_files WHERE file_name = $n AND sha256 = $h",
            {"n": path.name, "h": digest},
        ).fetchall()
        if previous:
            target = archive_path(landing_dir, path, previous[0][0], now)
            move_file(path, target)
            report.files.append(FileOutcome(path.name, "already_loaded", archived_path=target))
            continue
        header = read_header(path)
        if isinstance(header, FileProblem):
            report.files.append(_reject_whole_file(conn, landing_dir, path, digest, header, now))
            continue
        readable[header].append((path, digest))

    for header, group in readable.items():
        for start in range(0, len(group), files_per_batch):
            batch = group[start : start + files_per_batch]
            report.files.extend(_ingest_batch(conn, landing_dir, header, batch, now, market_tz))
    return report


def _ingest_batch(
    conn: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    header: CsvHeader,
    batch: list[tuple[Path, str]],
    now: datetime,
    market_tz: str,
) -> list[FileOutcome]:
    loaded_at = datetime.now(UTC)
    names = [p.name for p, _ in batch]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two landing files share a name in one batch: {names}")
    stage_frame(
        conn,
        "stg_interval_files",
        pl.DataFrame(
            {"file_name": names, "delivered_at": [delivered_at(p) for p, _ in batch]},
            schema={"file_name": pl.String, "delivered_at": pl.Datetime("us", "UTC")},
        ),
    )
    for column in CSV_COLUMNS:
        conn.execute(
            f"SET VARIABLE pos_{column} = CAST($v AS INTEGER)", {"v": header.position(column)}
        )
    outcomes: list[FileOutcome] = []
    with transaction(conn):
        execute_models(
            conn,
            "stg_interval_candidates",
            "stg_interval_checked",
            "interval_deliveries",
            "interval_rejects",
            csv_files=[str(p) for p, _ in batch],
            n_header_fields=header.n_fields,
            **_common_variables(now, loaded_at, market_tz),
        )
        counts = {
            name: (accepted, rejected_rows, dates or [])
            for name, accepted, rejected_rows, dates in conn.execute(
                """
                SELECT source_file,
                       count(*) FILTER (WHERE len(errors) = 0),
                       count(*) FILTER (WHERE len(errors) > 0),
                       list(DISTINCT CAST(timezone(getvariable('market_tz'), interval_start) AS DATE)
                            ORDER BY CAST(timezone(getvariable('market_tz'), interval_start) AS DATE))
                         FILTER (WHERE len(errors) = 0)
                FROM stg_interval_checked GROUP BY source_file
                """
            ).fetchall()
        }
        rows = []
        for path, digest in batch:
            accepted, rejected_rows, dates = counts.get(path.name, (0, 0, []))
            problem = None if accepted or rejected_rows else "no data rows"
            status = "accepted" if rejected_rows == 0 and problem is None else "failed"
            target = archive_path(landing_dir, path, status, loaded_at)
            outcomes.append(
                FileOutcome(
                    path.name, status, accepted, rejected_rows, list(dates), target, problem
                )
            )
            rows.append(
                {
                    "file_name": path.name,
                    "sha256": digest,
                    "delivered_at": delivered_at(path),
                    "loaded_at": loaded_at,
                    "status": status,
                    "rows_accepted": accepted,
                    "rows_rejected": rejected_rows,
                    "problem": problem,
                    "local_dates": list(dates),
                    "archived_path": str(target),
                }
            )
        stage_frame(
            conn, "stg_interval_file_outcomes", pl.DataFrame(rows, schema=FILE_OUTCOME_SCHEMA)
        )
        conn.execute(sql_text("interval_files"))
    # After the commit: archive, then write the error files beside the archived copies.
    for (path, _), outcome in zip(batch, outcomes, strict=True):
        move_file(path, outcome.archived_path)
        if outcome.status == "failed":
            _write_errors_csv(conn, outcome.archived_path, path.name, loaded_at)
        log.info(
            "%s: %s (%d rows loaded, %d rejected)",
            path.name,
            outcome.status,
            outcome.rows_accepted,
            outcome.rows_rejected,
        )
    return outcomes


def _reject_whole_file(
    conn: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    path: Path,
    digest: str,
    problem: FileProblem,
    now: datetime,
) -> FileOutcome:
    loaded_at = datetime.now(UTC)
    target = archive_path(landing_dir, path, "failed", loaded_at)
    with transaction(conn):
        conn.execute(
            """
            INSERT INTO interval_rejects
            VALUES ('csv', $file, NULL, '', $code, $message, NULL, NULL, $at)
            """,
            {"file": path.name, "code": problem.code, "message": problem.message, "at": loaded_at},
        )
        conn.execute(
            """
            INSERT INTO interval_files
            VALUES ($file, $sha, $delivered, $at, 'failed', 0, 0, $problem, [], $archived)
            """,
            {
                "file": path.name,
                "sha": digest,
                "delivered": delivered_at(path),
                "at": loaded_at,
                "problem": f"{problem.code}: {problem.message}",
                "archived": str(target),
            },
        )
    move_file(path, target)
    _write_errors_csv(conn, target, path.name, loaded_at)
    log.warning("%s rejected as a whole: %s %s", path.name, problem.code, problem.message)
    return FileOutcome(path.name, "failed", archived_path=target, problem=problem.message)


def _write_errors_csv(
    conn: duckdb.DuckDBPyConnection, archived: Path, file_name: str, loaded_at: datetime
) -> None:
    """``errors.csv`` beside the archived file, like Leap's error file: line,column,code,message."""
    frame = conn.sql(
        """
        SELECT source_line AS line, column_name AS "column", code, message
        FROM interval_rejects
        WHERE source_file = $file AND rejected_at = $at
        ORDER BY source_line NULLS FIRST, code
        """,
        params={"file": file_name, "at": loaded_at},
    ).pl()
    frame.write_csv(archived.parent / "errors.csv")


# --- the API path -----------------------------------------------------------------------------

API_FRAME_SCHEMA = {
    "meter_id": pl.String,
    "interval_start": pl.Datetime("us", "UTC"),
    "interval_end": pl.Datetime("us", "UTC"),
    "kwh": pl.Float64,
    "consumed_kwh": pl.Float64,
    "generated_kwh": pl.Float64,
    "final": pl.Boolean,
}


def ingest_api_frame(
    conn: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    *,
    market_tz: str,
    now: datetime | None = None,
) -> IngestReport:
    """Validate and load interval rows fetched from the API (columns of ``API_FRAME_SCHEMA``).

    The same checks as CSV rows (unknown meter, alignment, 15 minutes, negative energy...);
    rejects land in ``interval_rejects`` with source ``api``. Unchanged re-fetched rows are
    not stored again.
    """
    _require_meters(conn)
    _ensure_tables(conn)
    now = now or datetime.now(UTC)
    loaded_at = datetime.now(UTC)
    report = IngestReport(api_rows_fetched=frame.height)
    frame = frame.select([pl.col(c).cast(t) for c, t in API_FRAME_SCHEMA.items()])
    iso = "%Y-%m-%dT%H:%M:%SZ"
    candidates = frame.select(
        pl.lit("api").alias("source"),
        pl.lit(None, dtype=pl.String).alias("source_file"),
        pl.lit(None, dtype=pl.Int64).alias("source_line"),
        pl.lit(len(CSV_COLUMNS), dtype=pl.Int64).alias("n_fields"),
        pl.col("meter_id").alias("meter_id_raw"),
        pl.col("interval_start").dt.strftime(iso).alias("start_raw"),
        pl.col("interval_end").dt.strftime(iso).alias("end_raw"),
        pl.col("kwh").cast(pl.String).alias("net_raw"),
        pl.col("consumed_kwh").cast(pl.String).alias("consumed_raw"),
        pl.col("generated_kwh").cast(pl.String).alias("generated_raw"),
        pl.col("final").cast(pl.String).alias("final_raw"),
        pl.lit(None, dtype=pl.String).alias("region_raw"),
        pl.col("meter_id").str.to_lowercase().alias("meter_id"),
        "interval_start",
        "interval_end",
        pl.col("kwh").alias("net_kwh"),
        "consumed_kwh",
        "generated_kwh",
        "final",
        pl.lit(None, dtype=pl.String).alias("region"),
    )
    stage_frame(conn, "stg_interval_candidates", candidates)
    stage_frame(
        conn,
        "stg_interval_files",
        pl.DataFrame(schema={"file_name": pl.String, "delivered_at": pl.Datetime("us", "UTC")}),
    )
    with transaction(conn):
        before = conn.execute("SELECT count(*) FROM interval_deliveries").fetchall()[0][0]
        execute_models(
            conn,
            "stg_interval_checked",
            "interval_deliveries",
            "interval_rejects",
            n_header_fields=len(CSV_COLUMNS),
            **_common_variables(now, loaded_at, market_tz),
        )
        after = conn.execute("SELECT count(*) FROM interval_deliveries").fetchall()[0][0]
        rejected = conn.execute(
            "SELECT count(*) FROM stg_interval_checked WHERE len(errors) > 0"
        ).fetchall()[0][0]
    report.api_rows_new = after - before
    report.api_rows_rejected = rejected
    return report


# --- partitions ------------------------------------------------------------------------------


def local_day_bounds_utc(
    start_date: date, end_date: date, market_tz: str
) -> tuple[datetime, datetime]:
    """UTC instants of local midnight opening ``start_date`` and closing ``end_date``."""
    tz = ZoneInfo(market_tz)
    start = datetime.combine(start_date, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(end_date + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


#: Days rebuilt per SQL statement: bounds the sort behind the correction rule.
REBUILD_DAYS_PER_STATEMENT = 31


def rebuild_interval_reads(
    conn: duckdb.DuckDBPyConnection, start_date: date, end_date: date
) -> int:
    """Rebuild ``interval_reads`` for local days [start_date, end_date] in one transaction
    (in chunks of days, so a year's backfill does not sort every delivery at once);
    returns its row count there."""
    _ensure_tables(conn)
    with transaction(conn):
        chunk_start = start_date
        while chunk_start <= end_date:
            chunk_end = min(end_date, chunk_start + timedelta(days=REBUILD_DAYS_PER_STATEMENT - 1))
            execute_models(conn, "interval_reads", start_date=chunk_start, end_date=chunk_end)
            chunk_start = chunk_end + timedelta(days=1)
    return conn.execute(
        "SELECT count(*) FROM interval_reads WHERE local_date BETWEEN $s AND $e",
        {"s": start_date, "e": end_date},
    ).fetchall()[0][0]
