"""Load interval data into DuckDB: landing CSV files and API fetches, validated like Leap.

Both sources go through the same SQL: candidates -> checked (Leap's codes) ->
``interval_deliveries`` (accepted rows, as delivered) + ``interval_rejects`` (one row per
problem). ``interval_reads`` is then rebuilt per market-local day from the deliveries
(:func:`rebuild_interval_reads`), applying the correction rule.

Landing files are each read once and checked on their own in Python at memory speed (a
regular file, UTF-8 without NUL bytes, a Leap header: else the whole file is rejected with a
code and archived to ``failed/``), then loaded many files per DuckDB statement. Python here
loops over files and batches, never over rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import time_ns
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from vpp_pipeline.intervals.codes import CSV_COLUMNS, US_STATES
from vpp_pipeline.intervals.landing import (
    CsvHeader,
    FileProblem,
    LandedFile,
    LandingEntry,
    archive,
    archive_path,
    lstat_entry,
    parse_header,
    parse_key,
    read_landed_file,
    scan_landing,
    text_problem,
)
from vpp_pipeline.warehouse import execute_models, sql_text, stage_frame, table_exists, transaction

log = logging.getLogger(__name__)

#: Files read by one SQL pass, and the bytes they may hold together: a year of daily files
#: never sits in memory at once.
FILES_PER_BATCH = 16
BYTES_PER_BATCH = 256 * 1024 * 1024
#: Runs not started by the landing sensor load a file once it is unchanged this long (or has
#: its ``.done`` marker); the sensor instead compares two ticks.
DEFAULT_QUIET_SECONDS = 60.0
#: Reader errors that belong to one file's content (a batch that fails with one of them is
#: retried file by file, so the others still load); anything else fails the run.
_FILE_CONTENT_ERRORS = (
    duckdb.InvalidInputException,
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
)

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
    """What became of one landing entry.

    ``status``: ``accepted`` / ``failed`` (archived), ``already_loaded`` (same name and hash
    loaded before: archived, not loaded again), ``refused`` (a link or not a regular file:
    left in place), ``not_ready`` (changed while being read, or gone: left for a later run).
    """

    file_name: str
    status: str
    rows_accepted: int = 0
    rows_rejected: int = 0
    local_dates: list[date] = field(default_factory=list)
    archived_path: Path | None = None
    problem: str | None = None


@dataclass
class IngestReport:
    files: list[FileOutcome] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
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


def complete_entries(
    landing_dir: Path,
    *,
    quiet_seconds: float = DEFAULT_QUIET_SECONDS,
    require_done_marker: bool = False,
    now_ns: int | None = None,
) -> tuple[list[tuple[str, tuple[int, int] | None]], list[str]]:
    """For runs not started by the sensor: ``(name, (size, mtime_ns))`` of every file that is
    complete (``.done`` marker, or unchanged for ``quiet_seconds``), refused entries with no
    expectation, and the names of the files still waiting."""
    now_ns = now_ns if now_ns is not None else time_ns()
    chosen: list[tuple[str, tuple[int, int] | None]] = []
    waiting: list[str] = []
    for entry in scan_landing(landing_dir):
        quiet = now_ns - entry.mtime_ns >= quiet_seconds * 1e9 and not require_done_marker
        if not entry.readable:
            chosen.append((entry.name, None))
        elif entry.has_marker or quiet:
            chosen.append((entry.name, (entry.size, entry.mtime_ns)))
        else:
            waiting.append(entry.name)
    return chosen, waiting


def ingest_landing_files(
    conn: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    *,
    market_tz: str,
    files: Sequence[str] | None = None,
    quiet_seconds: float = DEFAULT_QUIET_SECONDS,
    require_done_marker: bool = False,
    now: datetime | None = None,
    files_per_batch: int = FILES_PER_BATCH,
    bytes_per_batch: int = BYTES_PER_BATCH,
) -> IngestReport:
    """Validate and load landing files, then archive each one.

    ``files``: the entries to load as ``name:size:mtime_ns`` keys (what the landing sensor
    saw complete; one that has changed since is left for a later run). None: every complete
    file in the folder (see :func:`complete_entries`).

    Each file is read once and checked on its own: one that is not a regular file is refused
    and left in place; one that is not UTF-8 text, is binary, empty or lacks Leap's header is
    rejected whole and archived to ``failed/``; the others are loaded together, a batch per
    DuckDB transaction. Files move to ``accepted/`` or ``failed/`` only after their batch
    commits, so a crash never loses a file; a file whose name and hash are already in
    ``interval_files`` is archived without being loaded again.
    """
    _require_meters(conn)
    _ensure_tables(conn)
    now = now or datetime.now(UTC)
    report = IngestReport()
    if files is None:
        chosen, report.waiting = complete_entries(
            landing_dir, quiet_seconds=quiet_seconds, require_done_marker=require_done_marker
        )
    else:
        keys = sorted(map(parse_key, set(files)), key=lambda k: (k[2], k[0]))  # delivery order
        chosen = [(name, (size, mtime)) for name, size, mtime in keys]

    groups: dict[CsvHeader, list[LandedFile]] = defaultdict(list)

    def flush(header: CsvHeader) -> None:
        batch = groups.pop(header, [])
        if batch:
            report.files.extend(_ingest_batch(conn, landing_dir, header, batch, now, market_tz))

    for name, expected in chosen:
        entry = lstat_entry(landing_dir, name)
        if entry is None:
            report.files.append(FileOutcome(name, "not_ready", problem="gone from the folder"))
            continue
        if not entry.readable:
            report.files.append(_refuse(conn, landing_dir, entry, entry.refusal()))
            continue
        landed = read_landed_file(landing_dir, name, expected)
        if landed is None:
            report.files.append(
                FileOutcome(name, "not_ready", problem="changed since it was seen complete")
            )
            continue
        if isinstance(landed, FileProblem):  # swapped for a link since the listing
            report.files.append(_refuse(conn, landing_dir, entry, landed))
            continue
        previous = conn.execute(
            "SELECT status FROM interval_files WHERE file_name = $n AND sha256 = $h",
            {"n": name, "h": landed.sha256},
        ).fetchall()
        if previous:
            target = archive_path(landing_dir, name, previous[0][0], now)
            archive(landing_dir, name, target)
            report.files.append(FileOutcome(name, "already_loaded", archived_path=target))
            continue
        problem = text_problem(landed.data)
        header = problem or parse_header(landed.data)
        if isinstance(header, FileProblem):
            report.files.append(_reject_whole_file(conn, landing_dir, landed, header))
            continue
        groups[header].append(landed)
        batch = groups[header]
        if len(batch) >= files_per_batch or sum(f.size for f in batch) >= bytes_per_batch:
            flush(header)
    for header in list(groups):
        flush(header)
    return report


def _texts_table(batch: list[LandedFile]) -> pa.Table:
    """(file_name, content) over the files' own bytes: no copy, and no path for DuckDB to
    expand as a pattern. The bytes were checked to be UTF-8 by :func:`text_problem`."""
    chunks = [
        pa.LargeStringArray.from_buffers(
            1, pa.py_buffer(np.array([0, len(f.data)], dtype=np.int64)), pa.py_buffer(f.data)
        )
        for f in batch
    ]
    return pa.table(
        {
            "file_name": pa.array([f.name for f in batch], type=pa.large_string()),
            "content": pa.chunked_array(chunks, type=pa.large_string()),
        }
    )


def _ingest_batch(
    conn: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    header: CsvHeader,
    batch: list[LandedFile],
    now: datetime,
    market_tz: str,
) -> list[FileOutcome]:
    loaded_at = datetime.now(UTC)
    names = [f.name for f in batch]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two landing files share a name in one batch: {names}")
    stage_frame(
        conn,
        "stg_interval_files",
        pl.DataFrame(
            {"file_name": names, "delivered_at": [f.delivered_at for f in batch]},
            schema={"file_name": pl.String, "delivered_at": pl.Datetime("us", "UTC")},
        ),
    )
    for column in CSV_COLUMNS:
        conn.execute(
            f"SET VARIABLE pos_{column} = CAST($v AS INTEGER)", {"v": header.position(column)}
        )
    outcomes: list[FileOutcome] = []
    conn.register("stg_interval_texts", _texts_table(batch))
    failure: Exception | None = None
    try:
        with transaction(conn):
            execute_models(
                conn,
                "stg_interval_candidates",
                "stg_interval_checked",
                "interval_deliveries",
                "interval_rejects",
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
            for landed in batch:
                accepted, rejected_rows, dates = counts.get(landed.name, (0, 0, []))
                problem = None if accepted or rejected_rows else "no data rows"
                status = "accepted" if rejected_rows == 0 and problem is None else "failed"
                target = archive_path(landing_dir, landed.name, status, loaded_at)
                outcomes.append(
                    FileOutcome(
                        landed.name, status, accepted, rejected_rows, list(dates), target, problem
                    )
                )
                rows.append(
                    {
                        "file_name": landed.name,
                        "sha256": landed.sha256,
                        "delivered_at": landed.delivered_at,
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
    except _FILE_CONTENT_ERRORS as exc:
        failure = exc
    finally:
        conn.unregister("stg_interval_texts")
    if failure is not None:
        # Checked bytes the reader still refuses: find the file by loading each on its own.
        if len(batch) > 1:
            log.warning(
                "a batch of %d files failed (%s); loading them one by one", len(batch), failure
            )
            return [
                outcome
                for landed in batch
                for outcome in _ingest_batch(conn, landing_dir, header, [landed], now, market_tz)
            ]
        problem = FileProblem(
            "FIL_0004", f"the file could not be split into lines: {failure}"[:500]
        )
        return [_reject_whole_file(conn, landing_dir, batch[0], problem)]
    # After the commit: archive, then write the error files beside the archived copies.
    for landed, outcome in zip(batch, outcomes, strict=True):
        archive(landing_dir, landed.name, outcome.archived_path)
        if outcome.status == "failed":
            _write_errors_csv(conn, outcome.archived_path, landed.name, loaded_at)
        log.info(
            "%s: %s (%d rows loaded, %d rejected)",
            landed.name,
            outcome.status,
            outcome.rows_accepted,
            outcome.rows_rejected,
        )
    return outcomes


def _reject_whole_file(
    conn: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    landed: LandedFile,
    problem: FileProblem,
) -> FileOutcome:
    loaded_at = datetime.now(UTC)
    target = archive_path(landing_dir, landed.name, "failed", loaded_at)
    with transaction(conn):
        conn.execute(
            """
            INSERT INTO interval_rejects
            VALUES ('csv', $file, NULL, '', $code, $message, NULL, NULL, $at)
            """,
            {
                "file": landed.name,
                "code": problem.code,
                "message": problem.message,
                "at": loaded_at,
            },
        )
        conn.execute(
            """
            INSERT INTO interval_files
            VALUES ($file, $sha, $delivered, $at, 'failed', 0, 0, $problem, [], $archived)
            """,
            {
                "file": landed.name,
                "sha": landed.sha256,
                "delivered": landed.delivered_at,
                "at": loaded_at,
                "problem": f"{problem.code}: {problem.message}",
                "archived": str(target),
            },
        )
    archive(landing_dir, landed.name, target)
    _write_errors_csv(conn, target, landed.name, loaded_at)
    log.warning("%s rejected as a whole: %s %s", landed.name, problem.code, problem.message)
    return FileOutcome(
        landed.name, "failed", archived_path=target, problem=f"{problem.code}: {problem.message}"
    )


def _refuse(
    conn: duckdb.DuckDBPyConnection, landing_dir: Path, entry: LandingEntry, problem: FileProblem
) -> FileOutcome:
    """Record a link or non-regular entry (once per entry: name + modification time) and
    leave it where it is; nothing behind it is read."""
    delivered = datetime.fromtimestamp(entry.mtime_ns / 1e9, tz=UTC)
    outcome = FileOutcome(
        entry.name,
        "refused",
        archived_path=landing_dir / entry.name,
        problem=f"{problem.code}: {problem.message}",
    )
    known = conn.execute(
        "SELECT count(*) FROM interval_files "
        "WHERE file_name = $n AND status = 'refused' AND delivered_at = $d",
        {"n": entry.name, "d": delivered},
    ).fetchall()[0][0]
    if known:
        return outcome
    loaded_at = datetime.now(UTC)
    with transaction(conn):
        conn.execute(
            "INSERT INTO interval_rejects VALUES ('csv', $file, NULL, '', $code, $message, NULL, NULL, $at)",
            {"file": entry.name, "code": problem.code, "message": problem.message, "at": loaded_at},
        )
        conn.execute(
            "INSERT INTO interval_files "
            "VALUES ($file, '', $delivered, $at, 'refused', 0, 0, $problem, [], $left_at)",
            {
                "file": entry.name,
                "delivered": delivered,
                "at": loaded_at,
                "problem": outcome.problem,
                "left_at": str(landing_dir / entry.name),
            },
        )
    log.warning("%s refused and left in place: %s", entry.name, outcome.problem)
    return outcome


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
