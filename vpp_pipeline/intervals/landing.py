"""The interval landing folder, run like Leap's SFTP drop.

Partners drop Leap-format CSV files into ``VPP_INTERVAL_LANDING_DIR``; once processed, a
file moves to ``accepted/<stem>/<file>`` (no problems) or ``failed/<stem>/<file>`` (at
least one rejected row, or not readable at all) with ``errors.csv`` beside it
(``line,column,code,message``). Good rows of a failed file are still loaded.

Reading a file's header and its touched days is cheap and never touches DuckDB, so the
landing sensor can call :func:`touched_local_dates`.
"""

from __future__ import annotations

import codecs
import hashlib
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from vpp_pipeline.intervals.codes import CSV_COLUMNS, REQUIRED_CSV_COLUMNS

ARCHIVE_DIRS = ("accepted", "failed")
#: Files still being written by an uploader are skipped until renamed.
IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".partial", ".filepart")


@dataclass(frozen=True)
class CsvHeader:
    """Where each Leap column sits in a file's header (1-based; None = absent)."""

    positions: tuple[tuple[str, int | None], ...]
    n_fields: int

    def position(self, column: str) -> int | None:
        return dict(self.positions)[column]


@dataclass(frozen=True)
class FileProblem:
    """A whole-file rejection: the file cannot be read as Leap interval CSV at all."""

    code: str
    message: str


def pending_files(landing_dir: Path) -> list[Path]:
    """Files waiting in the landing folder (not in its archive sub-folders), oldest first."""
    if not landing_dir.exists():
        return []
    files = [
        p
        for p in landing_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(IN_PROGRESS_SUFFIXES)
    ]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def file_key(path: Path) -> str:
    """Identifies one landing of one file (name, size and modification time)."""
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def delivered_at(path: Path) -> datetime:
    """When the file landed (its modification time), UTC."""
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def read_header(path: Path) -> CsvHeader | FileProblem:
    """The column positions of a Leap interval CSV, or why the file is not one."""
    with path.open("rb") as handle:
        head = handle.read(64 * 1024)
    if not head.strip():
        return FileProblem("FIL_0002", "the file is empty")
    if b"\x00" in head:
        return FileProblem("FIL_0001", "not a CSV file: it contains binary data")
    try:
        # An incremental decoder tolerates a multi-byte character cut at the 64 KiB edge.
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        return FileProblem("FIL_0001", "not a CSV file: it is not UTF-8 text")
    first_line = text.splitlines()[0] if text.splitlines() else ""
    columns = [c.strip().strip('"').strip().lower() for c in first_line.split(",")]
    if len(columns) < 2 or not set(columns) & set(CSV_COLUMNS):
        return FileProblem(
            "FIL_0001",
            f"not a CSV file in Leap's interval format: the first line is {first_line[:120]!r}; "
            f"expected a header with {', '.join(CSV_COLUMNS)}",
        )
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in columns]
    if missing:
        return FileProblem("FIL_0003", f"the header lacks required column(s): {', '.join(missing)}")
    if len(text.splitlines()) < 2:
        return FileProblem("FIL_0002", "the file has a header but no data rows")
    positions = tuple(
        (column, columns.index(column) + 1 if column in columns else None) for column in CSV_COLUMNS
    )
    return CsvHeader(positions=positions, n_fields=len(columns))


def touched_local_dates(path: Path, market_tz: str) -> list[date]:
    """Market-local days whose intervals the file contains (unparsable starts ignored).

    Reads one column with polars; a file that is not CSV touches no day.
    """
    header = read_header(path)
    if isinstance(header, FileProblem):
        return []
    column = header.positions[CSV_COLUMNS.index("interval_start_time_utc")][0]
    try:
        starts = pl.read_csv(path, columns=[column], infer_schema=False, truncate_ragged_lines=True)
    except Exception:
        return []
    parsed = (
        starts.get_column(column)
        .str.strip_chars(' "')
        .str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
        .drop_nulls()
    )
    if parsed.is_empty():
        return []
    return sorted(parsed.dt.convert_time_zone(market_tz).dt.date().unique().to_list())


def archive_path(landing_dir: Path, path: Path, status: str, stamp: datetime) -> Path:
    """``<landing>/<status>/<stem>/<name>``; a re-delivered name gets its own folder."""
    folder = landing_dir / status / path.stem
    if (folder / path.name).exists():
        folder = landing_dir / status / f"{path.stem}__{stamp:%Y%m%dT%H%M%S%f}"
    return folder / path.name


def move_file(path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(target))
