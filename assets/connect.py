"""Connect: the meter inventory from Leap's ``POST /v2/meters/search``.

``meter_history`` keeps every version of a meter's attributes; ``meters`` is the current
version. Both are written in one DuckDB transaction.
"""

from datetime import UTC, datetime

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.checks import enum_check, required_check, sql_check, unique_check
from vpp_pipeline import inventory
from vpp_pipeline.resources import LeapResource
from vpp_pipeline.warehouse import preview_markdown, row_count, run_models, stage_frame


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "meter_history",
            group_name="connect",
            kinds={"duckdb"},
            description="Every version of each meter's attributes; valid_from/valid_to (UTC) "
            "are when the pipeline first/last saw that version, valid_to NULL = current.",
        ),
        dg.AssetSpec(
            "meters",
            group_name="connect",
            kinds={"duckdb"},
            deps=["meter_history"],
            description="Current attributes of every meter Leap serves: region, type, "
            "load types, utility, tariff, load zone, battery kW/kWh and SoC limits.",
        ),
    ],
    pool="duckdb",
)
def meter_inventory(context: dg.AssetExecutionContext, leap: LeapResource, duckdb: DuckDBResource):
    with leap.client() as client:
        records = client.search_meters()
    context.log.info(f"Leap returned {len(records)} meters")
    frame = inventory.meters_frame(records)
    loaded_at = datetime.now(UTC)
    with duckdb.get_connection() as conn:
        stage_frame(conn, "stg_meters", frame)
        run_models(conn, "meter_history", "meters", loaded_at=loaded_at)
        opened, closed = conn.execute(
            "SELECT count(*) FILTER (WHERE valid_from = getvariable('loaded_at')),"
            "       count(*) FILTER (WHERE valid_to = getvariable('loaded_at'))"
            " FROM meter_history"
        ).fetchall()[0]
        history_rows = row_count(conn, "meter_history")
        meter_rows = row_count(conn, "meters")
        preview = preview_markdown(
            conn,
            "SELECT meter_id, transmission_region, meter_type, utility_name, tariff, "
            "battery_power_kw FROM meters",
        )
    yield dg.MaterializeResult(
        asset_key="meter_history",
        metadata={
            "rows": history_rows,
            "versions_opened": int(opened),
            "versions_closed": int(closed),
        },
    )
    yield dg.MaterializeResult(
        asset_key="meters",
        metadata={
            "rows": meter_rows,
            "served_by_leap": len(records),
            "preview": dg.MetadataValue.md(preview),
        },
    )


meters_unique = unique_check("meters", "meters", ["meter_id"])
meters_required = required_check(
    "meters",
    "meters",
    [
        "meter_id",
        "partner_reference",
        "transmission_region",
        "customer_classification",
        "meter_type",
    ],
)
meters_enums = enum_check(
    "meters",
    "meters",
    {
        "transmission_region": inventory.TRANSMISSION_REGIONS,
        "customer_classification": inventory.CUSTOMER_CLASSIFICATIONS,
        "meter_type": inventory.METER_TYPES,
    },
    list_columns={"load_types": inventory.LOAD_TYPES},
)
meter_history_one_current = sql_check(
    asset="meter_history",
    table="meter_history",
    name="meter_history_one_current_version",
    description="At most one open version per meter, and every closed version closes after it opens.",
    violations_sql=(
        "SELECT meter_id, 'several current versions' AS problem FROM meter_history "
        "WHERE valid_to IS NULL GROUP BY meter_id HAVING count(*) > 1 "
        "UNION ALL SELECT meter_id, 'valid_to before valid_from' FROM meter_history "
        "WHERE valid_to < valid_from"
    ),
    blocking=True,
)
