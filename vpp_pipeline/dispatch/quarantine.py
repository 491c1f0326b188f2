"""What the dispatch path cannot process, set aside with its reason (docs/dispatch-ordering.md).

A row that cannot be processed must not stop the others: an inbox row, an event or a site command that fails
these checks (or raises while being applied, planned or sent) is written to ``dispatch_quarantine`` with a
reason code, the rest of the batch goes on, and the run reports it (Dagster log and output metadata,
``vpp dispatch-quarantine``). The receiver refuses such bodies at the door; these checks catch rows that
are already in a store (written before the door checked them, or inserted by hand).

Reason codes: for an inbox row, the receiver's own 422 code when the stored body breaks a rule the
door checks (``NUMBER_NOT_FINITE``, ``INVALID_ID``, ``JSON_TOO_DEEP``, ...) or ``NOT_A_NOTIFICATION``
(not JSON at all); for a stored event, ``NON_FINITE_VALUE`` (``energy_kw``, ``nomination_kw`` or
``priority`` is NaN or infinite), ``INVALID_TEXT`` (an id is not valid UTF-8, e.g. a lone surrogate),
``BAD_WINDOW`` (end not after start); ``APPLY_FAILED`` / ``PLAN_FAILED`` / ``SEND_FAILED`` (an
unexpected error; the detail holds it).
"""

from __future__ import annotations

import json
import math
from datetime import datetime

NOT_A_NOTIFICATION = "NOT_A_NOTIFICATION"
NON_FINITE_VALUE = "NON_FINITE_VALUE"
INVALID_TEXT = "INVALID_TEXT"
BAD_WINDOW = "BAD_WINDOW"
APPLY_FAILED = "APPLY_FAILED"
PLAN_FAILED = "PLAN_FAILED"
SEND_FAILED = "SEND_FAILED"


def _valid_text(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def event_problem(event: dict) -> tuple[str, str] | None:
    """Why a normalized event (or a stored event row, whose ``timeslot``/``meter_ids`` are JSON text)
    cannot be planned: ``(reason_code, detail)``, or None when it can."""
    slot = event["timeslot"]
    meters = event["meter_ids"]
    if isinstance(slot, str):
        slot = json.loads(slot)
    if isinstance(meters, str):
        meters = json.loads(meters)
    for name in ("event_id", "recipient_id"):
        if not _valid_text(event.get(name)):
            return INVALID_TEXT, f"{name} is not valid UTF-8 text"
    for meter_id in meters:
        if not _valid_text(meter_id):
            return INVALID_TEXT, f"meter id {meter_id!r} is not valid UTF-8 text"
    for name in ("energy_kw", "nomination_kw", "priority"):
        value = slot.get(name)
        if value is not None and not math.isfinite(float(value)):
            return NON_FINITE_VALUE, f"{name} is {value!r}"
    try:
        start = datetime.fromisoformat(slot["start_time"])
        end = datetime.fromisoformat(slot["end_time"])
    except (TypeError, ValueError) as exc:
        return BAD_WINDOW, f"start/end time unreadable: {exc}"
    if end <= start:
        return (
            BAD_WINDOW,
            f"end_time {slot['end_time']} is not after start_time {slot['start_time']}",
        )
    return None


def describe(exc: BaseException) -> str:
    """An exception as quarantine detail text."""
    return f"{type(exc).__name__}: {exc}"[:2000]
