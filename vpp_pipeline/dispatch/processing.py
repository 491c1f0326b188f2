"""Dispatch processing: inbox rows -> event revisions -> site commands -> delivery (ops store only).

``process_inbox`` is what ``dispatch_job`` runs; ``reconcile`` is what the reconciliation schedule runs.
Neither opens DuckDB. Planning and the writes it causes happen in one ``BEGIN IMMEDIATE`` transaction
(:func:`apply_inbox`), so concurrent runs (or 50 copies of one delivery) serialize: the second run sees the
first one's schedules and plans nothing. Delivery happens after the commit, in parallel across meters (in
order within a meter). Both then re-send every outstanding command (failed after retries, or stranded by a
crashed run) through ``dispatch.outbox``, so a failed command does not wait for the next event.

Order and isolation (docs/dispatch-ordering.md): a delivery whose content the event already had is a
duplicate or a stale re-delivery; new content for a known event is checked against Leap's dispatch search
(``dispatch.ordering``); a verified ``webhook-id`` is applied once. A row, event, meter or command that
cannot be processed is quarantined (``dispatch.quarantine``) and the rest of the batch goes on. The
reconciliation takes a group event's member list from Leap's search (a member change is a revision).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from vpp_pipeline.dispatch.delivery import SiteControllerClient
from vpp_pipeline.dispatch.notifications import NotificationError, parse_notification
from vpp_pipeline.dispatch.ordering import (
    APPLY,
    SIGNATURE_MARK,
    STALE,
    LeapLookup,
    LeapVerdicts,
    ask_leap,
    decide,
)
from vpp_pipeline.dispatch.outbox import (
    DEFAULT_RETRY_POLICY,
    DELIVERED,
    FAILED,
    QUARANTINED,
    SUPERSEDED,
    RetryPolicy,
    deliver_actions,
    redeliver_outstanding,
)
from vpp_pipeline.dispatch.planning import diff_schedules, plan_meter, split_event
from vpp_pipeline.dispatch.quarantine import (
    APPLY_FAILED,
    NOT_A_NOTIFICATION,
    PLAN_FAILED,
    describe,
    event_problem,
)
from vpp_pipeline.leap import LeapClient
from vpp_pipeline.leap.models import GroupDispatch, MeterDispatch
from vpp_pipeline.ops import OpsSession, OpsStore, iso
from vpp_pipeline.ops.session import safe_text

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


def _parse_row(row) -> list[dict]:
    """The normalized events of an inbox row; raises ValueError / NotificationError (with the
    receiver's reason codes, so a row the door would now refuse is named the same way)."""
    try:
        # lenient on purpose: parse_notification then names the field that breaks Leap's bounds
        payload = json.loads(row.body)
    except RecursionError:
        raise NotificationError(
            "JSON_TOO_DEEP", "nesting exceeds the JSON parser's limit"
        ) from None
    return parse_notification(payload)


def _parse_rows(rows) -> tuple[list[tuple], list[tuple]]:
    parsed, broken = [], []
    for row in rows:
        try:
            parsed.append((row, _parse_row(row)))
        except (ValueError, NotificationError, RecursionError) as exc:
            broken.append((row, exc))
    return parsed, broken


def _ordering_candidates(s: OpsSession, parsed: list[tuple]) -> list[dict]:
    """Webhook events whose content may be out of order: a known event with other content in the store,
    or an event that comes with more than one content in this batch. Each gets ``search_starts``."""
    contents: dict[str, set[str]] = {}
    first: dict[str, dict] = {}
    starts: dict[str, set[datetime]] = {}
    for row, events in parsed:
        if row.source == "reconciliation":
            continue
        for event in events:
            if event_problem(event) is not None:
                continue
            key = event["event_key"]
            contents.setdefault(key, set()).add(event["content_sha256"])
            first.setdefault(key, event)
            starts.setdefault(key, set()).add(
                datetime.fromisoformat(event["timeslot"]["start_time"])
            )
    candidates = []
    held_rows = s.events_by_key(contents)
    for key, hashes in contents.items():
        stored = held_rows.get(key)
        if stored is not None and (hashes - {stored["content_sha256"]}):
            held = json.loads(stored["timeslot"])
            starts[key].add(datetime.fromisoformat(held["start_time"]))
        elif len(hashes) < 2:
            continue
        candidates.append({**first[key], "search_starts": sorted(starts[key])})
    return candidates


def apply_inbox(
    store: OpsStore,
    *,
    after: int = 0,
    up_to: int | None = None,
    fetch_sites: SiteFetcher | None = None,
    leap_lookup: LeapLookup | None = None,
    run_id: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    log_fn: Callable[[str], None] = log.info,
) -> tuple[dict, list[dict]]:
    """Apply the unprocessed inbox rows in ``(after, up_to]`` and plan the site commands, committed
    together (status ``planned``), without delivering them. Returns the counts (see :func:`process_inbox`)
    and the planned actions (dicts for :func:`~vpp_pipeline.dispatch.outbox.deliver_actions`).

    ``leap_lookup`` (Leap's dispatch search by event id) decides the order of out-of-order contents
    (``dispatch.ordering``); without it, content seen before is stale and new content is applied."""
    # 1. Unknown meters and out-of-order contents are looked up outside the write transaction: an HTTP
    #    call must never hold the ops store's write lock (the receiver would queue behind it).
    with store.session(write=False) as s:
        peek = _parse_rows(s.inbox_rows(after, up_to, unprocessed=True))[0]
        mentioned = {
            m
            for _, events in peek
            for e in events
            if event_problem(e) is None
            for m in e["meter_ids"]
        }
        missing = sorted(mentioned - set(s.sites(mentioned)))
        candidates = _ordering_candidates(s, peek)
    if missing and fetch_sites is not None:
        try:
            refresh_sites(store, fetch_sites, missing)
        except Exception as exc:  # the inventory lookup is best effort; unknown meters are reported
            log_fn(f"site inventory lookup failed ({type(exc).__name__}: {exc}); continuing")
    verdicts = ask_leap(leap_lookup, candidates)
    if not verdicts.reachable:
        log_fn(
            f"Leap's dispatch search failed ({verdicts.error}); the held state of"
            f" {len(verdicts.asked)} event(s) stands until the reconciliation"
        )

    summary = {
        "rows": 0,
        "new_events": 0,
        "revisions": 0,
        "duplicates": 0,
        "stale": 0,
        "held": 0,
        "replays": 0,
        "quarantined": 0,
        "commands": 0,
        "delivered": 0,
        "failed": 0,
        "skipped": 0,
        "unknown_meter_ids": [],
    }
    with store.session() as s:
        rows = s.inbox_rows(after, up_to, unprocessed=True)
        at = now()
        touched: set[str] = set()
        received: dict[str, str] = {}
        for row in rows:
            # one savepoint per row: a row that raises is undone and quarantined, the batch goes on
            try:
                with s.savepoint("inbox_row"):
                    _apply_row(s, row, verdicts, at, run_id, summary, touched, received, log_fn)
            except Exception as exc:
                _quarantine(
                    s, summary, log_fn, "inbox", APPLY_FAILED, describe(exc), at, run_id,
                    inbox_id=row.inbox_id,
                )  # fmt: skip
        s.mark_processed([r.inbox_id for r in rows], run_id, at)
        summary["rows"] = len(rows)
        actions = _plan(s, touched, received, at, run_id, summary, log_fn)
    summary["commands"] = len(actions)
    return summary, actions


def _quarantine(s: OpsSession, summary: dict, log_fn, kind, reason, detail, at, run_id, **ref):
    if s.quarantine(kind, reason, detail, at, run_id=run_id, **ref) is not None:
        summary["quarantined"] += 1
        where = ", ".join(f"{k} {safe_text(str(v))}" for k, v in ref.items() if v is not None)
        log_fn(f"QUARANTINED {kind} ({where}): {reason}: {safe_text(detail)}")


def _apply_row(
    s: OpsSession,
    row,
    verdicts: LeapVerdicts,
    at: datetime,
    run_id: str | None,
    summary: dict,
    touched: set[str],
    received: dict[str, str],
    log_fn,
) -> None:
    try:
        events = _parse_row(row)
    except (ValueError, NotificationError, RecursionError) as exc:
        # the receiver only stores valid notifications; a broken row means an old store or a manual insert
        reason = exc.reason_code if isinstance(exc, NotificationError) else NOT_A_NOTIFICATION
        _quarantine(
            s, summary, log_fn, "inbox", reason, describe(exc), at, run_id, inbox_id=row.inbox_id,
        )  # fmt: skip
        return
    webhook_id = row.headers.get("webhook-id")
    if (
        webhook_id
        and row.headers.get(SIGNATURE_MARK) == "verified"
        and not s.claim_webhook_id(safe_text(webhook_id), row.inbox_id, at)
    ):
        summary["replays"] += 1
        return
    for event in events:
        problem = event_problem(event)
        if problem is not None:
            _quarantine(
                s, summary, log_fn, "event", problem[0], problem[1], at, run_id,
                inbox_id=row.inbox_id, event_key=event["event_key"],
            )  # fmt: skip
            continue
        outcome, meters = _apply_event(s, event, row, at, verdicts, log_fn)
        summary[outcome] += 1
        if outcome in ("new_events", "revisions"):
            touched.update(meters)
            received[event["event_key"]] = row.received_at


def process_inbox(
    store: OpsStore,
    client: SiteControllerClient,
    *,
    after: int = 0,
    up_to: int | None = None,
    fetch_sites: SiteFetcher | None = None,
    leap_lookup: LeapLookup | None = None,
    run_id: str | None = None,
    retry_policy: RetryPolicy | None = DEFAULT_RETRY_POLICY,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    log_fn: Callable[[str], None] = log.info,
) -> dict:
    """Apply the unprocessed inbox rows in ``(after, up_to]``, deliver the resulting commands, then (unless
    ``retry_policy`` is None) re-send every outstanding command that is due (any meter).

    Returns counts: ``rows``, ``new_events``, ``revisions``, ``duplicates``, ``stale`` (older than the
    held content), ``held`` (order undecided: Leap unreachable), ``replays`` (a verified ``webhook-id``
    seen before), ``quarantined``, ``commands``, ``delivered``, ``failed``, ``superseded``, ``skipped``,
    ``unknown_meter_ids``, and with retries the counts of
    :func:`~vpp_pipeline.dispatch.outbox.redeliver_outstanding`.
    """
    summary, actions = apply_inbox(
        store,
        after=after,
        up_to=up_to,
        fetch_sites=fetch_sites,
        leap_lookup=leap_lookup,
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
        summary["quarantined"] += statuses.count(QUARANTINED)
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


def _same_content(current: dict, event: dict, row) -> bool:
    if current["content_sha256"] != event["content_sha256"]:
        return False
    if row.source == "reconciliation" and event["level"] == "group":
        # Leap's search is the source of a group's member list: a member change is a revision
        return json.loads(current["meter_ids"]) == event["meter_ids"]
    return True


def _apply_event(
    s: OpsSession, event: dict, row, at: datetime, verdicts: LeapVerdicts, log_fn=log.info
) -> tuple[str, set[str]]:
    """Store a received event. Returns the outcome: ``new_events``, ``revisions``, ``duplicates`` (the
    held content), ``stale`` (older than the held content) or ``held`` (order unknown while Leap cannot
    be reached); and for a stored revision the meters it named before and after (a group's member list
    can change), to re-plan."""
    key = event["event_key"]
    current = s.event(key)
    if current is not None and _same_content(current, event, row):
        return "duplicates", set()
    source = row.source
    if current is not None and row.source == "reconciliation":
        # the search's content is Leap's; a webhook stored after this search ran is newer still
        if current["inbox_id"] > row.inbox_id:
            return "stale", set()
    elif current is not None:
        verdict, chosen, why = decide(
            event,
            current,
            seen_before=s.has_revision_content(key, event["content_sha256"]),
            verdicts=verdicts,
            arrived_after_current=row.inbox_id > current["inbox_id"],
        )
        if verdict != APPLY:
            log_fn(
                f"{verdict.upper()} {key} from inbox row {row.inbox_id} ({why}): revision"
                f" {current['revision']} stands"
            )
            return ("stale" if verdict == STALE else "held"), set()
        if chosen is not event:
            event, source = chosen, "leap_search"
            if _same_content(current, event, row):
                return "duplicates", set()
    revision = 1 if current is None else current["revision"] + 1
    s.save_event(
        {
            "event_key": key,
            "level": event["level"],
            "event_id": event["event_id"],
            "recipient_id": event["recipient_id"],
            "meter_ids": json.dumps(event["meter_ids"]),
            "timeslot": json.dumps(event["timeslot"], sort_keys=True),
            "content_sha256": event["content_sha256"],
            "revision": revision,
            "integration_test": int(event["integration_test"]),
            "communication_test": int(event["communication_test"]),
            "source": source,
            "inbox_id": row.inbox_id,
            "first_received_at": current["first_received_at"] if current else row.received_at,
            "received_at": row.received_at,
            "updated_at": iso(at),
        }
    )
    meters = set(event["meter_ids"])
    if current is not None:
        meters.update(json.loads(current["meter_ids"]))
    return ("new_events" if current is None else "revisions"), meters


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
    log_fn: Callable[[str], None] = log.info,
) -> list[dict]:
    """Plan the touched meters; write the commands and the new desired schedules; return the commands.

    A stored event that cannot be planned (``dispatch.quarantine``) is quarantined and left out, and the
    schedules it holds are neither re-sent nor withdrawn; a meter whose planning raises is quarantined
    and its schedules stay as they are. The other events and meters are planned as usual."""
    if not touched:
        return []
    events: dict[str, dict] = {}
    blocked: set[str] = set()
    for row in s.events_touching_meters(touched):
        try:
            problem = event_problem(row)
            if problem is None:
                events[row["event_key"]] = _event_from_row(row)
                continue
        except Exception as exc:
            problem = (PLAN_FAILED, describe(exc))
        blocked.add(row["event_key"])
        _quarantine(
            s, summary, log_fn, "event", problem[0], problem[1], at, run_id,
            inbox_id=row["inbox_id"], event_key=row["event_key"],
        )  # fmt: skip
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
    desired: list = []
    for meter_id in list(planned_meters):
        try:
            desired.extend(plan_meter(shares_by_meter.get(meter_id, []), at))
        except Exception as exc:
            planned_meters.remove(meter_id)
            _quarantine(
                s, summary, log_fn, "meter", PLAN_FAILED, describe(exc), at, run_id,
                event_key=f"meter:{meter_id}",
            )  # fmt: skip
    current = [r for r in s.schedules_for_meters(planned_meters) if r["event_key"] not in blocked]
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


def _changed_only(notification: dict, key: str, held: dict[str, tuple[str, list[str]]]) -> dict:
    """The timeslots whose content, or (group events) member list, differs from the ops store's."""
    model = MeterDispatch if key == "meter_dispatches" else GroupDispatch
    out = []
    for recipient in notification[key]:
        kept = []
        for timeslot in recipient["timeslots"]:
            (event,) = parse_notification({key: [{**recipient, "timeslots": [timeslot]}]})
            if held.get(event["event_key"]) != (event["content_sha256"], event["meter_ids"]):
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
        held = {
            e["event_key"]: (e["content_sha256"], json.loads(e["meter_ids"])) for e in s.events()
        }
        ids = []
        for note, key, level in (
            (meter_note, "meter_dispatches", "meter"),
            (group_note, "group_dispatches", "group"),
        ):
            changed = _changed_only(note, key, held)
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
