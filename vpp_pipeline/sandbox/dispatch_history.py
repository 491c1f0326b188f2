"""Synthetic dispatch history for a portfolio: meter-level and group-level events with revisions.

Each ``DispatchStream`` of ``catalog.DISPATCH_STREAMS`` fires on a share of local days, in the market's late
afternoon/evening, hour-aligned. An event day targets the program's ACTIVE, participating meters that hold a
nomination at that time: either a random subset of them (one meter-level event per meter and timeslot) or the
whole market group (one group-level event per timeslot). Later revisions change ``energy_kw`` or ``end_time``
(updates) or set ``cancelled: true``; CCA day-ahead awards may get brand-new ``hour-ahead`` timeslots.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .catalog import DISPATCH_STREAMS, PROGRAMS, REGION_TIMEZONES, DispatchStream
from .portfolio import DispatchEvent, DispatchRevision, Portfolio, new_uuid
from .timefmt import fmt_z_millis, parse_datetime


class _Index:
    """Lookups over a portfolio's enrollments, participation preferences and nominations."""

    def __init__(self, portfolio: Portfolio):
        self.active: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
        self.blocked: dict[str, list[tuple[datetime, datetime]]] = {}
        self.noms: dict[tuple[str, str], list[tuple[datetime, datetime | None, float]]] = {}
        for meter_id, enrollment in portfolio.enrollments.items():
            for entry in enrollment["program_enrollment"]:
                if entry["enrollment_status"] == "ACTIVE":
                    self.active.setdefault((meter_id, entry["program_identifier"]), []).append(
                        (
                            parse_datetime(entry["delivery_period_start_date_time"]),
                            parse_datetime(entry["delivery_period_end_date_time"]),
                        )
                    )
            for pref in enrollment["participation_preferences"]:
                if pref["participation_preference"] != "PARTICIPATE":
                    self.blocked.setdefault(meter_id, []).append(
                        (parse_datetime(pref["start_time"]), parse_datetime(pref["end_time"]))
                    )
        for nom in portfolio.nominations:
            end = parse_datetime(nom["end_time"]) if nom["end_time"] else None
            self.noms.setdefault((nom["meter_id"], nom["program_identifier"]), []).append(
                (parse_datetime(nom["start_time"]), end, nom["nomination_kw"])
            )

    def nomination_kw(self, meter_id: str, program: str, at: datetime) -> float | None:
        for start, end, kw in self.noms.get((meter_id, program), ()):
            if start <= at and (end is None or at < end):
                return kw
        return None

    def dispatchable(self, meter_id: str, program: str, at: datetime) -> bool:
        if not any(s <= at < e for s, e in self.active.get((meter_id, program), ())):
            return False
        if any(s <= at < e for s, e in self.blocked.get(meter_id, ())):
            return False
        return self.nomination_kw(meter_id, program, at) is not None


def _first_published(
    rng: random.Random, stream: DispatchStream, start: datetime, tz: ZoneInfo
) -> datetime:
    if "day-ahead" in stream.dispatch_event_types:
        # CAISO day-ahead awards are published around 13:00 local on the day before
        day_before = start.astimezone(tz).date() - timedelta(days=1)
        return datetime.combine(day_before, time(13, rng.randint(0, 45)), tzinfo=tz).astimezone(UTC)
    if "5m" in stream.dispatch_event_types:
        return start - timedelta(minutes=10)
    if "capacity-test" in stream.dispatch_event_types:
        return start - timedelta(days=rng.randint(2, 7), minutes=rng.randint(0, 600))
    return start - timedelta(hours=rng.choice((2, 3, 4, 6, 12, 20)), minutes=rng.randint(0, 50))


def _timeslot(
    level: str,
    event_id: str,
    start: datetime,
    end: datetime,
    energy_kw: float | None,
    nomination_kw: float,
    stream: DispatchStream,
    event_types: tuple[str, ...] | None = None,
) -> dict:
    timeslot = {
        ("meter_event_id" if level == "meter" else "market_group_event_id"): event_id,
        "start_time": fmt_z_millis(start),
        "end_time": fmt_z_millis(end),
        "energy_kw": energy_kw,
        "nomination_kw": nomination_kw,
        "cancelled": False,
        "programs": [stream.program],
        "priority": stream.priority,
        "is_voluntary": stream.is_voluntary,
        "performance_compensation_cap": stream.performance_compensation_cap,
        "dispatch_event_types": list(event_types or stream.dispatch_event_types),
    }
    if level == "meter":
        # Leap serializes communication_test on meter search timeslots only (JsonIgnore on the group one)
        timeslot["communication_test"] = False
    return timeslot


def _energy(rng: random.Random, stream: DispatchStream, nomination_kw: float) -> float | None:
    if stream.energy == "null":
        return None
    if stream.energy == "award":
        return max(0.01, round(nomination_kw * rng.uniform(0.5, 1.0), 2))
    return nomination_kw


def generate_dispatch_history(rng: random.Random, portfolio: Portfolio) -> None:
    """Fill ``portfolio.meter_events`` and ``portfolio.group_events`` (drawing from ``rng``)."""
    index = _Index(portfolio)
    group_by_program = {g["program_identifier"]: g for g in portfolio.market_groups.values()}
    start_bound, end_bound = portfolio.history_start, portfolio.history_end

    for stream in DISPATCH_STREAMS:
        program = PROGRAMS[stream.program]
        group = group_by_program[stream.program]
        members = group["meter_ids"]
        if not members:
            continue
        tz = ZoneInfo(REGION_TIMEZONES[program.transmission_region])
        day = start_bound.astimezone(tz).date()
        last_day = end_bound.astimezone(tz).date()
        while day <= last_day:
            current, day = day, day + timedelta(days=1)
            if rng.random() >= stream.daily_probability:
                continue
            start = datetime.combine(
                current, time(rng.choice(stream.start_hours)), tzinfo=tz
            ).astimezone(UTC)
            if stream.durations_minutes:
                duration = timedelta(minutes=rng.choice(stream.durations_minutes))
            else:
                duration = timedelta(hours=rng.choice(stream.durations_hours))
            if not (start_bound <= start < end_bound):
                continue
            eligible = [m for m in members if index.dispatchable(m, stream.program, start)]
            if not eligible:
                continue
            _event_day(rng, portfolio, index, stream, group, eligible, start, duration, tz)

    _ensure_variety(rng, portfolio)


def _event_day(rng, portfolio, index, stream, group, eligible, start, duration, tz) -> None:
    level = "group" if rng.random() < stream.group_share else "meter"
    if stream.hourly_timeslots:
        hours = int(duration.total_seconds() // 3600)
        slots = [(start + timedelta(hours=h), start + timedelta(hours=h + 1)) for h in range(hours)]
    else:
        slots = [(start, start + duration)]
    if level == "meter":
        share = (
            rng.uniform(0.3, 0.6)
            if "capacity-test" in stream.dispatch_event_types
            else rng.uniform(0.4, 0.9)
        )
        k = max(1, round(len(eligible) * share))
        chosen = set(rng.sample(eligible, k))
        recipients = [(m, [m]) for m in eligible if m in chosen]
    else:
        recipients = [(group["market_group_id"], list(eligible))]

    published = _first_published(rng, stream, start, tz)
    cancelled = rng.random() < stream.cancel_probability
    updated = rng.random() < stream.update_probability
    hour_ahead = (not cancelled) and rng.random() < stream.hour_ahead_probability

    day_events: list[DispatchEvent] = []
    for recipient_id, meter_ids in recipients:
        nomination = round(sum(index.nomination_kw(m, stream.program, start) for m in meter_ids), 2)
        for slot_start, slot_end in slots:
            event = DispatchEvent(
                level, new_uuid(rng), recipient_id, stream.program, stream.name, meter_ids
            )
            timeslot = _timeslot(
                level,
                event.event_id,
                slot_start,
                slot_end,
                _energy(rng, stream, nomination),
                nomination,
                stream,
            )
            event.revisions.append(DispatchRevision(1, published, timeslot))
            day_events.append(event)

    if updated:
        for event in day_events:
            if rng.random() < 0.7:
                _apply_update(rng, event, stream)
    if cancelled:
        when = start - timedelta(hours=rng.randint(1, 5))
        for event in day_events:
            event.add_revision(
                max(when, event.revisions[-1].published_at + timedelta(minutes=10)), cancelled=True
            )
    if hour_ahead:
        new_start = slots[-1][1]
        new_end = new_start + timedelta(hours=1)
        extra = recipients if level == "group" else [r for r in recipients if rng.random() < 0.5]
        for recipient_id, meter_ids in extra:
            nomination = round(
                sum(index.nomination_kw(m, stream.program, start) for m in meter_ids), 2
            )
            event = DispatchEvent(
                level, new_uuid(rng), recipient_id, stream.program, stream.name, meter_ids
            )
            timeslot = _timeslot(
                level,
                event.event_id,
                new_start,
                new_end,
                _energy(rng, stream, nomination),
                nomination,
                stream,
                ("hour-ahead",),
            )
            event.revisions.append(DispatchRevision(1, new_start - timedelta(minutes=75), timeslot))
            day_events.append(event)

    portfolio.events(level).extend(day_events)


def _apply_update(rng: random.Random, event: DispatchEvent, stream: DispatchStream) -> None:
    latest = event.latest
    start = parse_datetime(latest["start_time"])
    end = parse_datetime(latest["end_time"])
    when = max(
        start - timedelta(minutes=75), event.revisions[-1].published_at + timedelta(minutes=5)
    )
    nomination = latest["nomination_kw"]
    change_energy = latest["energy_kw"] is not None and (
        stream.hourly_timeslots or rng.random() < 0.5
    )
    if change_energy:
        factor = rng.uniform(0.6, 1.15) if stream.energy == "award" else rng.uniform(0.5, 0.9)
        energy = max(0.01, round(min(nomination, latest["energy_kw"] * factor), 2))
        if energy == latest["energy_kw"]:
            energy = max(0.01, round(energy * 0.8, 2))
        event.add_revision(when, energy_kw=energy)
    elif end - start > timedelta(hours=1) and rng.random() < 0.4:
        event.add_revision(when, end_time=fmt_z_millis(end - timedelta(hours=1)))
    else:
        event.add_revision(when, end_time=fmt_z_millis(end + timedelta(hours=1)))


def _ensure_variety(rng: random.Random, portfolio: Portfolio) -> None:
    """Make sure the meter-level history holds at least one cancellation and one update, whatever the seed."""
    events = [
        e for e in portfolio.meter_events if len(e.revisions) == 1 and not e.latest["cancelled"]
    ]
    if len(events) < 2:
        return
    if not any(e.latest["cancelled"] for e in portfolio.meter_events):
        event = events.pop(0)
        when = max(
            event.start_time - timedelta(hours=2),
            event.revisions[-1].published_at + timedelta(minutes=10),
        )
        event.add_revision(when, cancelled=True)
    if not any(len(e.revisions) > 1 and not e.latest["cancelled"] for e in portfolio.meter_events):
        event = events[-1]
        stream = next(s for s in DISPATCH_STREAMS if s.name == event.stream)
        _apply_update(rng, event, stream)
