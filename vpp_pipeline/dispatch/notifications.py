"""Leap dispatch notifications -> normalized dispatch events (pure; no I/O).

A webhook body is a meter-level notification (``meter_dispatches[]``, Leap's WebhookMeterDispatchEvent) or a
group-level one (``group_dispatches[]``, WebhookMarketGroupDispatchEvent), with the top-level flags
``integration_test_notification`` and ``communication_test``. Each timeslot is one event, keyed by its
``meter_event_id`` / ``market_group_event_id``; one notification can hold many recipients and timeslots.

A normalized event is a plain dict:
``{event_key, level, event_id, recipient_id, meter_ids, timeslot, integration_test, communication_test,
content_sha256}`` where ``timeslot`` keeps Leap's field names with times as UTC ISO text and list fields
sorted, so the same event sent by webhook or found by the search API hashes the same.

Validation: a recipient or timeslot outside Leap's dispatch schema (see ``vpp_pipeline.leap.models``)
raises :class:`NotificationError` with a reason code naming what is wrong (``KW_OUT_OF_RANGE``,
``PRIORITY_OUT_OF_RANGE``, ``UNKNOWN_CAP``, ``UNKNOWN_EVENT_TYPE``, ``END_NOT_AFTER_START``,
``INVALID_ID``, ``NUMBER_NOT_FINITE``; anything else ``INVALID_RECIPIENT``). The receiver also checks that
each event's times lie in a window around the time it arrived (:func:`check_time_window`); that check is
not part of parsing, because a stored notification is re-parsed later, when "now" has moved.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from vpp_pipeline.leap.models import GroupDispatch, MeterDispatch

#: the timeslot fields that define an event's content (``communication_test`` is a flag, not content:
#: Leap omits it on group search results)
CONTENT_FIELDS = (
    "start_time",
    "end_time",
    "cancelled",
    "energy_kw",
    "nomination_kw",
    "performance_compensation_cap",
    "priority",
    "is_voluntary",
    "dispatch_event_types",
    "programs",
)


#: reason codes of schema errors, by the field that fails (the innermost named one wins)
FIELD_REASONS = {
    "energy_kw": "KW_OUT_OF_RANGE",
    "nomination_kw": "KW_OUT_OF_RANGE",
    "priority": "PRIORITY_OUT_OF_RANGE",
    "performance_compensation_cap": "UNKNOWN_CAP",
    "dispatch_event_types": "UNKNOWN_EVENT_TYPE",
}
#: reason codes of schema errors, by pydantic's error type (wins over the field)
TYPE_REASONS = {
    "finite_number": "NUMBER_NOT_FINITE",
    "invalid_id": "INVALID_ID",
    "end_not_after_start": "END_NOT_AFTER_START",
}
#: at most this many problems are named in one error's detail
MAX_PROBLEMS_NAMED = 5


class NotificationError(ValueError):
    """A JSON body that is not a Leap dispatch notification; ``reason_code`` is machine-readable."""

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail


def _reason_of(error: dict) -> str:
    if error["type"] in TYPE_REASONS:
        return TYPE_REASONS[error["type"]]
    for part in reversed(error["loc"]):
        if part in FIELD_REASONS:
            return FIELD_REASONS[part]
    return "INVALID_RECIPIENT"


def _schema_error(exc: ValidationError, prefix: str) -> NotificationError:
    errors = exc.errors()
    named = [
        f"{prefix}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in errors[:MAX_PROBLEMS_NAMED]
    ]
    more = (
        f" (+{len(errors) - MAX_PROBLEMS_NAMED} more)" if len(errors) > MAX_PROBLEMS_NAMED else ""
    )
    # ascii(): a detail may quote the offending text, which must not break the JSON reply
    return NotificationError(_reason_of(errors[0]), ascii("; ".join(named) + more)[1:-1])


@dataclass(frozen=True)
class TimeWindow:
    """How far from its arrival an event's times may lie: ``start_time`` and ``end_time`` both within
    ``[received_at - past, received_at + future]``. Leap sends events ahead of time and retries a
    delivery for 50 minutes; a week back and 60 days ahead hold every real event and refuse a 1970 or
    a 2099 one. Settings: ``VPP_DISPATCH_WINDOW_PAST_DAYS``, ``VPP_DISPATCH_WINDOW_FUTURE_DAYS``."""

    past: timedelta = timedelta(days=7)
    future: timedelta = timedelta(days=60)


def check_time_window(events: list[dict], received_at: datetime, window: TimeWindow) -> None:
    """Raise ``NotificationError("TIME_OUT_OF_WINDOW")`` when an event's start or end lies outside
    ``window`` around ``received_at`` (UTC)."""
    earliest, latest = received_at - window.past, received_at + window.future
    for event in events:
        for field in ("start_time", "end_time"):
            at = datetime.fromisoformat(event["timeslot"][field])
            if not earliest <= at <= latest:
                raise NotificationError(
                    "TIME_OUT_OF_WINDOW",
                    f"event {ascii(event['event_id'])[1:-1]}: {field} {at.isoformat()} is outside"
                    f" {earliest.isoformat(timespec='seconds')} .."
                    f" {latest.isoformat(timespec='seconds')} (received at"
                    f" {received_at.isoformat(timespec='seconds')})",
                )


def notification_level(payload: Any) -> str:
    """``"meter"`` or ``"group"``; raises :class:`NotificationError` for anything else."""
    if not isinstance(payload, dict):
        raise NotificationError(
            "NOT_AN_OBJECT", f"expected a JSON object, got {type(payload).__name__}"
        )
    has_meter = "meter_dispatches" in payload
    has_group = "group_dispatches" in payload
    if has_meter == has_group:
        raise NotificationError(
            "UNKNOWN_NOTIFICATION_TYPE",
            "expected exactly one of 'meter_dispatches' or 'group_dispatches'",
        )
    return "meter" if has_meter else "group"


def parse_notification(payload: Any) -> list[dict]:
    """The normalized events of a notification; raises :class:`NotificationError` when it is not one."""
    level = notification_level(payload)
    key = "meter_dispatches" if level == "meter" else "group_dispatches"
    recipients = payload[key]
    if not isinstance(recipients, list) or not recipients:
        raise NotificationError("NO_RECIPIENTS", f"'{key}' must be a non-empty list")
    model = MeterDispatch if level == "meter" else GroupDispatch
    integration_test = _flag(payload, "integration_test_notification")
    communication_test = _flag(payload, "communication_test")
    events: list[dict] = []
    for index, recipient in enumerate(recipients):
        try:
            parsed = model.model_validate(recipient)
        except ValidationError as exc:
            raise _schema_error(exc, f"{key}[{index}]") from None
        if not parsed.timeslots:
            raise NotificationError("NO_TIMESLOTS", f"{key}[{index}].timeslots is empty")
        for timeslot in parsed.timeslots:
            if level == "meter":
                events.append(
                    normalized_event(
                        "meter",
                        timeslot.meter_event_id,
                        parsed.meter_id,
                        [parsed.meter_id],
                        timeslot.model_dump(),
                        integration_test,
                        communication_test or bool(timeslot.communication_test),
                    )
                )
            else:
                events.append(
                    normalized_event(
                        "group",
                        timeslot.market_group_event_id,
                        parsed.market_group_id,
                        list(parsed.meter_ids),
                        timeslot.model_dump(),
                        integration_test,
                        communication_test or bool(timeslot.communication_test),
                    )
                )
    return events


def _flag(payload: dict, name: str) -> bool:
    value = payload.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise NotificationError("INVALID_FLAG", f"'{name}' must be a boolean")
    return value


def normalized_event(
    level: str,
    event_id: str,
    recipient_id: str,
    meter_ids: list[str],
    timeslot: dict,
    integration_test: bool,
    communication_test: bool,
) -> dict:
    """One normalized event (see the module docstring). ``timeslot`` holds parsed datetimes."""
    event_id = str(event_id).lower()
    content = {
        "start_time": timeslot["start_time"].isoformat(timespec="microseconds"),
        "end_time": timeslot["end_time"].isoformat(timespec="microseconds"),
        "cancelled": bool(timeslot["cancelled"]),
        "energy_kw": _kw(timeslot.get("energy_kw")),
        "nomination_kw": _kw(timeslot.get("nomination_kw")),
        "performance_compensation_cap": timeslot["performance_compensation_cap"],
        "priority": int(timeslot["priority"]),
        "is_voluntary": bool(timeslot["is_voluntary"]),
        "dispatch_event_types": sorted(set(timeslot["dispatch_event_types"])),
        "programs": sorted(set(timeslot["programs"])),
    }
    meters = sorted({str(m).lower() for m in meter_ids})
    digest = hashlib.sha256(
        # meter_ids stay out of the hash: Leap's group search reports a group's members per recipient,
        # not per timeslot, so they are not a reliable part of one event's content
        json.dumps({"t": content, "i": integration_test}, sort_keys=True, default=str).encode()
    ).hexdigest()
    return {
        "event_key": f"{level}:{event_id}",
        "level": level,
        "event_id": event_id,
        "recipient_id": str(recipient_id).lower(),
        "meter_ids": meters,
        "timeslot": content,
        "integration_test": integration_test,
        "communication_test": communication_test,
        "content_sha256": digest,
    }


def _kw(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)


def meter_ids_of(payload: Any) -> list[str]:
    """Every meter id a (valid) notification names, lower-cased, in order of appearance."""
    seen: dict[str, None] = {}
    for key in ("meter_dispatches", "group_dispatches"):
        for recipient in payload.get(key) or []:
            ids = (
                [recipient.get("meter_id")]
                if key == "meter_dispatches"
                else recipient.get("meter_ids") or []
            )
            for meter_id in ids:
                if isinstance(meter_id, str):
                    seen[meter_id.lower()] = None
    return list(seen)
