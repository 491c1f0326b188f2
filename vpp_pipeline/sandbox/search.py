"""The search endpoints' logic: validate a request body, filter, paginate, shape the response.

Each function takes the ``SandboxState`` and the parsed JSON body and returns the response dict, or raises
``ApiError``. Pagination: a page token (UUID string) maps to the normalized query plus an offset; when a token
is sent, the query it was issued for is continued (other filters in that request are ignored).
"""

from __future__ import annotations

import copy
from datetime import timedelta

from .catalog import (
    ACTION_TYPES,
    CUSTOMER_CLASSIFICATIONS,
    ENROLLMENT_STATUSES,
    LOAD_TYPES,
    METER_TYPES,
    PROGRAM_IDENTIFIERS,
    TRANSMISSION_REGIONS,
)
from .errors import ApiError
from .portfolio import DispatchEvent
from .state import SandboxState
from .timefmt import parse_datetime
from .validate import (
    opt_bool,
    opt_datetime,
    opt_enum,
    opt_int,
    opt_list,
    opt_page_token,
    opt_uuid_list,
    req_datetime,
)

MAX_PAGE_SIZE = 500
MAX_DISPATCH_WINDOW = timedelta(days=31)


def _bad_token(token: str) -> ApiError:
    return ApiError(
        400,
        f"page_token: unknown or expired page token {token!r}; use next_page_token from the previous response",
    )


# --- meters and enrollments --------------------------------------------------------------------------------


def _meter_filter(body: dict) -> dict:
    """Validate a MeterFilterRequest; returns the normalized query (JSON-serializable)."""
    query = {
        "page_size": opt_int(body, "page_size", 1, MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        "transmission_region": opt_enum(body, "transmission_region", TRANSMISSION_REGIONS),
        "customer_classification": opt_enum(
            body, "customer_classification", CUSTOMER_CLASSIFICATIONS
        ),
        "meter_ids": opt_uuid_list(
            body, "meter_ids", min_items=0, max_items=1000, leap_meter_id_error=True
        ),
        "partner_references": opt_list(body, "partner_references", min_items=1, max_items=1000),
        "global_enrollment_statuses": opt_list(
            body,
            "global_enrollment_statuses",
            min_items=1,
            max_items=5,
            allowed=ENROLLMENT_STATUSES,
        ),
        "meter_types": opt_list(
            body, "meter_types", min_items=1, max_items=20, allowed=METER_TYPES
        ),
        "load_types": opt_list(body, "load_types", min_items=1, max_items=20, allowed=LOAD_TYPES),
        "customer_groups": opt_list(body, "customer_groups", min_items=1, max_items=20),
        "tags": opt_list(body, "tags", min_items=1, max_items=20),
        "connection_reference_ids": opt_list(
            body, "connection_reference_ids", min_items=1, max_items=100
        ),
        "action_type": opt_list(
            body, "action_type", min_items=1, max_items=20, allowed=ACTION_TYPES
        ),
        "partner_action_required": opt_bool(body, "partner_action_required", False),
        "exclude_archived": opt_bool(body, "exclude_archived", False),
    }
    for field in ("last_modified_date_time", "created_after_date_time", "created_before_date_time"):
        value = opt_datetime(body, field)
        query[field] = value.isoformat() if value else None
    return query


def _meter_matches(state: SandboxState, meter: dict, q: dict, *, enrollment_audit: bool) -> bool:
    enrollment = state.portfolio.enrollments[meter["meter_id"]]
    if q["meter_ids"] is not None and meter["meter_id"] not in q["meter_ids"]:
        return False
    if q["transmission_region"] and meter.get("transmission_region") != q["transmission_region"]:
        return False
    if (
        q["customer_classification"]
        and meter.get("customer_classification") != q["customer_classification"]
    ):
        return False
    if q["partner_references"] and meter.get("partner_reference") not in q["partner_references"]:
        return False
    if (
        q["global_enrollment_statuses"]
        and enrollment["global_enrollment_status"] not in q["global_enrollment_statuses"]
    ):
        return False
    if q["meter_types"] and meter.get("meter_type") not in q["meter_types"]:
        return False
    if q["load_types"] and not set(q["load_types"]) & set(meter.get("load_types") or ()):
        return False
    if q["customer_groups"] and meter.get("customer_group") not in q["customer_groups"]:
        return False
    if q["tags"] and not set(q["tags"]) & set(meter.get("tags") or ()):
        return False
    if q["connection_reference_ids"] and not set(q["connection_reference_ids"]) & set(
        meter.get("connection_references") or ()
    ):
        return False
    partner_actions = enrollment["required_actions"].get("partner") or []
    if q["partner_action_required"] and not partner_actions:
        return False
    if q["action_type"]:
        actions = partner_actions + (enrollment["required_actions"].get("leap") or [])
        if not {a["action_type"] for a in actions} & set(q["action_type"]):
            return False
    if q["exclude_archived"] and meter.get("is_archived"):
        return False
    audit = enrollment["audit"] if enrollment_audit else meter["audit"]
    if q["last_modified_date_time"] and parse_datetime(audit["updated_at"]) < parse_datetime(
        q["last_modified_date_time"]
    ):
        return False
    created = parse_datetime(audit["created_at"])
    if q["created_after_date_time"] and created < parse_datetime(q["created_after_date_time"]):
        return False
    before = q["created_before_date_time"]
    return not (before and created >= parse_datetime(before))


def _paginate(
    state: SandboxState,
    kind: str,
    body: dict,
    query: dict,
    items: list,
    page_size: int,
    *,
    uuid_token: bool,
):
    """Slice ``items`` by the cursor of ``body['page_token']``; returns (page, next_page_token or None)."""
    offset = 0
    token = opt_page_token(body, must_be_uuid=uuid_token)
    if token is not None:
        cursor = state.pages.resolve(kind, token)
        if cursor is None:
            raise _bad_token(token)
        offset = cursor.offset
    page = items[offset : offset + page_size]
    next_token = (
        state.pages.issue(kind, query, offset + page_size)
        if offset + page_size < len(items)
        else None
    )
    return page, next_token


def _continue_query(
    state: SandboxState, kind: str, body: dict, query: dict, *, uuid_token: bool
) -> dict:
    token = opt_page_token(body, must_be_uuid=uuid_token)
    if token is None:
        return query
    cursor = state.pages.resolve(kind, token)
    if cursor is None:
        raise _bad_token(token)
    return cursor.query


def search_meters(state: SandboxState, body: dict) -> dict:
    """``POST /v2/meters/search`` -> ``{"meters": [MeterDetailsResponse...], "next_page_token": str|None}``."""
    query = _continue_query(state, "meters", body, _meter_filter(body), uuid_token=False)
    with state.lock:
        matches = [
            copy.deepcopy(m)
            for m in state.portfolio.meters.values()
            if _meter_matches(state, m, query, enrollment_audit=False)
        ]
    page, next_token = _paginate(
        state, "meters", body, query, matches, query["page_size"], uuid_token=False
    )
    return {"meters": page, "next_page_token": next_token}


def search_enrollments(state: SandboxState, body: dict) -> dict:
    """``POST /v2/meters/enrollments/search`` -> ``{"meters": [MeterEnrollmentResponse...], "next_page_token"}``.

    (Leap's ``searchMeterEnrollments_200_response`` names the list ``meters``.)
    """
    query = _continue_query(state, "enrollments", body, _meter_filter(body), uuid_token=False)
    with state.lock:
        portfolio = state.portfolio
        matches = [
            portfolio.enrollment(m["meter_id"])
            for m in portfolio.meters.values()
            if _meter_matches(state, m, query, enrollment_audit=True)
        ]
    page, next_token = _paginate(
        state, "enrollments", body, query, matches, query["page_size"], uuid_token=False
    )
    return {"meters": page, "next_page_token": next_token}


# --- nominations -------------------------------------------------------------------------------------------


def search_nominations(state: SandboxState, body: dict) -> dict:
    """``POST /v2/meters/nominations/search`` -> ``{"nominations": [...], "next_page_token"}``.

    A nomination matches when its window overlaps [start_time, end_time) (start_time defaults to now, so by
    default current and future nominations are returned, as Leap documents); ``updated_since`` keeps those
    with ``updated_at >= updated_since``. ``page_size`` (1-500, default 500) is in Leap's request schema.
    """
    start = opt_datetime(body, "start_time")
    end = opt_datetime(body, "end_time")
    if start and end and end <= start:
        raise ApiError(
            400,
            f"end_time: must be after start_time ({body['start_time']}); got {body['end_time']!r}",
        )
    updated_since = opt_datetime(body, "updated_since")
    query = {
        "meter_ids": opt_uuid_list(
            body, "meter_ids", min_items=0, max_items=1000, leap_meter_id_error=True
        ),
        "start_time": (start or state.now()).isoformat(),
        "end_time": end.isoformat() if end else None,
        "program_identifier": opt_enum(body, "program_identifier", PROGRAM_IDENTIFIERS),
        "updated_since": updated_since.isoformat() if updated_since else None,
        "page_size": opt_int(body, "page_size", 1, MAX_PAGE_SIZE, MAX_PAGE_SIZE),
    }
    query = _continue_query(state, "nominations", body, query, uuid_token=False)
    q_start = parse_datetime(query["start_time"])
    q_end = parse_datetime(query["end_time"]) if query["end_time"] else None
    q_updated = parse_datetime(query["updated_since"]) if query["updated_since"] else None
    matches = []
    with state.lock:
        for nom in state.portfolio.nominations:
            if query["meter_ids"] is not None and nom["meter_id"] not in query["meter_ids"]:
                continue
            if (
                query["program_identifier"]
                and nom["program_identifier"] != query["program_identifier"]
            ):
                continue
            n_start = parse_datetime(nom["start_time"])
            n_end = parse_datetime(nom["end_time"]) if nom["end_time"] else None
            if n_end is not None and n_end <= q_start:
                continue
            if q_end is not None and n_start >= q_end:
                continue
            if q_updated is not None and parse_datetime(nom["updated_at"]) < q_updated:
                continue
            matches.append(dict(nom))
    page, next_token = _paginate(
        state, "nominations", body, query, matches, query["page_size"], uuid_token=False
    )
    return {"nominations": page, "next_page_token": next_token}


# --- dispatch ----------------------------------------------------------------------------------------------


def _dispatch_query(body: dict, level: str) -> dict:
    start = req_datetime(body, "start_date")
    end = req_datetime(body, "end_date")
    if end <= start:
        raise ApiError(
            400,
            f"end_date: must be after start_date ({body['start_date']}); got {body['end_date']!r}",
            field="end_date",
        )
    if end - start > MAX_DISPATCH_WINDOW:
        raise ApiError(
            400,
            f"end_date: must be at most 31 days after start_date; got {body['start_date']} to {body['end_date']} "
            f"({(end - start).total_seconds() / 86400:g} days)",
            field="end_date",
        )
    id_field, event_field = (
        ("meter_ids", "meter_event_ids")
        if level == "meter"
        else (
            "market_group_ids",
            "market_group_event_ids",
        )
    )
    return {
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "exclude_real_time_events": opt_bool(body, "exclude_real_time_events", True),
        "exclude_voluntary_events": opt_bool(body, "exclude_voluntary_events", False),
        "recipient_ids": opt_uuid_list(body, id_field, min_items=1, max_items=10_000),
        "event_ids": opt_uuid_list(body, event_field, min_items=1, max_items=10_000),
    }


def _event_matches(event: DispatchEvent, q: dict, start, end) -> bool:
    latest = event.latest
    if not start <= event.start_time < end:
        return False
    if q["exclude_real_time_events"] and "5m" in latest["dispatch_event_types"]:
        return False
    if q["exclude_voluntary_events"] and latest["is_voluntary"]:
        return False
    if q["recipient_ids"] is not None and event.recipient_id not in q["recipient_ids"]:
        return False
    return q["event_ids"] is None or event.event_id in q["event_ids"]


def search_dispatch(state: SandboxState, body: dict, level: str) -> dict:
    """``POST /v2/dispatch/{meter|group}/search`` -> ``{"next_page_token": uuid|None, "results": [...]}``.

    A timeslot matches when its (latest) start_time is in [start_date, end_date). The page limit
    (``state.dispatch_page_limit``, 500 like Leap) counts **timeslots**; a page's timeslots are grouped by
    recipient in order of first appearance, so a meter/group can appear on two consecutive pages. Timeslots
    are ordered by (start_time, recipient id, event id) and carry their latest revision.
    """
    kind = f"dispatch-{level}"
    query = _continue_query(state, kind, body, _dispatch_query(body, level), uuid_token=True)
    start, end = parse_datetime(query["start_date"]), parse_datetime(query["end_date"])
    with state.lock:
        portfolio = state.portfolio
        events = [e for e in portfolio.events(level) if _event_matches(e, query, start, end)]
        events.sort(key=lambda e: (e.start_time, e.recipient_id, e.event_id))
        page, next_token = _paginate(
            state, kind, body, query, events, state.dispatch_page_limit, uuid_token=True
        )
        results: dict[str, dict] = {}
        for event in page:
            result = results.get(event.recipient_id)
            if result is None:
                if level == "meter":
                    meter = portfolio.meters.get(event.recipient_id, {})
                    result = {
                        "meter_id": event.recipient_id,
                        "partner_reference": meter.get("partner_reference"),
                    }
                else:
                    result = {
                        "market_group_id": event.recipient_id,
                        "meter_ids": [],
                        "partner_references": [],
                    }
                result["timeslots"] = []
                results[event.recipient_id] = result
            if level == "group":
                for meter_id in event.meter_ids:
                    if meter_id not in result["meter_ids"]:
                        result["meter_ids"].append(meter_id)
                        ref = portfolio.meters.get(meter_id, {}).get("partner_reference")
                        if ref and ref not in result["partner_references"]:
                            result["partner_references"].append(ref)
            result["timeslots"].append(copy.deepcopy(event.latest))
    return {"next_page_token": next_token, "results": list(results.values())}
