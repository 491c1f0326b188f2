"""Dispatch processing: inbox rows -> event revisions -> site commands -> delivery (ops store only).

``process_inbox`` is what ``dispatch_job`` runs; ``reconcile`` is what the reconciliation schedule runs.
Neither opens DuckDB. Planning and the writes it causes happen in one ``BEGIN IMMEDIATE`` transaction
(:func:`apply_inbox`), so concurrent runs (or 50 copies of one delivery) serialize: the second run sees the
first one's schedules and plans nothing. Delivery happens after the commit, in parallel across meters (in
order within a meter). Both then re-send every outstanding command (failed after retries, or stranded by a
crashed run) through ``dispatch.outbox``, so a failed command does not wait for the next event.

Known limitation: when reconciliation revises a known *group* event it keeps the meter list the webhook
sent, because Leap's group search reports a group's members per group, not per event; a member change
that only the search shows is not applied to an existing event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from vpp_pipeline.dispatch.delivery import SiteControllerClient
from vpp_pipeline.dispatch.notifications import NotificationError, parse_notification
from vpp_pipeline.dispatch.outbox import (
    DEFAULT_RETRY_POLICY,
    DELIVERED,
    FAILED,
    SUPERSEDED,
    RetryPolicy,
    deliver_actions,
    redeliver_outstanding,
)
from vpp_pipeline.dispatch.planning import diff_schedules, plan_meter, split_event
from vpp_pipeline.leap import LeapClient
from vpp_pipeline.leap.models import GroupDispatch, MeterDispatch
from vpp_pipeline.ops import OpsSession, OpsStore, iso

log = logging.getLogger(__name__)

#: How far the reconciliation search reaches (Leap's search: start_date inclusive, end_date exclusive).
RECONCILE_BACK = timedelta(days=1)
RECONCILE_AHEAD = timedelta(days=7)

SiteFetcher = Callable[[list[str]], tuple[list[dict], list[dict]]]


def leap_site_fetcher(client: LeapClient, now: datetime | None = None) -> SiteFetcher:
    """Fetch sites (battery kW) and their nominations for given meter ids from Leap's API."""

    def fetch(meter_ids: list[str]) -> tuple[list[dict], list[dict]]:
        sites, noms = [], []
        for i in range(0, len(meter_ids), 500):
            chunk = meter_ids[i : i + 500]
            for meter in client.search_meters(meter_ids=chunk):
                sites.append(site_record(meter))
            start = (now or datetime.now(UTC)) - timedelta(days=35)
            for nom in client.search_nominations(start_time=start, meter_ids=chunk):
                noms.append(nomination_record(nom))
        return sites, noms

    return fetch


def site_record(meter) -> dict:
    battery_kw = None
    if meter.device is not None and meter.device.battery_power_capacity_kw:
        battery_kw = float(meter.device.battery_power_capacity_kw)
    elif meter.site is not None:
        powers = [d.power_capacity_kw for d in meter.site.site_devices if d.power_capacity_kw]
        battery_kw = float(sum(powers)) if powers else None
    return {
        "meter_id": meter.meter_id.lower(),
        "partner_reference": meter.partner_reference,
        "transmission_region": meter.transmission_region,
        "meter_type": meter.meter_type,
        "battery_power_kw": battery_kw,
    }


def nomination_record(nom) -> dict:
    return {
        "meter_id": nom.meter_id.lower(),
        "program_identifier": nom.program_identifier,
        "start_time": nom.start_time or datetime(1970, 1, 1, tzinfo=UTC),
        "end_time": nom.end_time,
        "nomination_kw": nom.nomination_kw,
    }


def refresh_sites(store: OpsStore, fetch: SiteFetcher, meter_ids: list[str]) -> int:
    """Fetch and store the inventory of ``meter_ids``; returns how many Leap knew."""
    if not meter_ids:
        return 0
    sites, noms = fetch(sorted(set(meter_ids)))
    with store.session() as s:
        s.upsert_sites(sites, noms, datetime.now(UTC))
    return len(sites)


def _parse_rows(rows) -> tuple[list[tuple], list[tuple]]:
    parsed, broken = [], []
    for row in rows:
        try:
            parsed.append((row, parse_notification(json.loads(row.body))))
        except (ValueError, NotificationError) as exc:
            broken.append((row, exc))
    return parsed, broken


def apply_inbox(
    store: OpsStore,
    *,
    after: int = 0,
    up_to: int | None = None,
    fetch_sites: SiteFetcher | None = None,
    run_id: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    log_fn: Callable[[str], None] = log.info,
) -> tuple[dict, list[dict]]:
    """Apply the unprocessed inbox rows in ``(after, up_to]`` and plan the site commands, committed
    together (status ``planned``), without delivering them. Returns the counts (see :func:`process_inbox`)
    and the planned actions (dicts for :func:`~vpp_pipeline.dispatch.outbox.deliver_actions`)."""
    # 1. Unknown meters are looked up outside the write transaction: an HTTP call must never hold the
    #    ops store's write lock (the receiver would queue behind it).
    with store.session(write=False) as s:
        peek = s.inbox_rows(after, up_to, unprocessed=True)
        mentioned = {
            m for _, events in _parse_rows(peek)[0] for e in events for m in e["meter_ids"]
        }
        missing = sorted(mentioned - set(s.sites(mentioned)))
    if missing and fetch_sites is not None:
        try:
            refresh_sites(store, fetch_sites, missing)
        except Exception as exc:  # the inventory lookup is best effort; unknown meters are reported
            log_fn(f"site inventory lookup failed ({type(exc).__name__}: {exc}); continuing")

    summary = {
        "rows": 0,
        "new_events": 0,
        "revisions": 0,
        "duplicates": 0,
        "commands": 0,
        "delivered": 0,
        "failed": 0,
        "skipped": 0,
        "unknown_meter_ids": [],
    }
    with store.session() as s:
        rows = s.inbox_rows(after, up_to, unprocessed=True)
        parsed, broken = _parse_rows(rows)
        at = now()
        for row, exc in broken:
            # the receiver only stores valid notifications; a broken row means a manual insert or a bug
            log_fn(f"inbox row {row.inbox_id} is not a dispatch notification: {exc}")
        touched: set[str] = set()
        received: dict[str, str] = {}
        for row, events in parsed:
            for event in events:
                outcome = _apply_event(s, event, row, at)
                summary[outcome] += 1
                if outcome != "duplicates":
                    touched.update(event["meter_ids"])
                    received[event["event_key"]] = row.received_at
        s.mark_processed([r.inbox_id for r in rows], run_id, at)
        summary["rows"] = len(rows)
        actions = _plan(s, touched, received, at, run_id, summary)
    summary["commands"] = len(actions)
    return summary, actions


def process_inbox(
    store: OpsStore,
    client: SiteControllerClient,
    *,
    after: int = 0,
    up_to: int | None = None,
    fetch_sites: SiteFetcher | None = None,
    run_id: str | None = None,
    retry_policy: RetryPolicy | None = DEFAULT_RETRY_POLICY,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    log_fn: Callable[[str], None] = log.info,
) -> dict:
    """Apply the unprocessed inbox rows in ``(after, up_to]``, deliver the resulting commands, then (unless
    ``retry_policy`` is None) re-send every outstanding command that is due (any meter).

    Returns counts: ``rows``, ``new_events``, ``revisions``, ``duplicates``, ``commands``, ``delivered``,
    ``failed``, ``superseded``, ``skipped``, ``unknown_meter_ids``, and with retries the counts of
    :func:`~vpp_pipeline.dispatch.outbox.redeliver_outstanding`.
    """
    summary, actions = apply_inbox(
        store,
        after=after,
        up_to=up_to,
        fetch_sites=fetch_sites,
        run_id=run_id,
        now=now,
        log_fn=log_fn,
    )
    summary["superseded"] = 0
    if actions:
        stale_after_s = (retry_policy or DEFAULT_RETRY_POLICY).stale_after_s
        statuses = deliver_actions(store, client, actions, lock_stale_after_s=stale_after_s)
        summary["delivered"] = statuses.count(DELIVERED)
        summary["failed"] = statuses.count(FAILED)
        summary["superseded"] = statuses.count(SUPERSEDED)
    if retry_policy is not None:
        retried = redeliver_outstanding(
            store,
            client,
            policy=retry_policy,
            run_id=run_id,
            exclude_action_ids={a["action_id"] for a in actions},
            now=now,
            log_fn=log_fn,
        )
        summary.update(_retry_counts(retried))
    return summary


def retry_pass(
    store: OpsStore,
    client: SiteControllerClient,
    *,
    retry_policy: RetryPolicy | None = DEFAULT_RETRY_POLICY,
    run_id: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    log_fn: Callable[[str], None] = log.info,
) -> dict:
    """A run without inbox rows: only re-send outstanding commands. Same counts as :func:`process_inbox`."""
    summary = {
        "rows": 0,
        "commands": 0,
        "delivered": 0,
        "failed": 0,
        "superseded": 0,
        "skipped": 0,
        "unknown_meter_ids": [],
    }
    if retry_policy is not None:
        retried = redeliver_outstanding(
            store, client, policy=retry_policy, run_id=run_id, now=now, log_fn=log_fn
        )
        summary.update(_retry_counts(retried))
    return summary


def _retry_counts(retried: dict) -> dict:
    # 'superseded' is shared with first deliveries: keep one total
    return {k: v for k, v in retried.items() if k != "superseded"} | {
        "retry_superseded": retried["superseded"]
    }


def _apply_event(s: OpsSession, event: dict, row, at: datetime) -> str:
    """Store a received event: ``new_events``, ``revisions`` or ``duplicates`` (nothing changed)."""
    current = s.event(event["event_key"])
    if current is not None and current["content_sha256"] == event["content_sha256"]:
        return "duplicates"
    if current is not None and current["inbox_id"] > row.inbox_id:
        # an older delivery processed late: the latest received wins
        return "duplicates"
    revision = 1 if current is None else current["revision"] + 1
    meter_ids = event["meter_ids"]
    if current is not None and row.source == "reconciliation" and event["level"] == "group":
        # the search's group members are per recipient, not per event: keep what the webhook said
        meter_ids = json.loads(current["meter_ids"])
    s.save_event(
        {
            "event_key": event["event_key"],
            "level": event["level"],
            "event_id": event["event_id"],
            "recipient_id": event["recipient_id"],
            "meter_ids": json.dumps(meter_ids),
            "timeslot": json.dumps(event["timeslot"], sort_keys=True),
            "content_sha256": event["content_sha256"],
            "revision": revision,
            "integration_test": int(event["integration_test"]),
            "communication_test": int(event["communication_test"]),
            "source": row.source,
            "inbox_id": row.inbox_id,
            "first_received_at": current["first_received_at"] if current else row.received_at,
            "received_at": row.received_at,
            "updated_at": iso(at),
        }
    )
    return "new_events" if current is None else "revisions"


def _event_from_row(row: dict) -> dict:
    return {
        "event_key": row["event_key"],
        "level": row["level"],
        "event_id": row["event_id"],
        "recipient_id": row["recipient_id"],
        "meter_ids": json.loads(row["meter_ids"]),
        "timeslot": json.loads(row["timeslot"]),
        "integration_test": bool(row["integration_test"]),
        "communication_test": bool(row["communication_test"]),
        "revision": row["revision"],
        "received_at": row["received_at"],
    }


def _plan(
    s: OpsSession,
    touched: set[str],
    received: dict[str, str],
    at: datetime,
    run_id: str | None,
    summary: dict,
) -> list[dict]:
    """Plan the touched meters; write the commands and the new desired schedules; return the commands."""
    if not touched:
        return []
    events = {r["event_key"]: _event_from_row(r) for r in s.events_touching_meters(touched)}
    all_meters = {m for e in events.values() for m in e["meter_ids"]}
    sites = s.sites(all_meters)
    shares_by_meter: dict[str, list] = {}
    unknown_all: set[str] = set()
    for event in events.values():
        shares, unknown = split_event(event, sites)
        for share in shares:
            shares_by_meter.setdefault(share.meter_id, []).append(share)
        for meter_id in unknown:
            unknown_all.add(meter_id)
            if meter_id in touched and not s.has_skip(
                event["event_key"], meter_id, event["revision"], "UNKNOWN_METER"
            ):
                s.add_action(
                    {
                        "event_key": event["event_key"],
                        "meter_id": meter_id,
                        "schedule_id": event["event_id"],
                        "command": "none",
                        "payload": None,
                        "revision": event["revision"],
                        "reason_code": "UNKNOWN_METER",
                        "received_at": event["received_at"],
                        "planned_at": iso(at),
                        "status": "skipped",
                        "run_id": run_id,
                    }
                )
                summary["skipped"] += 1
    summary["unknown_meter_ids"] = sorted(unknown_all & touched)
    planned_meters = sorted(touched & set(sites))
    desired = [
        schedule
        for meter_id in planned_meters
        for schedule in plan_meter(shares_by_meter.get(meter_id, []), at)
    ]
    current = s.schedules_for_meters(planned_meters)
    commands = diff_schedules(desired, current, events, at)
    by_key = {(d.meter_id, d.schedule_id): d for d in desired}
    actions = []
    for command in commands:
        event = events.get(command.event_key)
        action = {
            "event_key": command.event_key,
            "meter_id": command.meter_id,
            "schedule_id": command.schedule_id,
            "command": command.command,
            "payload": command.payload,
            "revision": command.revision,
            "reason_code": command.reason_code,
            "received_at": received.get(command.event_key)
            or (event["received_at"] if event else iso(at)),
            "planned_at": iso(at),
            "status": "planned",
            "run_id": run_id,
        }
        action["action_id"] = s.add_action(action)
        actions.append(action)
        if command.command == "put":
            schedule = by_key[(command.meter_id, command.schedule_id)]
            s.set_schedule(
                command.meter_id,
                command.schedule_id,
                command.event_key,
                schedule.payload,
                schedule.payload_sha256,
                "active",
                at,
            )
        else:
            previous = next(
                r
                for r in current
                if r["meter_id"] == command.meter_id and r["schedule_id"] == command.schedule_id
            )
            s.set_schedule(
                command.meter_id,
                command.schedule_id,
                command.event_key,
                json.loads(previous["payload"]),
                previous["payload_sha256"],
                "deleted",
                at,
            )
    return actions


# --- reconciliation -------------------------------------------------------------------------------------


def search_notifications(client: LeapClient, now: datetime) -> tuple[dict, dict]:
    """Leap's meter and group dispatch search from ``now - 1 day`` to ``now + 7 days``, as notifications
    (``{"meter_dispatches": [...]}``, ``{"group_dispatches": [...]}``) of JSON-ready records."""
    start, end = now - RECONCILE_BACK, now + RECONCILE_AHEAD
    meter = client.search_meter_dispatches(start, end)
    group = client.search_group_dispatches(start, end)
    return (
        {"meter_dispatches": [r.model_dump(mode="json") for r in meter]},
        {"group_dispatches": [r.model_dump(mode="json") for r in group]},
    )


def _changed_only(notification: dict, key: str, hashes: dict[str, str]) -> dict:
    model = MeterDispatch if key == "meter_dispatches" else GroupDispatch
    out = []
    for recipient in notification[key]:
        kept = []
        for timeslot in recipient["timeslots"]:
            events = parse_notification({key: [{**recipient, "timeslots": [timeslot]}]})
            if hashes.get(events[0]["event_key"]) != events[0]["content_sha256"]:
                kept.append(timeslot)
        if kept:
            out.append(
                model.model_validate({**recipient, "timeslots": kept}).model_dump(mode="json")
            )
    return {key: out}


def reconcile(
    store: OpsStore,
    leap: LeapClient,
    client: SiteControllerClient,
    *,
    refresh_inventory: bool = True,
    run_id: str | None = None,
    retry_policy: RetryPolicy | None = DEFAULT_RETRY_POLICY,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    log_fn: Callable[[str], None] = log.info,
) -> dict:
    """Catch lost webhooks: search Leap's dispatch API, feed events that differ from the ops store into the
    inbox (``source='reconciliation'``) and process them like a webhook. Also refreshes the site inventory,
    then (unless ``retry_policy`` is None) re-sends every outstanding site command that is due and expires
    those whose schedule ended (see ``dispatch.outbox``)."""
    at = now()
    if refresh_inventory:
        sites = [site_record(m) for m in leap.search_meters()]
        noms = [
            nomination_record(n)
            for n in leap.search_nominations(start_time=at - timedelta(days=35))
        ]
        with store.session() as s:
            s.upsert_sites(sites, noms, at)
        log_fn(f"site inventory: {len(sites)} meters, {len(noms)} nominations")
    meter_note, group_note = search_notifications(leap, at)
    with store.session() as s:
        hashes = s.all_event_hashes()
        ids = []
        for note, key, level in (
            (meter_note, "meter_dispatches", "meter"),
            (group_note, "group_dispatches", "group"),
        ):
            changed = _changed_only(note, key, hashes)
            if changed[key]:
                body = json.dumps(
                    {"integration_test_notification": False, "communication_test": False, **changed}
                ).encode()
                ids.append(
                    s.insert_inbox(
                        received_at=at,
                        source="reconciliation",
                        level=level,
                        body=body,
                        headers={"x-vpp-source": "reconciliation"},
                    )
                )
    if ids:
        summary = process_inbox(
            store,
            client,
            after=min(ids) - 1,
            up_to=max(ids),
            run_id=run_id,
            retry_policy=retry_policy,
            now=now,
            log_fn=log_fn,
        )
        summary["changed_events"] = summary["new_events"] + summary["revisions"]
        return summary
    summary = retry_pass(
        store, client, retry_policy=retry_policy, run_id=run_id, now=now, log_fn=log_fn
    )
    return {**summary, "changed_events": 0}
