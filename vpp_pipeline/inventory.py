"""Shape Leap's meter, enrollment and nomination records into flat frames for DuckDB.

These are API payloads (tens of thousands of records at most), so a comprehension over the
records is the right tool; interval data never passes through here. Column names keep
Leap's field names where one exists and put units in the rest (``_kw``, ``_kwh``, ``_pct``).
All timestamps are UTC.
"""

from __future__ import annotations

import hashlib
import json

import polars as pl

from vpp_pipeline.leap.models import Meter, MeterEnrollment, Nomination

UTC_TS = pl.Datetime("us", "UTC")

# Leap's enums (OpenAPI files, digest sections 5 and 14): the asset checks flag values
# outside them. New values are kept, not dropped: Leap may add enum values.
TRANSMISSION_REGIONS = ("CAISO", "ERCOT", "NYISO", "ISONE", "PJM", "SERC", "WECC_SW", "WECC_PC")
CUSTOMER_CLASSIFICATIONS = ("RESIDENTIAL", "COMMERCIAL")
METER_TYPES = ("UTILITY_METER", "SUBMETER", "DEVICE")
LOAD_TYPES = (
    "HVAC",
    "EV_CHARGING",
    "BATTERY_STORAGE",
    "COLD_STORAGE",
    "PUMPING",
    "WATER_HEATING",
    "BUILDING_AUTOMATION",
    "GENERATION",
    "MANUFACTURING",
    "LIGHTING",
    "OTHER",
)
ENROLLMENT_STATUSES = ("ACTIVE", "ELIGIBLE", "INELIGIBLE", "NOT_PARTICIPATING", "PENDING")
PARTICIPATION_PREFERENCES = ("PARTICIPATE", "IDLE", "DISENROLL")
NOMINATION_SOURCES = ("LEAP", "PARTNER")
PROGRAM_IDENTIFIERS = (
    "CAISO-CCA-SC_ONLY",
    "CCA",
    "CEC-DSGS-OPTION4",
    "CEC-DSGS",
    "DRAM",
    "ELRP",
    "PGE-ART",
    "PGE-CBP",
    "CAISO-ELRP-A4",
    "CEC-DSGS-OPTION2",
    "CONED-CSRP",
    "CONED-DLRP",
    "NYISO-SCR",
    "PSEGLI-CSRP",
    "PSEGLI-DLRP",
    "ERCOT-ERS",
    "NRG-REALTIME",
    "NRG-RED",
    "ONCOR-CLM",
    "EVERSOURCE-CS",
    "MA_DOER-CPS",
    "NATGRID-CS",
    "RIE-CS",
    "UNITIL-CS",
    "ENERGY-ONLY",
    "PJM-CAPACITY",
    "PSE-RPO",
    "SRP-RPO",
    "TVA-RPO",
    "ENERGYHUB-CS",
    "CT_GB-ESS",
)

METER_SCHEMA = {
    "meter_id": pl.String,
    "partner_reference": pl.String,
    "transmission_region": pl.String,
    "customer_classification": pl.String,
    "meter_type": pl.String,
    "load_types": pl.List(pl.String),
    "customer_group": pl.String,
    "tags": pl.List(pl.String),
    "is_archived": pl.Boolean,
    "company_name": pl.String,
    "city": pl.String,
    "state_or_province_code": pl.String,
    "postal_code": pl.String,
    "utility_name": pl.String,
    "load_serving_entity": pl.String,
    "tariff": pl.String,
    "load_zone": pl.String,
    "device_type": pl.String,
    "has_battery": pl.Boolean,
    "battery_power_kw": pl.Float64,
    "battery_energy_kwh": pl.Float64,
    "battery_duration_hours": pl.Float64,
    "battery_min_soc_pct": pl.Float64,
    "battery_max_soc_pct": pl.Float64,
    "leap_created_at": UTC_TS,
    "leap_updated_at": UTC_TS,
    "details": pl.String,
    "attributes_hash": pl.String,
}


def meters_frame(meters: list[Meter]) -> pl.DataFrame:
    """One row per meter. ``details`` is Leap's full record minus ``audit`` (as JSON, unknown
    fields included); ``attributes_hash`` is its digest, which decides whether a meter's
    attributes changed (an ``audit.updated_at`` bump alone is not a change)."""
    rows = []
    for meter in meters:
        details = meter.model_dump(mode="json", exclude={"audit"})
        details_json = json.dumps(details, sort_keys=True, separators=(",", ":"))
        battery = next(
            (
                d
                for d in (meter.site.site_devices if meter.site else [])
                if d.device_type == "BATTERY"
            ),
            None,
        )
        device = meter.device
        rows.append(
            {
                "meter_id": meter.meter_id,
                "partner_reference": meter.partner_reference,
                "transmission_region": meter.transmission_region,
                "customer_classification": meter.customer_classification,
                "meter_type": meter.meter_type,
                "load_types": meter.load_types,
                "customer_group": meter.customer_group,
                "tags": meter.tags,
                "is_archived": meter.is_archived,
                "company_name": meter.customer.end_customer_company_name
                if meter.customer
                else None,
                "city": meter.customer.city if meter.customer else None,
                "state_or_province_code": (
                    meter.customer.state_or_province_code if meter.customer else None
                ),
                "postal_code": meter.customer.postal_code if meter.customer else None,
                "utility_name": meter.utility.utility_name if meter.utility else None,
                "load_serving_entity": meter.utility.load_serving_entity if meter.utility else None,
                "tariff": meter.utility.tariff if meter.utility else None,
                "load_zone": meter.site.load_zone if meter.site else None,
                "device_type": device.device_type if device else None,
                "has_battery": "BATTERY_STORAGE" in meter.load_types,
                "battery_power_kw": _first(
                    device and device.battery_power_capacity_kw,
                    battery and battery.power_capacity_kw,
                ),
                "battery_energy_kwh": _first(
                    device and device.battery_energy_capacity_kwh,
                    battery and battery.energy_capacity_kwh,
                ),
                "battery_duration_hours": device.battery_duration_hours if device else None,
                "battery_min_soc_pct": (
                    battery.battery_min_state_of_charge_percentage if battery else None
                ),
                "battery_max_soc_pct": (
                    battery.battery_max_state_of_charge_percentage if battery else None
                ),
                "leap_created_at": meter.audit.created_at,
                "leap_updated_at": meter.audit.updated_at,
                "details": details_json,
                "attributes_hash": hashlib.sha256(details_json.encode()).hexdigest(),
            }
        )
    return pl.DataFrame(rows, schema=METER_SCHEMA)


ENROLLMENT_SCHEMA = {
    "meter_id": pl.String,
    "program_identifier": pl.String,
    "delivery_period": pl.String,
    "delivery_period_start": UTC_TS,
    "delivery_period_end": UTC_TS,
    "enrollment_status": pl.String,
    "market_group_id": pl.String,
    "market_group_name": pl.String,
    "transmission_region": pl.String,
    "global_enrollment_status": pl.String,
}

METER_ENROLLMENT_STATUS_SCHEMA = {
    "meter_id": pl.String,
    "partner_reference": pl.String,
    "transmission_region": pl.String,
    "global_enrollment_status": pl.String,
    "is_archived": pl.Boolean,
    "program_count": pl.Int64,
    "partner_actions_required": pl.Int64,
    "leap_updated_at": UTC_TS,
}

PARTICIPATION_SCHEMA = {
    "meter_id": pl.String,
    "participation_preference": pl.String,
    "start_time": UTC_TS,
    "end_time": UTC_TS,
    "reason": pl.String,
}


def enrollment_frames(
    records: list[MeterEnrollment],
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(enrollments, meter_enrollment_status, participation_preferences).

    ``enrollments`` has one row per meter, program and delivery period; the per-meter
    global status lives in ``meter_enrollment_status``, and idle/disenroll windows in
    ``participation_preferences`` (UTC, end exclusive, null end = open-ended).
    """
    programs, statuses, preferences = [], [], []
    for record in records:
        for pe in record.program_enrollment:
            programs.append(
                {
                    "meter_id": record.meter_id,
                    "program_identifier": pe.program_identifier,
                    "delivery_period": pe.delivery_period,
                    "delivery_period_start": pe.delivery_period_start_date_time,
                    "delivery_period_end": pe.delivery_period_end_date_time,
                    "enrollment_status": pe.enrollment_status,
                    "market_group_id": pe.market_group_id,
                    "market_group_name": pe.market_group_name,
                    "transmission_region": record.transmission_region,
                    "global_enrollment_status": record.global_enrollment_status,
                }
            )
        partner_actions = (record.required_actions or {}).get("partner") or []
        statuses.append(
            {
                "meter_id": record.meter_id,
                "partner_reference": record.partner_reference,
                "transmission_region": record.transmission_region,
                "global_enrollment_status": record.global_enrollment_status,
                "is_archived": record.is_archived,
                "program_count": len(record.program_enrollment),
                "partner_actions_required": len(partner_actions),
                "leap_updated_at": record.audit.updated_at,
            }
        )
        for pp in record.participation_preferences:
            preferences.append(
                {
                    "meter_id": record.meter_id,
                    "participation_preference": pp.participation_preference,
                    "start_time": pp.start_time,
                    "end_time": pp.end_time,
                    "reason": pp.reason,
                }
            )
    return (
        pl.DataFrame(programs, schema=ENROLLMENT_SCHEMA),
        pl.DataFrame(statuses, schema=METER_ENROLLMENT_STATUS_SCHEMA),
        pl.DataFrame(preferences, schema=PARTICIPATION_SCHEMA),
    )


NOMINATION_SCHEMA = {
    "meter_id": pl.String,
    "program_identifier": pl.String,
    "start_time": UTC_TS,
    "end_time": UTC_TS,
    "source": pl.String,
    "nomination_kw": pl.Float64,
    "updated_at": UTC_TS,
}


def nominations_frame(nominations: list[Nomination]) -> pl.DataFrame:
    """One row per nomination: kW committed for a program over ``[start_time, end_time)``
    (UTC; null end = open-ended)."""
    return pl.DataFrame(
        [
            {
                "meter_id": n.meter_id,
                "program_identifier": n.program_identifier,
                "start_time": n.start_time,
                "end_time": n.end_time,
                "source": n.source,
                "nomination_kw": n.nomination_kw,
                "updated_at": n.updated_at,
            }
            for n in nominations
        ],
        schema=NOMINATION_SCHEMA,
    )


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)
