"""Deterministic synthetic C&I portfolio: meters, enrollments, nominations, market groups and dispatch history.

``build_portfolio(seed, n_meters, history_days, anchor)`` is pure: the same arguments always give the same
portfolio (one ``random.Random(seed)``, UUIDs drawn from it). Records are plain dicts shaped exactly like
Leap's API responses (``MeterDetailsResponse``, the enrollment fields of ``MeterEnrollmentResponse``,
nominations of ``/v2/meters/nominations/search``); dispatch events keep every revision so that a webhook
replay can send them in order, while the search endpoints serve the latest one.

All times are UTC. ``anchor`` (default: today's UTC midnight) is the portfolio's "now": dispatch history runs
from ``anchor - history_days`` to ``anchor + 3 days`` (exclusive).
"""

from __future__ import annotations

import copy
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from .catalog import (
    ARCHETYPES,
    BATTERY_INSTALLERS,
    BATTERY_MODELS,
    COMPANY_SUFFIXES,
    CONTACT_FIRST_NAMES,
    CONTACT_LAST_NAMES,
    CONTACT_TITLES,
    NAME_PREFIXES,
    PROGRAMS,
    REGION_SHARES,
    REGION_UTILITIES,
    STREET_NAMES,
    UTILITIES,
    ProgramInfo,
)
from .timefmt import fmt_offset, fmt_z, fmt_z_millis, parse_datetime

#: how many days after the anchor the dispatch history reaches (day-ahead awards and scheduled events)
DAYS_AHEAD = 3
MONTH_ABBR = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
OPEN_END = "9000-01-01T00:00:00Z"


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID string drawn from ``rng`` (deterministic, unlike ``uuid.uuid4``)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def default_anchor() -> datetime:
    """Today's midnight, UTC."""
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


@dataclass
class SiteProfile:
    """Sandbox-only facts about a site that Leap does not expose (used for interval data and ground truth).

    Power in kW, energy in kWh; ``timezone`` is the market's local zone.
    """

    meter_id: str
    archetype: str
    transmission_region: str
    utility_name: str
    timezone: str
    peak_load_kw: float
    base_load_kw: float
    battery_power_kw: float | None = None
    battery_energy_kwh: float | None = None
    is_battery_submeter: bool = False


@dataclass
class DispatchRevision:
    """One published version of a dispatch timeslot.

    ``timeslot`` is the JSON object exactly as the search endpoint serves it (``meter_event_id`` or
    ``market_group_event_id`` first). ``published_at`` (UTC) is when Leap would have sent it.
    """

    revision: int
    published_at: datetime
    timeslot: dict


@dataclass
class DispatchEvent:
    """A meter-level (``level="meter"``) or group-level (``level="group"``) dispatch event and its revisions.

    ``recipient_id`` is the meter_id or market_group_id; ``meter_ids`` lists the group's meters at dispatch
    time (for a meter event, just the meter).
    """

    level: str
    event_id: str
    recipient_id: str
    program: str
    stream: str
    meter_ids: list[str]
    revisions: list[DispatchRevision] = field(default_factory=list)

    @property
    def latest(self) -> dict:
        """The timeslot as of the latest revision."""
        return self.revisions[-1].timeslot

    @property
    def start_time(self) -> datetime:
        return parse_datetime(self.latest["start_time"])

    @property
    def end_time(self) -> datetime:
        return parse_datetime(self.latest["end_time"])

    def add_revision(self, published_at: datetime, **changes) -> DispatchRevision:
        """Append a revision: the latest timeslot with ``changes`` applied."""
        timeslot = copy.deepcopy(self.latest)
        timeslot.update(changes)
        revision = DispatchRevision(len(self.revisions) + 1, published_at, timeslot)
        self.revisions.append(revision)
        return revision


@dataclass
class Portfolio:
    """The synthetic portfolio. Dicts are keyed by meter_id / market_group_id, in generation order."""

    seed: int
    n_meters: int
    history_days: int
    anchor: datetime
    meters: dict[str, dict]
    #: enrollment-only fields per meter: audit, global_enrollment_status, participation_preferences,
    #: program_enrollment, required_actions (identity fields come from ``meters``; see ``enrollment``)
    enrollments: dict[str, dict]
    nominations: list[dict]
    market_groups: dict[str, dict]
    meter_events: list[DispatchEvent]
    group_events: list[DispatchEvent]
    sites: dict[str, SiteProfile]

    IDENTITY_FIELDS = (
        "meter_id",
        "partner_reference",
        "transmission_region",
        "customer_classification",
        "load_types",
        "meter_type",
        "connection_references",
        "customer_group",
        "tags",
        "is_archived",
    )

    def enrollment(self, meter_id: str) -> dict:
        """The ``MeterEnrollmentResponse`` of a meter (identity fields taken live from the meter record)."""
        meter = self.meters[meter_id]
        record = {k: copy.deepcopy(meter[k]) for k in self.IDENTITY_FIELDS if k in meter}
        record.update(copy.deepcopy(self.enrollments[meter_id]))
        return record

    def events(self, level: str) -> list[DispatchEvent]:
        return self.meter_events if level == "meter" else self.group_events

    @property
    def history_start(self) -> datetime:
        return self.anchor - timedelta(days=self.history_days)

    @property
    def history_end(self) -> datetime:
        return self.anchor + timedelta(days=DAYS_AHEAD)


# --- construction -------------------------------------------------------------------------------------------


def _local_midnight_utc(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def delivery_periods(
    program: ProgramInfo, tz: ZoneInfo, start: datetime, end: datetime
) -> list[dict]:
    """The program's delivery periods overlapping [start, end): name and UTC bounds (local-midnight aligned)."""
    k = program.period_months
    local_start = start.astimezone(tz)
    year, month = local_start.year, ((local_start.month - 1) // k) * k + 1
    periods = []
    while True:
        end_year, end_month = _add_months(year, month, k)
        period_start = _local_midnight_utc(date(year, month, 1), tz)
        period_end = _local_midnight_utc(date(end_year, end_month, 1), tz)
        if period_start >= end:
            break
        if k == 1:
            name = f"{program.period_prefix}_{year}_{MONTH_ABBR[month - 1]}"
        else:
            last_year, last_month = _add_months(year, month, k - 1)
            name = f"{program.period_prefix}_{year}_{MONTH_ABBR[month - 1]}_{MONTH_ABBR[last_month - 1]}"
            if last_year != year:
                name = f"{program.period_prefix}_{year}_{MONTH_ABBR[month - 1]}_{last_year}_{MONTH_ABBR[last_month - 1]}"
        periods.append({"name": name, "start": period_start, "end": period_end})
        year, month = end_year, end_month
    return periods


def _region_counts(n: int) -> list[str]:
    caiso = round(n * REGION_SHARES[0][1])
    nyiso = round(n * REGION_SHARES[1][1])
    ercot = n - caiso - nyiso
    return ["CAISO"] * caiso + ["NYISO"] * nyiso + ["ERCOT"] * ercot


def _weighted(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices], k=1)[0]


def _build_meter(
    rng: random.Random, index: int, region: str, battery: str | None, anchor: datetime
):
    """One MeterDetailsResponse plus its SiteProfile. ``battery``: None, "site" or "submeter"."""
    utility = UTILITIES[_weighted(rng, REGION_UTILITIES[region])]
    archetype = rng.choice(ARCHETYPES)
    meter_id = new_uuid(rng)
    prefix = rng.choice(NAME_PREFIXES)
    site_name = rng.choice(archetype.name_patterns).format(p=prefix)
    company = f"{site_name} {rng.choice(COMPANY_SUFFIXES)}"
    city, postal_code = rng.choice(utility.cities)
    peak_kw = round(rng.uniform(*archetype.peak_kw_range), -1)
    base_kw = round(peak_kw * rng.uniform(0.35, 0.6), 1)

    load_types = list(archetype.load_types)
    for extra in archetype.optional_load_types:
        if rng.random() < 0.4:
            load_types.append(extra)
    meter_type = "UTILITY_METER"
    battery_kw = battery_kwh = None
    if battery:
        battery_kw = float(max(100, round(peak_kw * rng.uniform(0.15, 0.45) / 50) * 50))
        duration_h = rng.choice((2, 4, 4))
        battery_kwh = battery_kw * duration_h
        if battery == "submeter":
            meter_type = "SUBMETER"
            load_types = ["BATTERY_STORAGE"]
        else:
            load_types.append("BATTERY_STORAGE")

    created_at = anchor - timedelta(days=rng.randint(120, 700), seconds=rng.randint(0, 86399))
    updated_at = created_at + timedelta(days=rng.randint(0, 100), seconds=rng.randint(0, 86399))
    updated_at = min(updated_at, anchor - timedelta(days=1, seconds=rng.randint(0, 86399)))
    first, last = rng.choice(CONTACT_FIRST_NAMES), rng.choice(CONTACT_LAST_NAMES)
    domain = "".join(ch for ch in prefix.lower() if ch.isalnum())
    tariff = utility.tariffs[1] if peak_kw >= utility.large_site_kw else utility.tariffs[0]
    partner_reference = f"ci-{region.lower()}-{index + 1:03d}"

    meter: dict = {
        "meter_id": meter_id,
        "partner_reference": partner_reference,
        "transmission_region": region,
        "customer_classification": "COMMERCIAL",
        "load_types": load_types,
        "meter_type": meter_type,
        "connection_references": [f"conn-{partner_reference}"],
        "customer_group": archetype.customer_group,
        "tags": ["c-and-i", archetype.key.replace("_", "-")] + (["battery"] if battery else []),
        "is_archived": False,
        "customer": {
            "street_1": f"{rng.randint(100, 9899)} {rng.choice(STREET_NAMES)}",
            "postal_code": postal_code,
            "city": city,
            "state_or_province_code": utility.state,
            "country_code": "US",
            "end_customer_name": f"{first} {last}",
            "end_customer_title": rng.choice(CONTACT_TITLES),
            "end_customer_email": f"{first.lower()}.{last.lower()}@{domain}.example.com",
            "end_customer_phone_number": f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
            "end_customer_company_name": company,
            "partner_offering_name": "Sandbox Flex C&I",
            "partner_offering_date": (created_at - timedelta(days=rng.randint(5, 60)))
            .date()
            .isoformat(),
            "partner_customer_reference": f"cust-{partner_reference}",
        },
        "site": {
            "load_zone": utility.load_zone,
            "number_of_devices": 1 if battery else 0,
            "on_site_fossil_generator": archetype.key in ("hospital", "data_center")
            and rng.random() < 0.7,
            "renewable_generator": rng.random() < 0.3,
            "site_devices": [],
        },
        "utility": {
            "utility_name": utility.utility_name,
            "load_serving_entity": rng.choice(utility.load_serving_entities),
            "electric_service_account_number": f"{rng.randint(10**9, 10**10 - 1)}",
            "tariff": tariff,
            "voltage": "Secondary" if peak_kw < 1500 else "Primary",
            "utility_meter_serial_number": f"UMS{rng.randint(10**7, 10**8 - 1)}",
            "bill_service_agreement_number": f"{rng.randint(10**9, 10**10 - 1)}",
            "bill_customer_account_number": f"{rng.randint(10**9, 10**10 - 1)}",
        },
        "audit": {
            "created_by": "PARTNER",
            "created_at": fmt_offset(created_at),
            "updated_at": fmt_offset(updated_at),
        },
    }
    if battery:
        manufacturer, model = rng.choice(BATTERY_MODELS)
        serial = f"BAT-{rng.randint(10**6, 10**7 - 1)}"
        install = created_at - timedelta(days=rng.randint(30, 400))
        meter["device"] = {
            "device_type": "BATTERY",
            "device_serial_number": serial,
            "device_model": model,
            "device_manufacturer": manufacturer,
            "install_date": install.date().isoformat(),
            "battery_power_capacity_kw": battery_kw,
            "battery_energy_capacity_kwh": battery_kwh,
            "battery_duration_hours": int(battery_kwh / battery_kw),
            "permission_to_operate_date": (install + timedelta(days=rng.randint(10, 60)))
            .date()
            .isoformat(),
        }
        meter["site"]["site_devices"].append(
            {
                "device_type": "BATTERY",
                "model": model,
                "manufacturer": manufacturer,
                "serial_number": serial,
                "energy_capacity_kwh": battery_kwh,
                "power_capacity_kw": battery_kw,
                "energy_capacity_duration_hours": int(battery_kwh / battery_kw),
                "model_year": install.year,
                "max_energy_production_rate_kw": battery_kw,
                "max_energy_consumption_rate_kw": battery_kw,
                "battery_max_state_of_charge_percentage": rng.choice((90, 95, 100)),
                "battery_min_state_of_charge_percentage": rng.choice((5, 10, 15, 20)),
                "installer": rng.choice(BATTERY_INSTALLERS),
                "pv_connected": meter["site"]["renewable_generator"],
            }
        )
    if region == "CAISO" and (battery or meter["site"]["renewable_generator"]):
        meter["caiso"] = {
            "is_receiving_sgip_funding": bool(battery) and rng.random() < 0.5,
            "nem_type": "NEM2",
        }
    if region == "NYISO":
        meter["nyiso"] = {"cbl_method": "AVERAGE_DAY", "company_type": "CORPORATION"}

    site = SiteProfile(
        meter_id=meter_id,
        archetype=archetype.key,
        transmission_region=region,
        utility_name=utility.utility_name,
        timezone=utility.timezone,
        peak_load_kw=peak_kw,
        base_load_kw=base_kw,
        battery_power_kw=battery_kw,
        battery_energy_kwh=battery_kwh,
        is_battery_submeter=battery == "submeter",
    )
    return meter, site


def _choose_programs(rng: random.Random, region: str, has_battery: bool) -> list[str]:
    if region == "CAISO":
        programs = ["CCA"] if rng.random() < 0.75 else ["ELRP"]
        if has_battery:
            programs.append("CEC-DSGS" if rng.random() < 0.6 else "CEC-DSGS-OPTION4")
        elif programs == ["CCA"] and rng.random() < 0.15:
            programs.append("ELRP")
        return programs
    if region == "NYISO":
        programs = ["NYISO-SCR"] if rng.random() < 0.8 else []
        programs.append("CONED-CSRP" if rng.random() < 0.6 else "CONED-DLRP")
        return programs
    return ["ERCOT-ERS"]


def build_portfolio(
    seed: int = 7, n_meters: int = 72, history_days: int = 90, anchor: datetime | None = None
) -> Portfolio:
    """Build the synthetic C&I portfolio. Pure and deterministic in (seed, n_meters, history_days, anchor).

    ``anchor`` (UTC; default today's UTC midnight) is the portfolio's present: dispatch events start in
    [anchor - history_days, anchor + 3 days). Roughly 70 % CAISO, 15 % NYISO, 15 % ERCOT meters; a third
    have a battery (a quarter of those are battery SUBMETERs).
    """
    if n_meters < 1:
        raise ValueError("n_meters must be at least 1")
    if history_days < 1:
        raise ValueError("history_days must be at least 1")
    anchor = default_anchor() if anchor is None else anchor
    if anchor.tzinfo is None:
        anchor = anchor.replace(tzinfo=UTC)
    anchor = anchor.astimezone(UTC)
    rng = random.Random(seed)

    regions = _region_counts(n_meters)
    rng.shuffle(regions)
    battery_idx = set(rng.sample(range(n_meters), round(n_meters / 3)))
    submeter_idx = (
        set(rng.sample(sorted(battery_idx), max(1, len(battery_idx) // 4)))
        if battery_idx
        else set()
    )

    meters: dict[str, dict] = {}
    sites: dict[str, SiteProfile] = {}
    for i, region in enumerate(regions):
        battery = ("submeter" if i in submeter_idx else "site") if i in battery_idx else None
        meter, site = _build_meter(rng, i, region, battery, anchor)
        meters[meter["meter_id"]] = meter
        sites[meter["meter_id"]] = site

    market_groups = {}
    group_by_program = {}
    for program in PROGRAMS.values():
        group_id = new_uuid(rng)
        market_groups[group_id] = {
            "market_group_id": group_id,
            "market_group_name": program.market_group_name,
            "program_identifier": program.program_identifier,
            "transmission_region": program.transmission_region,
            "meter_ids": [],
        }
        group_by_program[program.program_identifier] = group_id

    window_start = anchor - timedelta(days=history_days)
    window_end = anchor + timedelta(days=35)
    meter_ids = list(meters)
    # A few meters get special treatment; only non-battery meters are archived so battery counts stay put.
    plain = [m for m in meter_ids if sites[m].battery_power_kw is None]
    archived = set(rng.sample(plain, 1)) if len(plain) >= 8 else set()
    others = [m for m in meter_ids if m not in archived]
    n_special = max(1, len(others) // 24) if len(others) >= 12 else 0
    special = rng.sample(others, min(len(others), 4 * n_special))
    pending = set(special[:n_special])
    eligible = set(special[n_special : 2 * n_special])
    idle = set(special[2 * n_special : 3 * n_special])
    disenroll = set(special[3 * n_special :])

    enrollments: dict[str, dict] = {}
    nominations: list[dict] = []
    for meter_id in meter_ids:
        meter, site = meters[meter_id], sites[meter_id]
        created_at = parse_datetime(meter["audit"]["created_at"])
        tz = ZoneInfo(site.timezone)
        audit = {
            "created_by": "PARTNER",
            "created_at": meter["audit"]["created_at"],
            "updated_at": fmt_offset(
                anchor - timedelta(days=rng.randint(1, 20), seconds=rng.randint(0, 86399))
            ),
        }
        prefs = [
            {
                "participation_preference": "PARTICIPATE",
                "start_time": fmt_z(created_at),
                "end_time": OPEN_END,
            }
        ]
        if meter_id in archived:
            meter["is_archived"] = True
            enrollments[meter_id] = {
                "audit": audit,
                "global_enrollment_status": "NOT_PARTICIPATING",
                "participation_preferences": prefs,
                "program_enrollment": [],
                "required_actions": {"partner": [], "leap": []},
            }
            continue
        status = (
            "PENDING" if meter_id in pending else "ELIGIBLE" if meter_id in eligible else "ACTIVE"
        )
        if meter_id in idle:
            idle_start = _local_midnight_utc(
                (anchor - timedelta(days=rng.randint(20, 50))).date(), tz
            )
            idle_end = idle_start + timedelta(days=rng.randint(7, 14))
            prefs.append(
                {
                    "participation_preference": "IDLE",
                    "start_time": fmt_z(idle_start),
                    "end_time": fmt_z(idle_end),
                    "reason": "Planned maintenance",
                }
            )
        if meter_id in disenroll:
            leave = _local_midnight_utc(
                (anchor + timedelta(days=rng.randint(10, 40))).date().replace(day=1), tz
            )
            if leave <= anchor:
                leave = _local_midnight_utc(date(*_add_months(leave.year, leave.month, 1), 1), tz)
            prefs[0]["end_time"] = fmt_z(leave)
            prefs.append(
                {
                    "participation_preference": "DISENROLL",
                    "start_time": fmt_z(leave),
                    "end_time": "2099-01-01T00:00:00Z",
                    "reason": "Customer request",
                }
            )
        # most meters were enrolled before the window; some joined during it
        joined = window_start - timedelta(days=40)
        if status == "ACTIVE" and rng.random() < 0.1:
            joined = anchor - timedelta(days=rng.randint(20, max(21, history_days - 10)))
        programs = _choose_programs(
            rng, site.transmission_region, site.battery_power_kw is not None
        )
        program_enrollment = []
        required = {"partner": [], "leap": []}
        for program_id in programs:
            program = PROGRAMS[program_id]
            group_id = group_by_program[program_id]
            periods = delivery_periods(program, tz, max(window_start, joined), window_end)
            for period in periods:
                entry = {
                    "program_identifier": program_id,
                    "delivery_period": period["name"],
                    "delivery_period_start_date_time": fmt_offset(period["start"]),
                    "delivery_period_end_date_time": fmt_offset(period["end"]),
                    "enrollment_status": status,
                    "enrollment_deadlines": [
                        {
                            "enrollment_deadline_date_time": fmt_z_millis(
                                period["start"] - timedelta(days=2)
                            ),
                            "activation_date_time": fmt_z_millis(period["start"]),
                        }
                    ],
                }
                if status == "ACTIVE":
                    entry["market_group_id"] = group_id
                    entry["market_group_name"] = program.market_group_name
                program_enrollment.append(entry)
            if status == "ACTIVE":
                market_groups[group_id]["meter_ids"].append(meter_id)
            current = periods[-1]
            for p in periods:
                if p["start"] <= anchor < p["end"]:
                    current = p
            if status == "PENDING":
                required["partner"].append(
                    _action(
                        program_id,
                        current,
                        "DOCUMENTS_SIGNED",
                        "End customer must sign the program agreement",
                        "SERV_0002",
                    )
                )
                required["leap"].append(
                    _action(
                        program_id,
                        current,
                        "IS_ASSIGNED_TO_A_RESOURCE",
                        "The meter is not enrolled in the program",
                        "LEAP_0001",
                    )
                )
            elif status == "ELIGIBLE":
                required["partner"].append(
                    _action(
                        program_id,
                        current,
                        "HAS_NOMINATIONS",
                        "Submit a nomination for the next delivery period",
                        "SERV_0005",
                    )
                )
            if status == "ACTIVE":
                nominations.extend(_nominations(rng, meter_id, site, program, periods))
        enrollments[meter_id] = {
            "audit": audit,
            "global_enrollment_status": status,
            "participation_preferences": prefs,
            "program_enrollment": program_enrollment,
            "required_actions": required,
        }

    # local import: dispatch generation needs the finished meters/enrollments/nominations
    from .dispatch_history import generate_dispatch_history

    portfolio = Portfolio(
        seed=seed,
        n_meters=n_meters,
        history_days=history_days,
        anchor=anchor,
        meters=meters,
        enrollments=enrollments,
        nominations=nominations,
        market_groups=market_groups,
        meter_events=[],
        group_events=[],
        sites=sites,
    )
    generate_dispatch_history(rng, portfolio)
    return portfolio


def _action(program_id: str, period: dict, action_type: str, description: str, code: str) -> dict:
    return {
        "program_identifier": program_id,
        "delivery_period": period["name"],
        "enrollment_deadline_date_time": fmt_z_millis(period["start"] - timedelta(days=2)),
        "action_type": action_type,
        "action_description": description,
        "action_code": code,
    }


def _nominations(
    rng: random.Random, meter_id: str, site: SiteProfile, program: ProgramInfo, periods
) -> list[dict]:
    """Nominations (kW, 2 dp) of one meter in one program: monthly windows or one open-ended window."""
    if site.battery_power_kw is not None:
        base = site.battery_power_kw * rng.uniform(0.7, 0.95)
        if not site.is_battery_submeter:
            base += site.peak_load_kw * rng.uniform(0.0, 0.1)
    else:
        base = site.peak_load_kw * rng.uniform(0.08, 0.25)
    if program.program_identifier == "CEC-DSGS-OPTION4":
        base *= 0.5
    out = []
    windows = (
        [(p["start"], p["end"]) for p in periods]
        if program.monthly_nominations
        else [(periods[0]["start"], None)]
    )
    for start, end in windows:
        out.append(
            {
                "meter_id": meter_id,
                "program_identifier": program.program_identifier,
                "start_time": fmt_z(start),
                "end_time": fmt_z(end) if end else None,
                "source": "LEAP" if rng.random() < 0.6 else "PARTNER",
                "nomination_kw": round(base * rng.uniform(0.9, 1.1), 2),
                "updated_at": fmt_z(
                    start - timedelta(days=rng.randint(3, 20), seconds=rng.randint(0, 86399))
                ),
            }
        )
    return out
