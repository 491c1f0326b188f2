"""Dispatch planning: dispatch events -> the schedules each site controller should hold (pure; no I/O).

Rules (docs/dispatch.md, Leap's dispatch docs):

- a meter's share of a group event is proportional to its nomination in force at the event start for the
  event's programs (equal shares when no member has one); unknown meters get no share and are reported;
- target kW = the share of ``energy_kw``; ``energy_kw: null`` = the site's maximum: the larger of its
  battery power and its nomination (kW), or ``None`` (the contract's "maximum") when neither is known;
  ``up-to-nomination`` caps the target at the share of ``nomination_kw`` (no pay beyond it);
- overlapping events on one meter: the lower ``priority`` number wins the overlap (ties: committed before
  voluntary, then the earlier start, then the event id); the loser keeps only the parts of its window that
  no winner covers (each part is its own schedule: ``<event_id>``, ``<event_id>.2``, ...);
- integration-test events (``dry_run``) never take time from real events, only from each other;
- cancelled events and windows that have ended hold no schedule.

Times are UTC datetimes; powers in kW.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from vpp_pipeline.ops import SiteInfo

KW_DECIMALS = 3


@dataclass(frozen=True)
class Schedule:
    """One schedule for one site: ``PUT /v1/sites/{meter_id}/schedules/{schedule_id}`` with ``payload``."""

    meter_id: str
    schedule_id: str
    event_key: str
    payload: dict

    @property
    def payload_sha256(self) -> str:
        return payload_hash(self.payload)


@dataclass(frozen=True)
class Command:
    """A site command: ``put`` (with payload) or ``delete``; ``reason_code`` says why."""

    command: str
    meter_id: str
    schedule_id: str
    event_key: str
    payload: dict | None
    reason_code: str
    revision: int


@dataclass
class MeterShare:
    """One meter's part of one event (kW values are this meter's share)."""

    event: dict
    meter_id: str
    energy_kw: float | None
    nomination_kw: float | None
    target_kw: float | None
    start: datetime
    end: datetime
    problems: list[str] = field(default_factory=list)


def payload_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, KW_DECIMALS)


def split_event(event: dict, sites: dict[str, SiteInfo]) -> tuple[list[MeterShare], list[str]]:
    """This event's per-meter shares, and the meter ids it names that the inventory does not know."""
    slot = event["timeslot"]
    start, end = _utc(slot["start_time"]), _utc(slot["end_time"])
    meters = event["meter_ids"]
    unknown = [m for m in meters if m not in sites]
    known = [m for m in meters if m in sites]
    if event["level"] == "meter":
        weights = {m: 1.0 for m in known}
    else:
        noms = {m: sites[m].nomination_kw(slot["programs"], start) or 0.0 for m in known}
        total = sum(noms.values())
        if total > 0:
            weights = {m: noms[m] / total for m in known}
        else:
            weights = {m: 1.0 / len(known) for m in known} if known else {}
    shares = []
    for meter_id in known:
        weight = weights[meter_id]
        energy = None if slot["energy_kw"] is None else slot["energy_kw"] * weight
        nomination = None if slot["nomination_kw"] is None else slot["nomination_kw"] * weight
        shares.append(
            MeterShare(
                event=event,
                meter_id=meter_id,
                energy_kw=_round(energy),
                nomination_kw=_round(nomination),
                target_kw=_round(target_kw(slot, energy, nomination, sites[meter_id], start)),
                start=start,
                end=end,
            )
        )
    return shares, unknown


def site_maximum_kw(site: SiteInfo, programs: list[str], at: datetime) -> float | None:
    """The most a site can deliver (kW): its battery power or its nomination, whichever is larger."""
    candidates = [
        v for v in (site.battery_power_kw, site.nomination_kw(programs, at)) if v is not None
    ]
    return max(candidates) if candidates else None


def target_kw(
    slot: dict,
    energy_kw: float | None,
    nomination_kw: float | None,
    site: SiteInfo,
    start: datetime,
) -> float | None:
    """The kW the site is asked to deliver (``None`` = its maximum, per the site-controller contract)."""
    if energy_kw is None:
        target = site_maximum_kw(site, slot["programs"], start)
        if target is None:
            target = nomination_kw
    else:
        target = energy_kw
    if (
        slot["performance_compensation_cap"] == "up-to-nomination"
        and nomination_kw is not None
        and (target is None or target > nomination_kw)
    ):
        # no pay beyond the nomination: keep the rest of the asset for other events
        target = nomination_kw
    return target


def _rank(share: MeterShare) -> tuple:
    slot = share.event["timeslot"]
    return (slot["priority"], slot["is_voluntary"], share.start, share.event["event_id"])


def _subtract(
    window: tuple[datetime, datetime], taken: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    pieces = [window]
    for t_start, t_end in taken:
        next_pieces = []
        for p_start, p_end in pieces:
            if t_end <= p_start or t_start >= p_end:
                next_pieces.append((p_start, p_end))
                continue
            if p_start < t_start:
                next_pieces.append((p_start, t_start))
            if t_end < p_end:
                next_pieces.append((t_end, p_end))
        pieces = next_pieces
    return pieces


def plan_meter(shares: list[MeterShare], now: datetime) -> list[Schedule]:
    """The schedules one meter's site controller should hold, given every event share on that meter."""
    schedules: list[Schedule] = []
    for dry_run in (False, True):
        taken: list[tuple[datetime, datetime]] = []
        candidates = [
            s
            for s in shares
            if not s.event["timeslot"]["cancelled"] and s.event["integration_test"] is dry_run
        ]
        for share in sorted(candidates, key=_rank):
            pieces = _subtract((share.start, share.end), taken)
            taken.append((share.start, share.end))
            pieces = [p for p in pieces if p[1] > now]
            for index, (p_start, p_end) in enumerate(pieces, start=1):
                schedule_id = share.event["event_id"] + ("" if index == 1 else f".{index}")
                schedules.append(
                    Schedule(
                        meter_id=share.meter_id,
                        schedule_id=schedule_id,
                        event_key=share.event["event_key"],
                        payload=schedule_payload(share, p_start, p_end),
                    )
                )
    return schedules


def schedule_payload(share: MeterShare, start: datetime, end: datetime) -> dict:
    """The site-controller contract body (docs/site-controller.md)."""
    slot = share.event["timeslot"]
    return {
        "start_time": _z(start),
        "end_time": _z(end),
        "target_kw": share.target_kw,
        "priority": slot["priority"],
        "is_voluntary": slot["is_voluntary"],
        "performance_compensation_cap": slot["performance_compensation_cap"],
        "dry_run": bool(share.event["integration_test"]),
        "revision": int(share.event.get("revision", 1)),
    }


def _z(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def diff_schedules(
    desired: list[Schedule],
    current: list[dict],
    events: dict[str, dict],
    now: datetime,
) -> list[Command]:
    """Commands that move the site controllers from ``current`` (site_schedules rows: meter_id,
    schedule_id, event_key, payload_sha256, state, payload JSON) to ``desired``.

    Unchanged schedules give no command (so duplicates and retried deliveries send nothing); a schedule
    that is no longer wanted and has not ended is deleted.
    """
    held = {(r["meter_id"], r["schedule_id"]): r for r in current if r["state"] == "active"}
    commands: list[Command] = []
    wanted = set()
    for schedule in desired:
        key = (schedule.meter_id, schedule.schedule_id)
        wanted.add(key)
        row = held.get(key)
        revision = int(events[schedule.event_key].get("revision", 1))
        if row is not None and row["payload_sha256"] == schedule.payload_sha256:
            continue
        reason = "NEW_SCHEDULE" if row is None else "SCHEDULE_CHANGED"
        commands.append(
            Command(
                "put",
                schedule.meter_id,
                schedule.schedule_id,
                schedule.event_key,
                schedule.payload,
                reason,
                revision,
            )
        )
    for key, row in held.items():
        if key in wanted:
            continue
        end = _utc_z(json.loads(row["payload"])["end_time"])
        if end <= now:
            continue
        event = events.get(row["event_key"])
        cancelled = event is not None and event["timeslot"]["cancelled"]
        commands.append(
            Command(
                "delete",
                row["meter_id"],
                row["schedule_id"],
                row["event_key"],
                None,
                "EVENT_CANCELLED" if cancelled else "SCHEDULE_WITHDRAWN",
                int(event.get("revision", 1)) if event else 0,
            )
        )
    return commands


def _utc_z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
