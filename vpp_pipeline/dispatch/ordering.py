"""Which content of a dispatch event to hold when deliveries arrive out of order (docs/dispatch-ordering.md).

Leap retries a delivery every minute for 50 minutes and does not guarantee the order of two deliveries, and a
delivery carries no revision number. So the ops store cannot tell from a body alone whether it is newer than
the content it holds. The rules:

- content equal to the held content: a duplicate;
- content equal to an *earlier* revision: a stale re-delivery, unless Leap's dispatch search for that event
  shows exactly this content (then it is a genuine update back to an earlier value, and is applied);
- content never seen for a known event: Leap's dispatch search decides. Leap shows this content: apply it;
  Leap shows the held content: stale; Leap shows a third content: apply Leap's;
- Leap cannot be reached: the held content stands (the reconciliation schedule brings Leap's state later);
- Leap does not list the event (integration tests, events outside its search) or the id is not a uuid:
  content seen before is stale, content never seen is applied (the latest arrival wins).

The search is one call per level and run, filtered by event id, made outside the ops store's write lock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vpp_pipeline.dispatch.notifications import parse_notification
from vpp_pipeline.leap import LeapClient

#: How far around an event's start the event-id search looks (Leap matches on the latest start time).
SEARCH_MARGIN = timedelta(days=7)

#: the inbox header the receiver sets on a body whose Standard Webhooks signature it verified (a client's own
#: ``x-vpp-*`` headers are never stored), so ``webhook-id`` dedup applies to verified deliveries only
SIGNATURE_MARK = "x-vpp-signature"

APPLY = "apply"
STALE = "stale"
HELD = "held"

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class LeapVerdicts:
    """What Leap's dispatch search said about the events it was asked about.

    ``asked``: event keys searched; ``reachable``: False when the search failed (then ``found`` is empty);
    ``found``: event key -> ``(level, record)``, the search's JSON record for that event alone."""

    asked: frozenset[str] = frozenset()
    reachable: bool = True
    found: dict[str, tuple[str, dict]] = field(default_factory=dict)
    error: str | None = None

    def leap_event(self, key: str, integration_test: bool) -> dict | None:
        """Leap's current content of ``key`` as a normalized event (None when Leap does not list it)."""
        if key not in self.found:
            return None
        level, record = self.found[key]
        name = "meter_dispatches" if level == "meter" else "group_dispatches"
        events = parse_notification(
            {"integration_test_notification": integration_test, name: [record]}
        )
        return next(e for e in events if e["event_key"] == key)


#: candidate events (normalized, with ``search_starts``: the UTC start times to search around) ->
#: Leap's records per event key; raises when Leap cannot be reached
LeapLookup = Callable[[list[dict]], dict[str, tuple[str, dict]]]


def searchable(event: dict) -> bool:
    """Leap's search filters by uuid event ids only."""
    return bool(_UUID.match(event["event_id"]))


def leap_event_lookup(client: LeapClient) -> LeapLookup:
    """A :data:`LeapLookup` over Leap's meter and group dispatch search (real-time and voluntary events
    included), one event-id-filtered search per level and merged window."""

    def lookup(candidates: list[dict]) -> dict[str, tuple[str, dict]]:
        found: dict[str, tuple[str, dict]] = {}
        for level in ("meter", "group"):
            wanted = [c for c in candidates if c["level"] == level]
            if not wanted:
                continue
            ids = sorted({c["event_id"] for c in wanted})
            id_filter = "meter_event_ids" if level == "meter" else "market_group_event_ids"
            search = (
                client.search_meter_dispatches
                if level == "meter"
                else client.search_group_dispatches
            )
            for start, end in _windows(s for c in wanted for s in c["search_starts"]):
                records = search(
                    start,
                    end,
                    **{id_filter: ids},
                    exclude_real_time_events=False,
                    exclude_voluntary_events=False,
                )
                for record in records:
                    data = record.model_dump(mode="json")
                    for timeslot in data["timeslots"]:
                        event_id = timeslot.get("meter_event_id") or timeslot.get(
                            "market_group_event_id"
                        )
                        key = f"{level}:{str(event_id).lower()}"
                        found[key] = (level, {**data, "timeslots": [timeslot]})
        return found

    return lookup


def _windows(starts: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Merged ``[start - margin, start + margin)`` windows around each start time."""
    spans = sorted((s - SEARCH_MARGIN, s + SEARCH_MARGIN) for s in starts)
    merged: list[list[datetime]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def ask_leap(lookup: LeapLookup | None, candidates: list[dict]) -> LeapVerdicts:
    """Run ``lookup`` for the searchable candidates; a failure is recorded, never raised."""
    asked = [c for c in candidates if searchable(c)]
    if lookup is None or not asked:
        return LeapVerdicts()
    keys = frozenset(c["event_key"] for c in asked)
    try:
        return LeapVerdicts(asked=keys, found=lookup(asked))
    except Exception as exc:  # any failure to get an answer: the held state stands
        return LeapVerdicts(asked=keys, reachable=False, error=f"{type(exc).__name__}: {exc}")


def decide(
    event: dict,
    current: dict,
    *,
    seen_before: bool,
    verdicts: LeapVerdicts,
    arrived_after_current: bool,
) -> tuple[str, dict | None, str]:
    """What to do with ``event`` (normalized) whose content differs from ``current`` (the stored row).

    Returns ``(APPLY, event_to_store, why)``, ``(STALE, None, why)`` or ``(HELD, None, why)``."""
    key = event["event_key"]
    if key in verdicts.asked:
        if not verdicts.reachable:
            if seen_before:
                return STALE, None, "EARLIER_REVISION"
            return HELD, None, "LEAP_UNREACHABLE"
        leap = verdicts.leap_event(key, event["integration_test"])
        if leap is not None:
            if leap["timeslot"] == event["timeslot"]:
                return APPLY, event, "LEAP_CONFIRMED"
            held = current["timeslot"]
            if isinstance(held, str):
                held = json.loads(held)
            if leap["timeslot"] == held:
                return STALE, None, "LEAP_HOLDS_CURRENT"
            # Leap has moved on past both: hold what Leap holds, with this delivery's meter list for a
            # meter event and Leap's member list for a group event
            return APPLY, leap, "LEAP_NEWER"
    if seen_before:
        return STALE, None, "EARLIER_REVISION"
    if not arrived_after_current:
        return STALE, None, "ARRIVED_BEFORE_CURRENT"
    return APPLY, event, "LATEST_ARRIVAL"
