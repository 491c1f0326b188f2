"""Publish: the analysts' read-only copy of the DuckDB file (``data/published/vpp.duckdb``).

``analytics_publish_sensor`` looks at finished runs (in the Dagster instance, never at DuckDB)
and requests one ``publish_analytics_job`` run when any of them materialized an asset that
writes analyst tables (the assets of the data dictionary, ``sql/*.yml``). The job's op runs in
the ``duckdb`` pool, so no writer is active while it copies; see ``vpp_pipeline.publish``.
"""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from vpp_pipeline import settings
from vpp_pipeline.data_dictionary import load_dictionary
from vpp_pipeline.publish import publish_copy

#: Runs that change nothing analysts read are not followed by a publish.
FINISHED = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]


def analyst_asset_keys() -> set[dg.AssetKey]:
    """Assets that write the tables of the data dictionary."""
    return {dg.AssetKey(doc.asset) for doc in load_dictionary().values()}


@dg.op(
    pool="duckdb",
    description="Copy the analytics DuckDB file to the read-only published copy analysts open "
    "(VPP_PUBLISHED_DUCKDB_PATH, default data/published/vpp.duckdb), atomically.",
)
def publish_analytics_copy(context: dg.OpExecutionContext, duckdb: DuckDBResource) -> dict:
    source = Path(duckdb.database)
    result = publish_copy(
        source, settings.published_duckdb_path(source), connect=duckdb.get_connection
    )
    context.log.info(
        f"published {result.target} ({result.bytes / 1e6:.1f} MB, {result.tables} tables) "
        f"in {result.seconds:.2f} s"
    )
    context.add_output_metadata(
        {
            "path": dg.MetadataValue.path(str(result.target.resolve())),
            "megabytes": round(result.bytes / 1e6, 2),
            "tables": result.tables,
            "seconds": round(result.seconds, 3),
        }
    )
    return {"path": str(result.target), "bytes": result.bytes, "tables": result.tables}


@dg.job(description="Publish the analysts' read-only copy of the DuckDB file.")
def publish_analytics_job():
    publish_analytics_copy()


@dg.sensor(
    job=publish_analytics_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After runs that changed analyst tables, requests one publish_analytics_job run "
    "(reads run records only, never DuckDB).",
)
def analytics_publish_sensor(context: dg.SensorEvaluationContext):
    since = datetime.fromisoformat(context.cursor) if context.cursor else datetime.min
    since = since.replace(tzinfo=since.tzinfo or UTC)
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=FINISHED, updated_after=since),
        order_by="update_timestamp",
        ascending=True,
        limit=200,
    )
    records = [r for r in records if r.update_timestamp > since]
    if not records:
        return dg.SkipReason(f"no run finished since {since.isoformat()}")
    keys = analyst_asset_keys()
    changed = []
    for record in records:
        if record.dagster_run.job_name == publish_analytics_job.name:
            continue
        materialized = context.instance.get_records_for_run(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        if any(r.event_log_entry.dagster_event.asset_key in keys for r in materialized):
            changed.append(record.dagster_run.run_id)
    cursor = records[-1].update_timestamp.isoformat()
    if not changed:
        return dg.SensorResult(
            skip_reason=f"{len(records)} finished run(s) changed no analyst table",
            cursor=cursor,
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"publish-after-{changed[-1]}",
                tags={"vpp/after_runs": ",".join(r[:8] for r in changed)[:200]},
            )
        ],
        cursor=cursor,
    )


JOBS = [publish_analytics_job]
SENSORS = [analytics_publish_sensor]
