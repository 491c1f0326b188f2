"""Timestamp formatting and parsing for the sandbox.

Leap's own files use several UTC styles; the sandbox serves each where Leap's examples show it, so a client
has to parse all of them:

- ``2000-01-23T04:56:07.000+00:00`` (meter/enrollment ``audit`` and delivery-period times),
- ``2023-02-21T00:00:00.000Z`` (dispatch timeslots, enrollment deadlines),
- ``2024-11-01T00:00:00Z`` (participation preferences, nominations).
"""

from __future__ import annotations

from datetime import UTC, datetime


def fmt_offset(dt: datetime) -> str:
    """UTC with milliseconds and a ``+00:00`` offset: ``2000-01-23T04:56:07.000+00:00``."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+00:00"


def fmt_z_millis(dt: datetime) -> str:
    """UTC with milliseconds and ``Z``: ``2023-02-21T00:00:00.000Z``."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def fmt_z(dt: datetime) -> str:
    """UTC to the second with ``Z``: ``2024-11-01T00:00:00Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: str) -> datetime:
    """Parse an ISO-8601 timestamp (``Z``, ``+hh:mm`` or naive, which is taken as UTC) to an aware UTC datetime.

    Raises ``ValueError`` if ``value`` is not a string in ISO-8601 form.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not an ISO-8601 date-time: {value!r}")
    dt = datetime.fromisoformat(value.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)
