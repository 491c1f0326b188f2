"""The analysts' read-only copy of the analytics file (``data/published/vpp.duckdb``).

DuckDB allows one writing process per file, and a process that opens the file (even
read-only) blocks the writer, and the reverse. So analysts never open ``data/vpp.duckdb``:
after each run that changed analyst tables the pipeline publishes a copy, and analysts open
the copy.

:func:`publish_copy` runs inside the ``duckdb`` pool (no other run writes meanwhile). It holds
a connection to the source (so no other process can start writing), checkpoints it (every
change is in the main file, none only in the WAL), copies the bytes to a temporary file beside
the target, opens the copy read-only to prove it is a readable database, and renames it over
the target. The rename is atomic: an analyst who opens the path gets the old copy or the new
one, never half of one, and one who holds the old copy open keeps reading it undisturbed (its
inode lives until the last connection closes). Nothing the pipeline does waits for an analyst.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class PublishResult:
    source: Path
    target: Path
    bytes: int
    tables: int
    seconds: float


class PublishError(RuntimeError):
    """The copy could not be made (reason code in ``reason_code``)."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code


def publish_copy(
    source: Path,
    target: Path,
    connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]] | None = None,
) -> PublishResult:
    """Publish ``source`` (a DuckDB file) as ``target``, atomically; see the module docstring.

    ``connect`` opens the writer's connection to ``source`` (e.g. the Dagster resource's
    ``get_connection``, so the configuration matches the run's other connections)."""
    started = time.monotonic()
    source, target = Path(source), Path(target)
    if not source.exists():
        raise PublishError("PUBLISH_NO_SOURCE", f"{source} does not exist yet: nothing to publish")
    if source.resolve() == target.resolve():
        raise PublishError("PUBLISH_SAME_FILE", f"the published copy cannot be {source} itself")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    try:
        with (connect or (lambda: duckdb.connect(str(source))))() as conn:
            conn.execute("CHECKPOINT")
            shutil.copyfile(source, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        with duckdb.connect(str(tmp), read_only=True) as check:
            tables = check.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
            ).fetchall()[0][0]
        # read-only for the owner too: writes into a copy that the next run replaces are lost
        os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return PublishResult(
        source=source,
        target=target,
        bytes=target.stat().st_size,
        tables=int(tables),
        seconds=time.monotonic() - started,
    )


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_published(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published copy, in UTC (what ``vpp sql`` opens)."""
    if not Path(path).exists():
        raise PublishError(
            "PUBLISH_NOT_YET",
            f"{path} does not exist yet: run `make demo`, or materialize assets so that "
            "publish_analytics_job runs",
        )
    conn = duckdb.connect(str(path), read_only=True)
    conn.execute("SET TimeZone = 'UTC'")
    return conn
