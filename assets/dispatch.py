"""Dispatch: the inbox and retry sensors, the dispatch job, the reconciliation schedule, the DuckDB mirror.

The sensors and both jobs touch only the ops store (SQLite or PostgreSQL) and HTTP APIs: no DuckDB, no ``duckdb`` pool,
so no analytics run can delay a dispatch. Every dispatch_job and reconciliation run also re-sends the site
commands that are still owed (failed after retries, or stranded by a crashed run; ``dispatch.outbox``), and
``dispatch_retry_sensor`` requests a run for them as soon as one is due, so a failed command never waits for
the next event. Only the mirror asset (group ``dispatch``, pool ``duckdb``) writes DuckDB, from a copy of
the ops store's events and actions.
"""

from datetime import UTC, datetime

import dagster as dg
from dagster_duckdb import DuckDBResource

from vpp_pipeline.dispatch import mirror
from vpp_pipeline.dispatch.inbox_cursor import InboxCursor, start_after
from vpp_pipeline.dispatch.ordering import leap_event_lookup
from vpp_pipeline.dispatch.outbox import find_undelivered, retry_run_key
from vpp_pipeline.dispatch.processing import (
    leap_site_fetcher,
    process_inbox,
    reconcile,
    retry_pass,
)
from vpp_pipeline.dispatch.resources import OpsStoreResource, SiteControllerResource
from vpp_pipeline.leap import LeapClient
from vpp_pipeline.resources import LeapResource
from vpp_pipeline.warehouse import preview_markdown, row_count, run_models, stage_frame

#: Leap's dispatch search for an ordering decision is bounded (seconds per attempt, attempts): while Leap
#: is slow or down, a run with updates waits at most ~11 s, then the held state stands (the reconciliation
#: brings Leap's state later); the resource's own limits (30 s x 5 attempts) are for the analytics path.
ORDERING_SEARCH_TIMEOUT_S = 5.0
ORDERING_SEARCH_ATTEMPTS = 2


def ordering_client(leap: LeapResource) -> LeapClient:
    """A Leap client for ``dispatch.ordering``'s search, with the bounds above (docs/dispatch-ordering.md)."""
    return LeapClient(
        leap.base_url,
        leap.api_key,
        timeout_s=min(leap.timeout_s, ORDERING_SEARCH_TIMEOUT_S),
        max_attempts=min(leap.max_attempts, ORDERING_SEARCH_ATTEMPTS),
        backoff_initial_s=min(leap.backoff_initial_s, 0.5),
        backoff_max_s=min(leap.backoff_max_s, 1.0),
        retry_after_max_s=1.0,
        max_pages=leap.max_pages,
    )


class DispatchInboxRange(dg.Config):
    """Inbox rows ``(after, up_to]`` to apply (ids from the ops store's ``inbox``; ``up_to`` 0 = all).

    ``store_id``: the store the ids belong to (set by the sensor; another store fails the run).
    ``apply_inbox: false`` makes a retry-only run; ``retry_outstanding: false`` skips re-sending the
    commands still owed to site controllers."""

    after: int = 0
    up_to: int = 0
    store_id: str = ""
    apply_inbox: bool = True
    retry_outstanding: bool = True


@dg.op(
    description="Apply new inbox rows (docs/dispatch.md), deliver the site commands, and re-send the "
    "commands still owed (failed or stranded)."
)
def process_dispatch_inbox(
    context: dg.OpExecutionContext,
    config: DispatchInboxRange,
    ops_store: OpsStoreResource,
    site_controller: SiteControllerResource,
    leap: LeapResource,
) -> dict:
    store = ops_store.store()  # checked: a missing, emptied or replaced store fails the run here
    if config.store_id and config.store_id != store.store_id:
        raise dg.Failure(
            description=f"OPS_STORE_REPLACED: this run was requested for store {config.store_id};"
            f" {store.display} holds store {store.store_id} (the sensor requests the new store's rows)"
        )
    policy = site_controller.retry_policy() if config.retry_outstanding else None
    with (
        site_controller.client() as client,
        leap.client() as leap_client,
        ordering_client(leap) as search_client,
    ):
        if config.apply_inbox:
            summary = process_inbox(
                store,
                client,
                after=config.after,
                up_to=config.up_to or None,
                fetch_sites=leap_site_fetcher(leap_client),
                leap_lookup=leap_event_lookup(search_client),
                run_id=context.run_id,
                retry_policy=policy,
                log_fn=context.log.info,
            )
        else:
            summary = retry_pass(
                store, client, retry_policy=policy, run_id=context.run_id, log_fn=context.log.info
            )
        # Leap records left out of a search page (schema mismatch): the rest of the page was used
        rejected = [*leap_client.rejected_records, *search_client.rejected_records]
    summary["leap_rejected_records"] = len(rejected)
    for r in rejected:
        context.log.warning(
            f"LEAP_RECORD_REJECTED: {r.endpoint} page {r.page} record {r.index}"
            f" ({r.record_id or 'no readable id'}): {r.problem}"
        )
    context.log.info(f"dispatch summary: {summary}")
    if summary["unknown_meter_ids"]:
        context.log.warning(f"UNKNOWN_METER: {summary['unknown_meter_ids']}")
    _report_quarantine(context, store, summary)
    failed = summary["failed"] + summary.get("retry_failed", 0)
    if failed:
        raise dg.Failure(
            description=f"{failed} site command(s) failed after retries (re-sent by a later run)",
            metadata={k: v for k, v in summary.items() if k != "unknown_meter_ids"},
        )
    return summary


def _report_quarantine(context: dg.OpExecutionContext, store, summary: dict) -> None:
    """What this run (or an earlier one) set aside: a warning and output metadata, never a failure
    (one bad row must not stop the others; docs/dispatch-ordering.md)."""
    new = summary.get("quarantined", 0) + summary.get("retry_quarantined", 0)
    open_entries = store.quarantined()
    if new:
        context.log.warning(
            f"QUARANTINED {new} item(s) this run; {len(open_entries)} open in the quarantine"
            " (vpp dispatch-quarantine)"
        )
    context.add_output_metadata(
        {
            "quarantined_this_run": new,
            "quarantine_open": len(open_entries),
            "quarantine_latest": dg.MetadataValue.json(
                [
                    {k: e[k] for k in ("quarantine_id", "kind", "inbox_id", "event_key",
                                       "action_id", "reason_code", "detail")}
                    for e in open_entries[-10:]
                ]
            ),
        }
    )  # fmt: skip


@dg.job(description="Latency path: inbox rows -> dispatch events -> site-controller commands.")
def dispatch_job():
    process_dispatch_inbox()


# The sensors and the schedule name their job (not the object), so a deployment can give the ops-path
# jobs another executor (``build_definitions(ops_executor=...)``) without a second job of the same name.
@dg.sensor(
    job_name=dispatch_job.name,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a dispatch_job run for inbox rows after the cursor (the store's id and the "
    "last requested inbox id; another store's cursor is not followed).",
)
def dispatch_inbox_sensor(context: dg.SensorEvaluationContext, ops_store: OpsStoreResource):
    store = ops_store.store()  # a missing, emptied or not-initialized store is an error here
    cursor = InboxCursor.parse(context.cursor)
    after, reason = start_after(cursor, store)
    if reason is not None:
        context.log.warning(reason)
    pending = store.pending_inbox_ids(after)
    if not pending:
        return dg.SensorResult(
            skip_reason=f"no unprocessed inbox rows after id {after} in store {store.store_id}",
            cursor=InboxCursor(store.store_id, after).text(),
        )
    first, last = pending[0], pending[-1]
    config = {"after": first - 1, "up_to": last, "store_id": store.store_id}
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"dispatch-inbox-{store.store_id}-{first}-{last}",
                run_config={"ops": {"process_dispatch_inbox": {"config": config}}},
                tags={
                    "vpp/inbox_first": str(first),
                    "vpp/inbox_last": str(last),
                    "vpp/ops_store_id": store.store_id,
                },
            )
        ],
        cursor=InboxCursor(store.store_id, last).text(),
    )


@dg.sensor(
    job_name=dispatch_job.name,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a retry-only dispatch_job run when a site command is still owed to a site "
    "controller (failed after retries, or stranded by a crashed run) and due, or has expired.",
)
def dispatch_retry_sensor(
    context: dg.SensorEvaluationContext,
    ops_store: OpsStoreResource,
    site_controller: SiteControllerResource,
):
    # one small query: the undelivered commands (a partial index keeps it cheap)
    now = datetime.now(UTC)
    undelivered = find_undelivered(ops_store.store(), now, site_controller.retry_policy())
    due = [c for c in undelivered if c.is_due(now)]
    expired = [c for c in undelivered if c.ended and c.state != "in_flight"]
    if not due and not expired:
        waiting = [c for c in undelivered if c.outstanding]
        if waiting:
            wait_s = (min(c.due_at for c in waiting) - now).total_seconds()
            return dg.SkipReason(
                f"{len(waiting)} outstanding site command(s); next re-send due in {wait_s:.0f} s"
            )
        in_flight = sum(1 for c in undelivered if c.state == "in_flight")
        return dg.SkipReason(
            f"no outstanding site commands ({in_flight} being delivered by a live run)"
        )
    run_key = retry_run_key(due + expired)
    if run_key == context.cursor:
        return dg.SkipReason(f"{run_key} already requested ({len(due)} due, {len(expired)} ended)")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=run_key,
                run_config={"ops": {"process_dispatch_inbox": {"config": {"apply_inbox": False}}}},
                tags={
                    "vpp/retry": "true",
                    "vpp/due_commands": str(len(due)),
                    "vpp/ended_commands": str(len(expired)),
                },
            )
        ],
        cursor=run_key,
    )


@dg.op(
    description="Refresh the site inventory; feed Leap's dispatch search results that differ; re-send "
    "the site commands still owed."
)
def reconcile_dispatch_events(
    context: dg.OpExecutionContext,
    ops_store: OpsStoreResource,
    site_controller: SiteControllerResource,
    leap: LeapResource,
) -> dict:
    with site_controller.client() as client, leap.client() as leap_client:
        summary = reconcile(
            ops_store.store(),
            leap_client,
            client,
            run_id=context.run_id,
            retry_policy=site_controller.retry_policy(),
            log_fn=context.log.info,
        )
    context.log.info(f"reconciliation summary: {summary}")
    failed = summary.get("failed", 0) + summary.get("retry_failed", 0)
    if failed:
        # not a run failure: the next pass (retry sensor or this schedule) re-sends them
        context.log.warning(f"{failed} site command(s) still undelivered after retries")
    return summary


@dg.job(
    description="Catch lost webhooks: Leap's dispatch search (1 day back, 7 ahead) vs the ops store."
)
def dispatch_reconciliation_job():
    reconcile_dispatch_events()


dispatch_reconciliation_schedule = dg.ScheduleDefinition(
    job_name=dispatch_reconciliation_job.name,
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
#: The jobs of the ops path: no DuckDB, no local file, all state in the ops store, so they may run
#: under any executor (see ``vpp_pipeline.definitions.build_definitions``).
OPS_JOBS = [dispatch_job.name, dispatch_reconciliation_job.name]
SCHEDULES = [dispatch_reconciliation_schedule]
SENSORS = [dispatch_inbox_sensor, dispatch_retry_sensor]
