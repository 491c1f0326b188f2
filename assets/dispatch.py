"""Dispatch: the inbox sensor, the dispatch job, the reconciliation schedule, and the DuckDB mirror.

The sensor and both jobs touch only the ops store (SQLite) and HTTP APIs: no DuckDB, no ``duckdb`` pool, so
no analytics run can delay a dispatch. Only the mirror asset (group ``dispatch``, pool ``duckdb``) writes
DuckDB, from a copy of the ops store's events and actions.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from vpp_pipeline.dispatch import mirror
from vpp_pipeline.dispatch.processing import leap_site_fetcher, process_inbox, reconcile
from vpp_pipeline.dispatch.resources import OpsStoreResource, SiteControllerResource
from vpp_pipeline.resources import LeapResource
from vpp_pipeline.warehouse import preview_markdown, row_count, run_models, stage_frame


class DispatchInboxRange(dg.Config):
    """Inbox rows ``(after, up_to]`` to apply (ids from the ops store's ``inbox``)."""

    after: int = 0
    up_to: int = 0


@dg.op(description="Apply new inbox rows (GUIDE section 5) and deliver the site commands.")
def process_dispatch_inbox(
    context: dg.OpExecutionContext,
    config: DispatchInboxRange,
    ops_store: OpsStoreResource,
    site_controller: SiteControllerResource,
    leap: LeapResource,
) -> dict:
    store = ops_store.store()
    with site_controller.client() as client, leap.client() as leap_client:
        summary = process_inbox(
            store,
            client,
            after=config.after,
            up_to=config.up_to or None,
            fetch_sites=leap_site_fetcher(leap_client),
            run_id=context.run_id,
            log_fn=context.log.info,
        )
    context.log.info(f"dispatch summary: {summary}")
    if summary["unknown_meter_ids"]:
        context.log.warning(f"UNKNOWN_METER: {summary['unknown_meter_ids']}")
    if summary["failed"]:
        raise dg.Failure(
            description=f"{summary['failed']} site command(s) failed after retries",
            metadata={k: v for k, v in summary.items() if k != "unknown_meter_ids"},
        )
    return summary


@dg.job(description="Latency path: inbox rows -> dispatch events -> site-controller commands.")
def dispatch_job():
    process_dispatch_inbox()


@dg.sensor(
    job=dispatch_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a dispatch_job run for inbox rows after the cursor (the last requested id).",
)
def dispatch_inbox_sensor(context: dg.SensorEvaluationContext, ops_store: OpsStoreResource):
    after = int(context.cursor or 0)
    pending = ops_store.store().pending_inbox_ids(after)
    if not pending:
        return dg.SkipReason(f"no unprocessed inbox rows after id {after}")
    first, last = pending[0], pending[-1]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"dispatch-inbox-{first}-{last}",
                run_config={
                    "ops": {
                        "process_dispatch_inbox": {"config": {"after": first - 1, "up_to": last}}
                    }
                },
                tags={"vpp/inbox_first": str(first), "vpp/inbox_last": str(last)},
            )
        ],
        cursor=str(last),
    )


@dg.op(description="Refresh the site inventory; feed Leap's dispatch search results that differ.")
def reconcile_dispatch_events(
    context: dg.OpExecutionContext,
    ops_store: OpsStoreResource,
    site_controller: SiteControllerResource,
    leap: LeapResource,
) -> dict:
    with site_controller.client() as client, leap.client() as leap_client:
        summary = reconcile(
            ops_store.store(), leap_client, client, run_id=context.run_id, log_fn=context.log.info
        )
    context.log.info(f"reconciliation summary: {summary}")
    return summary


@dg.job(
    description="Catch lost webhooks: Leap's dispatch search (1 day back, 7 ahead) vs the ops store."
)
def dispatch_reconciliation_job():
    reconcile_dispatch_events()


dispatch_reconciliation_schedule = dg.ScheduleDefinition(
    job=dispatch_reconciliation_job,
    cron_schedule="*/5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "ops_dispatch_events",
            group_name="dispatch",
            kinds={"duckdb"},
            description="Dispatch events from the ops store, one row per event and meter (group events "
            "split by nomination; meter_event_id '<market_group_event_id>:<meter_id>').",
        ),
        dg.AssetSpec(
            "dispatch_actions",
            group_name="dispatch",
            kinds={"duckdb"},
            description="Every site command (PUT/DELETE/skipped) with its delivery attempts and outcome.",
        ),
    ],
    pool="duckdb",
)
def dispatch_history(ops_store: OpsStoreResource, duckdb: DuckDBResource):
    events, actions = mirror.frames(ops_store.store())
    with duckdb.get_connection() as conn:
        stage_frame(conn, "stg_ops_dispatch_events", events)
        stage_frame(conn, "stg_dispatch_actions", actions)
        run_models(conn, "ops_dispatch_events", "dispatch_actions")
        counts = {t: row_count(conn, t) for t in ("ops_dispatch_events", "dispatch_actions")}
        by_status = preview_markdown(
            conn,
            "SELECT command, status, count(*) AS n FROM dispatch_actions GROUP BY ALL ORDER BY ALL",
            limit=20,
        )
    yield dg.MaterializeResult(
        asset_key="ops_dispatch_events", metadata={"rows": counts["ops_dispatch_events"]}
    )
    yield dg.MaterializeResult(
        asset_key="dispatch_actions",
        metadata={"rows": counts["dispatch_actions"], "by_status": dg.MetadataValue.md(by_status)},
    )


JOBS = [dispatch_job, dispatch_reconciliation_job]
SCHEDULES = [dispatch_reconciliation_schedule]
SENSORS = [dispatch_inbox_sensor]
