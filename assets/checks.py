"""Asset checks written as SQL: a check passes when its query returns no violating rows.

Each check reports how many rows violate it and a few examples, so the UI shows *which*
meter or enrollment is wrong, not just that something is.
"""

from collections.abc import Iterable, Sequence

import dagster as dg
from dagster_duckdb import DuckDBResource

from vpp_pipeline.warehouse import preview_markdown, table_exists


def sql_check(
    *,
    asset: str,
    table: str,
    name: str,
    description: str,
    violations_sql: str,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    blocking: bool = False,
) -> dg.AssetChecksDefinition:
    """A check on ``asset`` (stored as DuckDB ``table``) failing when ``violations_sql`` returns rows."""

    @dg.asset_check(asset=asset, name=name, description=description, blocking=blocking)
    def _check(duckdb: DuckDBResource) -> dg.AssetCheckResult:
        with duckdb.get_connection() as conn:
            if not table_exists(conn, table):
                return dg.AssetCheckResult(
                    passed=False,
                    severity=severity,
                    metadata={"problem": f"table {table} does not exist yet"},
                )
            count = conn.execute(f"SELECT count(*) FROM ({violations_sql})").fetchall()[0][0]
            metadata: dict[str, dg.RawMetadataValue] = {"violations": int(count)}
            if count:
                metadata["examples"] = dg.MetadataValue.md(preview_markdown(conn, violations_sql))
        return dg.AssetCheckResult(passed=count == 0, severity=severity, metadata=metadata)

    return _check


def unique_check(asset: str, table: str, key: Sequence[str]) -> dg.AssetChecksDefinition:
    cols = ", ".join(key)
    return sql_check(
        asset=asset,
        table=table,
        name=f"{table}_unique_{'_'.join(key)}",
        description=f"Each ({cols}) appears once in {table}.",
        violations_sql=f"SELECT {cols}, count(*) AS copies FROM {table} GROUP BY ALL HAVING count(*) > 1",
        blocking=True,
    )


def required_check(asset: str, table: str, columns: Sequence[str]) -> dg.AssetChecksDefinition:
    missing = " OR ".join(f"{c} IS NULL" for c in columns)
    listed = ", ".join(f"CASE WHEN {c} IS NULL THEN '{c}' END" for c in columns)
    return sql_check(
        asset=asset,
        table=table,
        name=f"{table}_required_fields",
        description=f"{table} rows carry every required field: {', '.join(columns)}.",
        violations_sql=(
            f"SELECT *, concat_ws(',', {listed}) AS missing_fields FROM {table} WHERE {missing}"
        ),
    )


def enum_check(
    asset: str,
    table: str,
    allowed: dict[str, Iterable[str]],
    list_columns: dict[str, Iterable[str]] | None = None,
) -> dg.AssetChecksDefinition:
    """Values outside Leap's published enums. A warning: Leap may add values, and the rows
    are kept either way."""
    unions = []
    for column, values in allowed.items():
        literal = _sql_list(values)
        unions.append(
            f"SELECT '{column}' AS column_name, {column}::VARCHAR AS value, count(*) AS rows "
            f"FROM {table} WHERE {column} IS NOT NULL AND {column} NOT IN {literal} GROUP BY ALL"
        )
    for column, values in (list_columns or {}).items():
        literal = _sql_list(values)
        unions.append(
            f"SELECT '{column}' AS column_name, v AS value, count(*) AS rows "
            f"FROM (SELECT unnest({column}) AS v FROM {table}) WHERE v NOT IN {literal} GROUP BY ALL"
        )
    return sql_check(
        asset=asset,
        table=table,
        name=f"{table}_known_enum_values",
        description=f"{table} enum columns hold only values Leap publishes.",
        violations_sql=" UNION ALL ".join(unions),
        severity=dg.AssetCheckSeverity.WARN,
    )


def _sql_list(values: Iterable[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"
