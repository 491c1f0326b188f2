"""Manage: enrollments and nominations from Leap's v2 meter endpoints.

Both are snapshots of what Leap serves now: re-materializing with unchanged data leaves
the tables identical.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.checks import enum_check, required_check, unique_check
from vpp_pipeline import inventory, settings
from vpp_pipeline.resources import LeapResource
from vpp_pipeline.warehouse import preview_markdown, row_count, run_models, stage_frame


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "enrollments",
            group_name="manage",
            kinds={"duckdb"},
            deps=["meters"],
            description="One row per meter, program and delivery period: enrollment status "
            "and market group (POST /v2/meters/enrollments/search).",
        ),
        dg.AssetSpec(
            "meter_enrollment_status",
            group_name="manage",
            kinds={"duckdb"},
            deps=["meters"],
            description="One row per meter: Leap's global enrollment status and the number "
            "of required actions waiting on the partner.",
        ),
        dg.AssetSpec(
            "participation_preferences",
            group_name="manage",
            kinds={"duckdb"},
            deps=["meters"],
            description="PARTICIPATE / IDLE / DISENROLL windows per meter (UTC, end exclusive).",
        ),
    ],
    pool="duckdb",
)
def enrollment_inventory(
    context: dg.AssetExecutionContext, leap: LeapResource, duckdb: DuckDBResource
):
    with leap.client() as client:
        records = client.search_enrollments()
    context.log.info(f"Leap returned enrollment records for {len(records)} meters")
    programs, statuses, preferences = inventory.enrollment_frames(records)
    with duckdb.get_connection() as conn:
        stage_frame(conn, "stg_enrollments", programs)
        stage_frame(conn, "stg_meter_enrollment_status", statuses)
        stage_frame(conn, "stg_participation_preferences", preferences)
        run_models(conn, "enrollments", "meter_enrollment_status", "participation_preferences")
        counts = {
            t: row_count(conn, t)
            for t in ("enrollments", "meter_enrollment_status", "participation_preferences")
        }
        by_program = preview_markdown(
            conn,
            "SELECT program_identifier, enrollment_status, count(*) AS meters FROM enrollments "
            "GROUP BY ALL ORDER BY ALL",
            limit=20,
        )
    yield dg.MaterializeResult(
        asset_key="enrollments",
        metadata={"rows": counts["enrollments"], "by_program": dg.MetadataValue.md(by_program)},
    )
    yield dg.MaterializeResult(
        asset_key="meter_enrollment_status", metadata={"rows": counts["meter_enrollment_status"]}
    )
    yield dg.MaterializeResult(
        asset_key="participation_preferences",
        metadata={"rows": counts["participation_preferences"]},
    )


@dg.asset(group_name="manage", kinds={"duckdb"}, deps=["meters"], pool="duckdb")
def nominations(context: dg.AssetExecutionContext, leap: LeapResource, duckdb: DuckDBResource):
    """kW each meter is nominated for per program over [start_time, end_time) (UTC), from
    POST /v2/meters/nominations/search, looking back ``VPP_NOMINATIONS_LOOKBACK_DAYS``
    (default 400) so that past events can be scored against the nomination in force."""
    since = settings.nominations_since()
    with leap.client() as client:
        records = client.search_nominations(start_time=since)
    context.log.info(f"Leap returned {len(records)} nominations since {since:%Y-%m-%d}")
    with duckdb.get_connection() as conn:
        stage_frame(conn, "stg_nominations", inventory.nominations_frame(records))
        run_models(conn, "nominations")
        rows = row_count(conn, "nominations")
        preview = preview_markdown(
            conn,
            "SELECT program_identifier, source, count(*) AS nominations, "
            "round(sum(nomination_kw), 1) AS total_kw FROM nominations GROUP BY ALL ORDER BY ALL",
            limit=20,
        )
    return dg.MaterializeResult(metadata={"rows": rows, "by_program": dg.MetadataValue.md(preview)})


enrollments_unique = unique_check(
    "enrollments", "enrollments", ["meter_id", "program_identifier", "delivery_period"]
)
enrollments_required = required_check(
    "enrollments",
    "enrollments",
    [
        "meter_id",
        "program_identifier",
        "enrollment_status",
        "delivery_period_start",
        "delivery_period_end",
    ],
)
enrollments_enums = enum_check(
    "enrollments",
    "enrollments",
    {
        "program_identifier": inventory.PROGRAM_IDENTIFIERS,
        "enrollment_status": inventory.ENROLLMENT_STATUSES,
        "global_enrollment_status": inventory.ENROLLMENT_STATUSES,
        "transmission_region": inventory.TRANSMISSION_REGIONS,
    },
)
status_unique = unique_check("meter_enrollment_status", "meter_enrollment_status", ["meter_id"])
preferences_enums = enum_check(
    "participation_preferences",
    "participation_preferences",
    {"participation_preference": inventory.PARTICIPATION_PREFERENCES},
)
nominations_unique = unique_check(
    "nominations", "nominations", ["meter_id", "program_identifier", "start_time"]
)
nominations_required = required_check(
    "nominations",
    "nominations",
    ["meter_id", "program_identifier", "source", "nomination_kw", "start_time"],
)
nominations_enums = enum_check(
    "nominations",
    "nominations",
    {"program_identifier": inventory.PROGRAM_IDENTIFIERS, "source": inventory.NOMINATION_SOURCES},
)


inventory_job = dg.define_asset_job(
    "inventory_job",
    selection=dg.AssetSelection.groups("connect", "manage"),
    description="Refresh meters, meter history, enrollments and nominations from Leap.",
)

inventory_schedule = dg.ScheduleDefinition(
    name="inventory_daily",
    job=inventory_job,
    # Before the daily interval and bid runs, so they see today's enrollments.
    cron_schedule="0 4 * * *",
    execution_timezone="America/Los_Angeles",
)

JOBS = [inventory_job]
SCHEDULES = [inventory_schedule]
