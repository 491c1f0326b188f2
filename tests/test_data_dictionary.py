"""The data dictionary (sql/*.yml) is the one source of table and column descriptions: the
DuckDB comments, the Dagster column schema and docs/data-dictionary.md must agree with it, and
every table and column of the demo's database must be described in it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from vpp_pipeline.data_dictionary import (
    DataDictionaryError,
    apply_comments,
    load_dictionary,
    parse_table_doc,
    render_markdown,
)
from vpp_pipeline.resources import duckdb_resource

ROOT = Path(__file__).resolve().parent.parent


def _catalog(path: Path) -> tuple[dict, dict]:
    """(table -> comment, (table, column) -> (type, comment)) of a DuckDB file's main schema."""
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = dict(
            conn.execute(
                "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'main'"
            ).fetchall()
        )
        columns = {
            (t, c): (ty, comment)
            for t, c, ty, comment in conn.execute(
                "SELECT table_name, column_name, data_type, comment FROM duckdb_columns() "
                "WHERE schema_name = 'main' AND table_name IN (SELECT unnest($t))",
                {"t": list(tables)},
            ).fetchall()
        }
    return tables, columns


def test_every_table_and_column_of_the_demo_database_is_described(demo_run):
    assert demo_run["exit_code"] == 0, demo_run["output"][-3000:]
    tables, columns = _catalog(demo_run["duckdb_path"])
    dictionary = load_dictionary()
    undescribed_tables = sorted(set(tables) - set(dictionary))
    undescribed_columns = sorted(
        f"{t}.{c} ({ty})"
        for (t, c), (ty, _) in columns.items()
        if t in dictionary and dictionary[t].column(c) is None
    )
    assert not undescribed_tables and not undescribed_columns, (
        "describe these in sql/<table>.yml (then `vpp data-dictionary --write`): "
        f"tables {undescribed_tables}; columns {undescribed_columns}"
    )
    wrong_types = sorted(
        f"{t}.{c}: dictionary {dictionary[t].column(c).type}, database {ty}"
        for (t, c), (ty, _) in columns.items()
        if dictionary[t].column(c).type != ty
    )
    assert not wrong_types, f"fix the types in sql/<table>.yml: {wrong_types}"
    stale = sorted(
        f"{d.table}.{c.name}"
        for d in dictionary.values()
        if d.table in tables
        for c in d.columns
        if (d.table, c.name) not in columns
    )
    assert not stale, f"described but not in the database (remove or rename): {stale}"


def test_demo_database_and_published_copy_carry_the_dictionary_as_comments(demo_run):
    dictionary = load_dictionary()
    for path in (demo_run["duckdb_path"], demo_run["published_path"]):
        tables, columns = _catalog(path)
        assert len(tables) >= 20
        for table, comment in tables.items():
            assert comment == dictionary[table].description, (path, table)
        wrong = [
            f"{t}.{c}"
            for (t, c), (_, comment) in columns.items()
            if comment != dictionary[t].column(c).description
        ]
        assert not wrong, f"{path}: comments differ from the dictionary: {wrong[:10]}"


def test_dagster_assets_carry_the_dictionarys_column_schema():
    from vpp_pipeline.definitions import defs

    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    dictionary = load_dictionary()
    own_tables = [d for d in dictionary.values() if d.asset == d.table]
    assert len(own_tables) >= 18
    for doc in own_tables:
        schema = specs[doc.table].metadata.get("dagster/column_schema")
        assert isinstance(schema, dg.TableSchema), doc.table
        assert [(c.name, c.type, c.description) for c in schema.columns] == [
            (c.name, c.type, c.description) for c in doc.columns
        ], doc.table
        assert specs[doc.table].metadata["dagster/table_name"] == f"main.{doc.table}"
    # tables written by another asset are named on it
    assert "interval_rejects" in specs["interval_files"].metadata["vpp/also_writes_tables"]


def test_docs_data_dictionary_is_generated_from_the_dictionary():
    written = (ROOT / "docs" / "data-dictionary.md").read_text()
    assert written == render_markdown(), "run `vpp data-dictionary --write` and commit the result"


def test_a_rebuilt_table_gets_its_comments_back_when_the_connection_closes(tmp_path):
    resource = duckdb_resource(tmp_path / "vpp.duckdb")
    with resource.get_connection() as conn:
        conn.execute("CREATE TABLE meter_enrollment_status AS SELECT 'm1' AS meter_id")
    with duckdb.connect(str(tmp_path / "vpp.duckdb")) as conn:
        described = load_dictionary()["meter_enrollment_status"]
        assert conn.execute(
            "SELECT comment FROM duckdb_columns() WHERE table_name = 'meter_enrollment_status'"
        ).fetchall() == [(described.column("meter_id").description,)]
        # CREATE OR REPLACE drops comments (DuckDB); the next close writes them again
        conn.execute("CREATE OR REPLACE TABLE meter_enrollment_status AS SELECT 'm2' AS meter_id")
        assert conn.execute("SELECT comment FROM duckdb_tables()").fetchall() == [(None,)]
        assert apply_comments(conn) == 2
        assert apply_comments(conn) == 0  # nothing left to write
        assert conn.execute("SELECT comment FROM duckdb_tables()").fetchall() == [
            (described.description,)
        ]


def test_a_malformed_dictionary_file_names_the_file_and_column():
    with pytest.raises(DataDictionaryError, match=r"x\.yml: column 'b' needs a type"):
        parse_table_doc(
            "x.yml",
            "table: x\ndescription: d\ncolumns:\n  a: {type: INTEGER, description: ok}\n  b: {}\n",
        )
    with pytest.raises(DataDictionaryError, match=r"y\.yml: missing 'description'"):
        parse_table_doc("y.yml", "table: y\ncolumns: {a: {type: INTEGER, description: ok}}\n")
