"""Frames of the ops store's events and actions for the DuckDB mirror (``sql/ops_dispatch_events.sql``,
``sql/dispatch_actions.sql``). Small: one row per event and meter, one per site command."""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl

from vpp_pipeline.dispatch.planning import split_event
from vpp_pipeline.dispatch.quarantine import event_problem
from vpp_pipeline.measurement.dispatch_frames import SLOT_SCHEMA
from vpp_pipeline.ops import OpsStore

#: One row per event and meter, with the columns of ``dispatch_events`` (the analysis table).
EVENT_SCHEMA = {
    "meter_event_id": pl.String,
    "market_group_event_id": pl.String,
    "market_group_id": pl.String,
    "meter_id": pl.String,
    **SLOT_SCHEMA,
    "source": pl.String,
}

ACTION_SCHEMA = {
    "action_id": pl.Int64,
    "event_key": pl.String,
    "meter_id": pl.String,
    "schedule_id": pl.String,
    "command": pl.String,
    "target_kw": pl.Float64,
    "start_time": pl.Datetime("us", "UTC"),
    "end_time": pl.Datetime("us", "UTC"),
    "dry_run": pl.Boolean,
    "revision": pl.Int32,
    "reason_code": pl.String,
    "retry_of": pl.Int64,
    "retry_round": pl.Int64,
    "status": pl.String,
    "attempts": pl.Int32,
    "http_status": pl.Int32,
    "error": pl.String,
    "received_at": pl.Datetime("us", "UTC"),
    "planned_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"),
    "attempt_log": pl.String,
}


def _ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def frames(store: OpsStore) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events, actions) frames with the mirror's column names and types."""
    with store.session(write=False) as s:
        event_rows = s.events()
        action_rows = s.actions()
        attempt_rows = s.attempts()
        meters = {m for r in event_rows for m in json.loads(r["meter_ids"])}
        sites = s.sites(meters)
    events = []
    for row in event_rows:
        if event_problem(row) is not None:
            continue  # quarantined (docs/dispatch-ordering.md): not planned, so not mirrored either
        slot = json.loads(row["timeslot"])
        event = {
            "event_key": row["event_key"],
            "level": row["level"],
            "event_id": row["event_id"],
            "meter_ids": json.loads(row["meter_ids"]),
            "timeslot": slot,
            "integration_test": bool(row["integration_test"]),
        }
        common = {
            "programs": slot["programs"],
            "start_time": _ts(slot["start_time"]),
            "end_time": _ts(slot["end_time"]),
            "priority": slot["priority"],
            "is_voluntary": slot["is_voluntary"],
            "performance_compensation_cap": slot["performance_compensation_cap"],
            "dispatch_event_types": slot["dispatch_event_types"],
            "cancelled": slot["cancelled"],
            "is_test": bool(row["integration_test"] or row["communication_test"]),
            "revision": row["revision"],
            "source": row["source"],
            "updated_at": _ts(row["updated_at"]),
        }
        if row["level"] == "meter":
            events.append(
                {
                    "meter_event_id": row["event_id"],
                    "market_group_event_id": None,
                    "market_group_id": None,
                    "meter_id": row["recipient_id"],
                    "energy_kw": slot["energy_kw"],
                    "nomination_kw": slot["nomination_kw"],
                    **common,
                }
            )
            continue
        shares, unknown = split_event(event, sites)
        parts = [(sh.meter_id, sh.energy_kw, sh.nomination_kw) for sh in shares]
        parts += [(m, None, None) for m in unknown]
        for meter_id, energy_kw, nomination_kw in parts:
            events.append(
                {
                    "meter_event_id": f"{row['event_id']}:{meter_id}",
                    "market_group_event_id": row["event_id"],
                    "market_group_id": row["recipient_id"],
                    "meter_id": meter_id,
                    "energy_kw": energy_kw,
                    "nomination_kw": nomination_kw,
                    **common,
                }
            )
    attempts: dict[int, list[dict]] = {}
    for a in attempt_rows:
        attempts.setdefault(a["action_id"], []).append(
            {
                k: a[k]
                for k in ("attempt", "started_at", "finished_at", "http_status", "outcome", "error")
            }
        )
    actions = []
    for row in action_rows:
        try:
            payload = json.loads(row["payload"]) if row["payload"] else {}
        except ValueError:
            payload = {}  # an unreadable stored payload: the command row is still mirrored
        actions.append(
            {
                "action_id": row["action_id"],
                "event_key": row["event_key"],
                "meter_id": row["meter_id"],
                "schedule_id": row["schedule_id"],
                "command": row["command"],
                "target_kw": payload.get("target_kw"),
                "start_time": _ts(payload.get("start_time")),
                "end_time": _ts(payload.get("end_time")),
                "dry_run": payload.get("dry_run"),
                "revision": row["revision"],
                "reason_code": row["reason_code"],
                "retry_of": row["retry_of"],
                "retry_round": row["retry_round"],
                "status": row["status"],
                "attempts": row["attempts"],
                "http_status": row["http_status"],
                "error": row["error"],
                "received_at": _ts(row["received_at"]),
                "planned_at": _ts(row["planned_at"]),
                "finished_at": _ts(row["finished_at"]),
                "attempt_log": json.dumps(attempts.get(row["action_id"], [])),
            }
        )
    return (
        pl.DataFrame(events, schema=EVENT_SCHEMA, orient="row"),
        pl.DataFrame(actions, schema=ACTION_SCHEMA, orient="row"),
    )
