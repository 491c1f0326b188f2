"""Leap API client: one interface, tested against the real sandbox server over HTTP."""

from vpp_pipeline.leap.analytics import (
    METER_INTERVALS_SEARCH,
    METER_PERFORMANCE_SEARCH,
    fetch_meter_intervals,
    fetch_meter_performance,
)
from vpp_pipeline.leap.client import (
    ENROLLMENTS_SEARCH,
    GROUP_DISPATCH_SEARCH,
    METER_DISPATCH_SEARCH,
    METERS_SEARCH,
    NOMINATIONS_SEARCH,
    LeapClient,
    RejectedRecord,
    dispatch_windows,
    format_utc,
    parse_retry_after,
)
from vpp_pipeline.leap.errors import (
    LeapApiError,
    LeapConnectionError,
    LeapError,
    LeapErrorEnvelope,
    LeapResponseError,
    parse_error_envelope,
)
from vpp_pipeline.leap.models import (
    GroupDispatch,
    GroupDispatchTimeslot,
    Meter,
    MeterDispatch,
    MeterDispatchTimeslot,
    MeterEnrollment,
    Nomination,
)

__all__ = [
    "ENROLLMENTS_SEARCH",
    "GROUP_DISPATCH_SEARCH",
    "METERS_SEARCH",
    "METER_DISPATCH_SEARCH",
    "METER_INTERVALS_SEARCH",
    "METER_PERFORMANCE_SEARCH",
    "NOMINATIONS_SEARCH",
    "GroupDispatch",
    "GroupDispatchTimeslot",
    "LeapApiError",
    "LeapClient",
    "LeapConnectionError",
    "LeapError",
    "LeapErrorEnvelope",
    "LeapResponseError",
    "Meter",
    "MeterDispatch",
    "MeterDispatchTimeslot",
    "MeterEnrollment",
    "Nomination",
    "RejectedRecord",
    "dispatch_windows",
    "fetch_meter_intervals",
    "fetch_meter_performance",
    "format_utc",
    "parse_error_envelope",
    "parse_retry_after",
]
