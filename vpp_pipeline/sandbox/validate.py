"""Request-body validation with Leap's limits. Every failure raises ``ApiError(400, ...)`` naming the field,
the rule and the value received."""

from __future__ import annotations

import uuid
from datetime import datetime

from .errors import ApiError
from .timefmt import parse_datetime

_MISSING = object()


def _bad(field: str, message: str, value=_MISSING) -> ApiError:
    if value is not _MISSING:
        message = f"{message}; got {value!r}"
    return ApiError(400, f"{field}: {message}", field=field)


def is_uuid(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def opt_int(body: dict, field: str, lo: int, hi: int, default: int) -> int:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(field, f"must be an integer between {lo} and {hi}", value)
    return value


def opt_bool(body: dict, field: str, default: bool) -> bool:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(field, "must be a boolean (true or false)", value)
    return value


def opt_str(body: dict, field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _bad(field, "must be a non-empty string", value)
    return value


def opt_enum(body: dict, field: str, allowed: tuple[str, ...]) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if value not in allowed:
        raise _bad(field, f"must be one of {', '.join(allowed)}", value)
    return value


def opt_list(
    body: dict,
    field: str,
    *,
    min_items: int,
    max_items: int,
    allowed: tuple[str, ...] | None = None,
) -> list[str] | None:
    """An optional array of unique strings (each in ``allowed`` if given)."""
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _bad(field, "must be an array", value)
    if not min_items <= len(value) <= max_items:
        raise _bad(field, f"must hold between {min_items} and {max_items} items; got {len(value)}")
    for item in value:
        if not isinstance(item, str):
            raise _bad(field, "items must be strings", item)
        if allowed is not None and item not in allowed:
            raise _bad(field, f"items must be one of {', '.join(allowed)}", item)
    if len(set(value)) != len(value):
        raise _bad(field, "items must be unique")
    return value


def opt_uuid_list(
    body: dict, field: str, *, min_items: int, max_items: int, leap_meter_id_error: bool = False
) -> list[str] | None:
    """An optional array of unique UUID strings, returned lower-cased.

    ``leap_meter_id_error`` uses Leap's meters-family error (``title: "Meter id is not a UUID"``,
    ``details: {"meter_id": <value>}``).
    """
    value = opt_list(body, field, min_items=min_items, max_items=max_items)
    if value is None:
        return None
    for item in value:
        if not is_uuid(item):
            if leap_meter_id_error:
                raise ApiError(
                    400,
                    f"{field}: Meter id is not a UUID; got {item!r}",
                    field=field,
                    title="Meter id is not a UUID",
                    details={"meter_id": item},
                )
            raise _bad(field, "items must be UUIDs", item)
    return [item.lower() for item in value]


def opt_datetime(body: dict, field: str) -> datetime | None:
    value = body.get(field)
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except (TypeError, ValueError):
        raise _bad(
            field, "must be an ISO-8601 date-time such as 2024-01-01T00:00:00Z", value
        ) from None


def req_datetime(body: dict, field: str) -> datetime:
    if body.get(field) is None:
        raise ApiError(
            400,
            f"{field}: is required (ISO-8601 date-time such as 2024-01-01T00:00:00Z)",
            field=field,
        )
    return opt_datetime(body, field)  # type: ignore[return-value]


def opt_page_token(body: dict, field: str = "page_token", *, must_be_uuid: bool) -> str | None:
    value = body.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad(field, "must be a string", value)
    if must_be_uuid and not is_uuid(value):
        raise _bad(field, "must be a UUID taken from next_page_token", value)
    return value
