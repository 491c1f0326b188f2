"""Typed views of Leap's v2 response records, with Leap's exact field names.

Leap may add response fields without a version change (digest section 2), so every model
accepts unknown fields (``extra="allow"``): they never fail parsing and are kept in
``model_dump()`` for whoever stores the raw record. Required fields are the ones Leap's
OpenAPI files mark required; a record missing one is a malformed response.

Timestamps: Leap uses ``2023-02-21T00:00:00.000Z``, ``2000-01-23T04:56:07.000+00:00`` and
(in its dispatch examples) ``2023-07-21 00:00:00+00:00``. All parse to timezone-aware UTC
``datetime``; a timestamp without an offset is rejected rather than guessed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class LeapRecord(BaseModel):
    """Base of every Leap record: unknown fields are accepted and kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


# --- meters (Meters v2: MeterDetailsResponse) -------------------------------------------


class Audit(LeapRecord):
    created_by: str | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None


class Customer(LeapRecord):
    street_1: str | None = None
    postal_code: str | None = None
    city: str | None = None
    state_or_province_code: str | None = None
    country_code: str | None = None
    end_customer_company_name: str | None = None


class Device(LeapRecord):
    device_type: str | None = None
    battery_power_capacity_kw: float | None = None
    battery_energy_capacity_kwh: float | None = None
    battery_duration_hours: float | None = None


class SiteDevice(LeapRecord):
    device_type: str | None = None
    energy_capacity_kwh: float | None = None
    power_capacity_kw: float | None = None
    battery_max_state_of_charge_percentage: float | None = None
    battery_min_state_of_charge_percentage: float | None = None


class Site(LeapRecord):
    load_zone: str | None = None
    number_of_devices: int | None = None
    site_devices: list[SiteDevice] = Field(default_factory=list)


class Utility(LeapRecord):
    utility_name: str | None = None
    load_serving_entity: str | None = None
    tariff: str | None = None


class Meter(LeapRecord):
    meter_id: str
    audit: Audit
    partner_reference: str | None = None
    transmission_region: str | None = None
    customer_classification: str | None = None
    load_types: list[str] = Field(default_factory=list)
    meter_type: str | None = None
    customer_group: str | None = None
    tags: list[str] = Field(default_factory=list)
    is_archived: bool | None = None
    customer: Customer | None = None
    device: Device | None = None
    site: Site | None = None
    utility: Utility | None = None


# --- enrollments (Enrollments v2: MeterEnrollmentResponse) ------------------------------


class ParticipationPreference(LeapRecord):
    participation_preference: str
    start_time: UtcDatetime
    end_time: UtcDatetime | None = None
    reason: str | None = None


class ProgramEnrollment(LeapRecord):
    program_identifier: str | None = None
    delivery_period: str | None = None
    delivery_period_start_date_time: UtcDatetime
    delivery_period_end_date_time: UtcDatetime
    enrollment_status: str
    market_group_id: str | None = None
    market_group_name: str | None = None


class MeterEnrollment(LeapRecord):
    meter_id: str
    transmission_region: str
    global_enrollment_status: str
    is_archived: bool
    load_types: list[str]
    tags: list[str]
    audit: Audit
    program_enrollment: list[ProgramEnrollment]
    partner_reference: str | None = None
    participation_preferences: list[ParticipationPreference] = Field(default_factory=list)
    required_actions: dict | None = None


# --- nominations (Nominations v2: searchNominations) ------------------------------------


class Nomination(LeapRecord):
    meter_id: str
    program_identifier: str
    source: str
    nomination_kw: float
    start_time: UtcDatetime | None = None
    end_time: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None


# --- dispatch (Dispatch v2: search and webhook records) ---------------------------------

#: ``PerformanceCompensationCap`` in Leap's dispatch OpenAPI file.
PerformanceCompensationCap = Literal["grid-exports-allowed", "up-to-nomination", "up-to-site-load"]
#: ``DispatchEventType`` in Leap's dispatch OpenAPI file.
DispatchEventType = Literal["hour-ahead", "day-ahead", "5m", "capacity-test", "standard"]
#: ``energy_kw`` / ``nomination_kw`` bounds in ``BaseDispatchEventTimeslot`` (kW, finite).
DISPATCH_KW_MIN = 0.01
DISPATCH_KW_MAX = 100_000.0
#: ``priority`` bounds (1 = highest).
PRIORITY_MIN, PRIORITY_MAX = 1, 10
#: Ids are uuids in Leap's files; they are kept as text, so what is checked is what text needs.
MAX_ID_CHARS = 128

DispatchKw = Annotated[float, Field(ge=DISPATCH_KW_MIN, le=DISPATCH_KW_MAX, allow_inf_nan=False)]


def _valid_id(value: str) -> str:
    """A Leap id usable as a key: 1-128 characters, valid UTF-8, no control characters."""
    if not value.strip() or len(value) > MAX_ID_CHARS:
        raise PydanticCustomError("invalid_id", "id must be 1-{n} characters", {"n": MAX_ID_CHARS})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("invalid_id", "id is not valid UTF-8 text") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise PydanticCustomError("invalid_id", "id holds control characters")
    return value


LeapId = Annotated[str, AfterValidator(_valid_id)]


class DispatchTimeslot(LeapRecord):
    """Fields shared by meter- and group-level timeslots (``BaseDispatchEventTimeslot``).

    ``energy_kw`` null means "dispatch the most the site can"; ``nomination_kw`` is the
    market commitment (kW). Times are the UTC dispatch window, end exclusive.

    Leap's schema bounds are enforced: kW in [0.01, 100000] and finite, ``priority`` 1-10, a known
    ``performance_compensation_cap`` and ``dispatch_event_types`` (at least one), at least one
    program, and ``end_time`` after ``start_time``. ``programs`` are not checked against Leap's
    program list: it grows with new markets, and an unknown program still names a dispatch to perform.
    """

    start_time: UtcDatetime
    end_time: UtcDatetime
    cancelled: bool
    performance_compensation_cap: PerformanceCompensationCap
    priority: int = Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)
    is_voluntary: bool
    dispatch_event_types: list[DispatchEventType] = Field(min_length=1)
    programs: list[str] = Field(min_length=1)
    energy_kw: DispatchKw | None = None
    nomination_kw: DispatchKw | None = None
    communication_test: bool | None = None

    @model_validator(mode="after")
    def _end_after_start(self):
        if self.end_time <= self.start_time:
            raise PydanticCustomError(
                "end_not_after_start",
                "end_time {end} is not after start_time {start}",
                {"end": self.end_time.isoformat(), "start": self.start_time.isoformat()},
            )
        return self


class MeterDispatchTimeslot(DispatchTimeslot):
    meter_event_id: LeapId


class GroupDispatchTimeslot(DispatchTimeslot):
    market_group_event_id: LeapId


class MeterDispatch(LeapRecord):
    meter_id: LeapId
    timeslots: list[MeterDispatchTimeslot]
    partner_reference: str | None = None


class GroupDispatch(LeapRecord):
    market_group_id: LeapId
    meter_ids: list[LeapId]
    timeslots: list[GroupDispatchTimeslot]
    partner_references: list[str] | None = None
