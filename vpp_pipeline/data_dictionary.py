"""The data dictionary: one description per table and column, kept next to the SQL.

Each analyst table has a file ``sql/<table>.yml`` beside the model that builds it::

    table: event_performance
    asset: event_performance          # the Dagster asset that writes it (default: the table)
    description: One row per meter event ...
    columns:
      meter_event_id:
        type: VARCHAR
        description: Leap's meter_event_id ...

That file is the only source. From it:

* :func:`apply_comments` writes DuckDB ``COMMENT ON TABLE / COLUMN`` (the warehouse resource
  calls it whenever a connection closes, so a table rebuilt by ``CREATE OR REPLACE`` gets its
  comments back in the same run);
* :func:`column_schema` gives Dagster's ``dagster/column_schema`` metadata (the catalog's
  column list), attached to the asset specs in ``vpp_pipeline.definitions``;
* :func:`render_markdown` writes ``docs/data-dictionary.md`` (``vpp data-dictionary --write``).

``tests/test_data_dictionary.py`` checks that the three agree and that every table and column
of the demo's database is described.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import dagster as dg
import duckdb
import yaml

_REPO_SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


@dataclass(frozen=True)
class ColumnDoc:
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class TableDoc:
    table: str
    asset: str
    description: str
    columns: tuple[ColumnDoc, ...]
    source_file: str

    def column(self, name: str) -> ColumnDoc | None:
        return next((c for c in self.columns if c.name == name), None)


class DataDictionaryError(ValueError):
    """A dictionary file is malformed (reason named in the message)."""


def _dictionary_files() -> list[tuple[str, str]]:
    """(file name, text) of every ``*.yml`` in the packaged SQL folder, or ``sql/``."""
    try:
        folder = resources.files("vpp_pipeline.sql_models")
        files = [(f.name, f.read_text()) for f in folder.iterdir() if f.name.endswith(".yml")]
        if files:
            return sorted(files)
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    return sorted((p.name, p.read_text()) for p in _REPO_SQL_DIR.glob("*.yml"))


def _column_type(written: object) -> str:
    """The type as DuckDB names it: upper case, except a STRUCT's field names, which keep
    their case (DuckDB reports ``STRUCT(meter_event_id VARCHAR, ...)``); line breaks of a long
    type written over several yml lines become single spaces."""
    text = " ".join(str(written).split())
    return text if text.upper().startswith("STRUCT(") else text.upper()


def parse_table_doc(name: str, text: str) -> TableDoc:
    """One dictionary file; raises :class:`DataDictionaryError` naming the file and field."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise DataDictionaryError(f"{name}: not a mapping")
    for key in ("table", "description", "columns"):
        if not data.get(key):
            raise DataDictionaryError(f"{name}: missing {key!r}")
    columns = []
    for column, spec in data["columns"].items():
        if not isinstance(spec, dict) or not spec.get("type") or not spec.get("description"):
            raise DataDictionaryError(f"{name}: column {column!r} needs a type and a description")
        columns.append(
            ColumnDoc(
                str(column), _column_type(spec["type"]), " ".join(spec["description"].split())
            )
        )
    return TableDoc(
        table=data["table"],
        asset=data.get("asset", data["table"]),
        description=" ".join(data["description"].split()),
        columns=tuple(columns),
        source_file=f"sql/{name}",
    )


@cache
def load_dictionary() -> dict[str, TableDoc]:
    """Every described table, by name."""
    docs = [parse_table_doc(name, text) for name, text in _dictionary_files()]
    by_table = {d.table: d for d in docs}
    if len(by_table) != len(docs):
        raise DataDictionaryError("two dictionary files describe the same table")
    return by_table


# --- DuckDB comments ----------------------------------------------------------------------


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def apply_comments(conn: duckdb.DuckDBPyConnection) -> int:
    """Write the dictionary's descriptions as DuckDB comments on the tables and columns of the
    main schema that exist and whose comment differs (a table rebuilt with ``CREATE OR REPLACE``
    has lost its comments). Returns how many comments were written; undescribed columns are
    left alone (the data-dictionary test names them)."""
    dictionary = load_dictionary()
    tables = dict(
        conn.execute(
            "SELECT table_name, comment FROM duckdb_tables() "
            "WHERE schema_name = 'main' AND database_name = current_database() AND NOT temporary"
        ).fetchall()
    )
    wanted = [name for name in tables if name in dictionary]
    if not wanted:
        return 0
    columns = {
        (t, c): comment
        for t, c, comment in conn.execute(
            "SELECT table_name, column_name, comment FROM duckdb_columns() "
            "WHERE schema_name = 'main' AND database_name = current_database() "
            "AND table_name IN (SELECT unnest($t))",
            {"t": wanted},
        ).fetchall()
    }
    statements = []
    for name in wanted:
        doc = dictionary[name]
        if tables[name] != doc.description:
            statements.append(f"COMMENT ON TABLE {_quote(name)} IS {_literal(doc.description)}")
        for column in doc.columns:
            key = (name, column.name)
            if key in columns and columns[key] != column.description:
                statements.append(
                    f"COMMENT ON COLUMN {_quote(name)}.{_quote(column.name)} "
                    f"IS {_literal(column.description)}"
                )
    if statements:
        conn.execute("BEGIN TRANSACTION")
        try:
            for statement in statements:
                conn.execute(statement)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return len(statements)


# --- Dagster ------------------------------------------------------------------------------


def column_schema(table: str) -> dg.TableSchema | None:
    """Dagster's column schema of ``table`` (None when it is not described)."""
    doc = load_dictionary().get(table)
    if doc is None:
        return None
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=c.name, type=c.type, description=c.description) for c in doc.columns
        ]
    )


def asset_table_metadata(asset_key: str) -> dict:
    """Definition metadata for an asset that writes described tables: the column schema of the
    table named like the asset, its DuckDB table name, and the other tables it writes."""
    docs = [d for d in load_dictionary().values() if d.asset == asset_key]
    if not docs:
        return {}
    metadata: dict = {}
    own = next((d for d in docs if d.table == asset_key), None)
    if own is not None:
        metadata["dagster/column_schema"] = column_schema(own.table)
        metadata["dagster/table_name"] = f"main.{own.table}"
    others = sorted(d.table for d in docs if d.table != asset_key)
    if others:
        metadata["vpp/also_writes_tables"] = ", ".join(others)
    return metadata


def with_table_metadata(spec: dg.AssetSpec) -> dg.AssetSpec:
    """``spec`` with :func:`asset_table_metadata` merged into its metadata."""
    extra = asset_table_metadata(spec.key.to_user_string())
    if not extra:
        return spec
    return spec.merge_attributes(metadata=extra)


# --- docs/data-dictionary.md --------------------------------------------------------------


def render_markdown() -> str:
    """The whole dictionary as markdown (``docs/data-dictionary.md``)."""
    dictionary = load_dictionary()
    lines = [
        "# Data dictionary",
        "",
        "<!-- Generated from sql/*.yml by `vpp data-dictionary --write`; edit those files, not this one. -->",
        "",
        "Every table of the analytics database (`data/vpp.duckdb`, and its read-only copy for",
        "analysts, `data/published/vpp.duckdb`). The same descriptions are the DuckDB comments",
        "(`SELECT table_name, column_name, comment FROM duckdb_columns()`) and the column lists in",
        "the Dagster catalog. Timestamps (`TIMESTAMP WITH TIME ZONE`) are UTC instants; columns",
        "named `local_*` / `*_local_*` are wall-clock values in the time zone the description names.",
        "",
        "| table | asset | what one row is |",
        "|---|---|---|",
    ]
    for name in sorted(dictionary):
        doc = dictionary[name]
        lines.append(
            f"| [`{name}`](#{name}) | `{doc.asset}` | {_md(_first_sentence(doc.description))} |"
        )
    for name in sorted(dictionary):
        doc = dictionary[name]
        lines += [
            "",
            f"## {name}",
            "",
            doc.description,
            "",
            f"Written by asset `{doc.asset}`; described in `{doc.source_file}`.",
            "",
            "| column | type | description |",
            "|---|---|---|",
        ]
        lines += [f"| `{c.name}` | {c.type} | {_md(c.description)} |" for c in doc.columns]
    return "\n".join(lines) + "\n"


def _first_sentence(text: str) -> str:
    head, dot, _ = text.partition(". ")
    return head + ("." if dot else "")


def _md(text: str) -> str:
    return text.replace("|", "\\|")
