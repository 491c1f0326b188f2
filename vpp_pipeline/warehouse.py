"""The DuckDB analytics file: SQL models from ``sql/`` and small helpers around them.

SQL files are one model per file, named after the table they build. They ship inside the
package as ``vpp_pipeline.sql_models`` (see pyproject), so an installed package finds them;
in a source checkout they are read from ``sql/`` at the repository root.

A model receives its inputs as DuckDB variables (``SET VARIABLE``; read in SQL with
``getvariable('name')``) and staged relations registered under agreed names, so the SQL
stays plain SQL that an analyst can read and run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

_REPO_SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def sql_text(model: str) -> str:
    """The text of ``sql/<model>.sql``."""
    filename = f"{model}.sql"
    try:
        return resources.files("vpp_pipeline.sql_models").joinpath(filename).read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        path = _REPO_SQL_DIR / filename
        if not path.exists():
            raise FileNotFoundError(
                f"SQL model {filename!r} not found in the package or {path}"
            ) from None
        return path.read_text()


def set_variables(conn: duckdb.DuckDBPyConnection, **variables: Any) -> None:
    """Set DuckDB session variables for a model (datetimes must be timezone-aware)."""
    for name, value in variables.items():
        if isinstance(value, date) and not isinstance(value, datetime):
            conn.execute(f"SET VARIABLE {name} = CAST($v AS DATE)", {"v": value})
        elif isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"variable {name!r} is a naive datetime; pass UTC-aware times")
            conn.execute(f"SET VARIABLE {name} = CAST($v AS TIMESTAMPTZ)", {"v": value})
        else:
            conn.execute(f"SET VARIABLE {name} = $v", {"v": value})


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One DuckDB transaction: committed on success, rolled back on any error."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def execute_models(conn: duckdb.DuckDBPyConnection, *models: str, **variables: Any) -> None:
    """Run ``sql/<model>.sql`` files in order in the caller's transaction."""
    set_variables(conn, **variables)
    for model in models:
        conn.execute(sql_text(model))


def run_models(conn: duckdb.DuckDBPyConnection, *models: str, **variables: Any) -> None:
    """Run ``sql/<model>.sql`` files in order, all inside one transaction: a failure leaves
    every table as it was."""
    scripts = [sql_text(model) for model in models]  # a missing file fails before BEGIN
    set_variables(conn, **variables)
    with transaction(conn):
        for script in scripts:
            conn.execute(script)


def stage_frame(conn: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    """Materialize ``frame`` as temp table ``name`` (a copy: the frame can be dropped)."""
    conn.register("_stage_frame", frame.to_arrow())
    try:
        conn.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT * FROM _stage_frame')
    finally:
        conn.unregister("_stage_frame")


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = $t AND table_schema = 'main'",
            {"t": table},
        ).fetchall()[0][0]
    )


def row_count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0])


def preview_markdown(conn: duckdb.DuckDBPyConnection, sql: str, limit: int = 5) -> str:
    """A small markdown preview of a query, for Dagster materialization metadata."""
    frame = conn.sql(f"SELECT * FROM ({sql}) LIMIT {int(limit)}").pl()
    if frame.is_empty():
        return "(no rows)"
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|")[:40]
