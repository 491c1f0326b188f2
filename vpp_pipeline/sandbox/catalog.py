"""Static reference data for the synthetic C&I portfolio: enums from Leap's OpenAPI files, utilities, tariffs,
load zones, site archetypes and per-program dispatch profiles.

Enum values are copied from Leap's published specs (meters v2, enrollments v2, dispatch v2). Program dispatch
attributes (priority, performance_compensation_cap, is_voluntary, dispatch_event_types) follow the per-program
EXAMPLES of Leap's dispatch spec (``reference/leap/dispatch-notification-examples.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Leap enums (exact values) ---------------------------------------------------------------------------

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
ACTION_TYPES = (
    "IS_AUTHORIZED",
    "DOCUMENTS_SIGNED",
    "HAS_AMI",
    "NOT_ENROLLED_IN_CONFLICTING_PROGRAM",
    "PARTICIPATING",
    "HAS_MARKET_REGISTRATION",
    "NO_MISSING_FIELDS",
    "GENERATOR",
    "ADDRESS",
    "HAS_NOMINATIONS",
    "HAS_BIDDING_STRATEGY",
    "IS_ELIGIBLE",
    "IS_ASSIGNED_TO_A_RESOURCE",
    "MEETS_EXTRA_PROGRAM_REQUIREMENTS",
)
PROGRAM_IDENTIFIERS = (
    "CAISO-CCA-SC_ONLY",
    "CCA",
    "CEC-DSGS-OPTION4",
    "CEC-DSGS",
    "CONED-CSRP",
    "CONED-DLRP",
    "DRAM",
    "ELRP",
    "ENERGY-ONLY",
    "ERCOT-ERS",
    "EVERSOURCE-CS",
    "MA_DOER-CPS",
    "NATGRID-CS",
    "NRG-REALTIME",
    "NRG-RED",
    "NYISO-SCR",
    "ONCOR-CLM",
    "PGE-ART",
    "PGE-CBP",
    "PJM-CAPACITY",
    "PSEGLI-CSRP",
    "PSEGLI-DLRP",
    "RIE-CS",
    "UNITIL-CS",
    "PSE-RPO",
    "SRP-RPO",
    "TVA-RPO",
    "CAISO-ELRP-A4",
    "CEC-DSGS-OPTION2",
    "ENERGYHUB-CS",
    "CT_GB-ESS",
)
PERFORMANCE_COMPENSATION_CAPS = ("grid-exports-allowed", "up-to-nomination", "up-to-site-load")
DISPATCH_EVENT_TYPES = ("hour-ahead", "day-ahead", "5m", "capacity-test", "standard")

# --- Utilities, tariffs, load zones ------------------------------------------------------------------------

#: The C&I tariff codes the sandbox assigns (``utility.tariff``). A tariff configuration file refers to these.
TARIFF_CODES = (
    "PGE-B19",
    "PGE-B20",
    "SCE-TOU-GS-3",
    "SCE-TOU-8",
    "SDGE-AL-TOU",
    "CONED-SC9",
    "ONCOR-SECONDARY",
    "CENTERPOINT-SECONDARY",
)


@dataclass(frozen=True)
class Utility:
    """A utility territory: Leap ``utility_name`` enum value plus the site attributes that follow from it."""

    utility_name: str
    transmission_region: str
    load_zone: str
    state: str
    timezone: str
    #: (tariff for sites below ``large_site_kw``, tariff for larger sites)
    tariffs: tuple[str, str]
    large_site_kw: float
    load_serving_entities: tuple[str, ...]
    #: (city, postal code) pairs inside the territory
    cities: tuple[tuple[str, str], ...]


UTILITIES: dict[str, Utility] = {
    "PGE": Utility(
        "PGE",
        "CAISO",
        "DLAP_PGAE-APND",
        "CA",
        "America/Los_Angeles",
        ("PGE-B19", "PGE-B20"),
        1000.0,
        (
            "PGE",
            "Peninsula Clean Energy",
            "MCE",
            "Silicon Valley Clean Energy",
            "East Bay Community Energy",
        ),
        (
            ("San Jose", "95112"),
            ("Oakland", "94607"),
            ("Fremont", "94538"),
            ("Hayward", "94545"),
            ("Fresno", "93721"),
            ("Stockton", "95206"),
            ("San Francisco", "94107"),
            ("Richmond", "94804"),
        ),
    ),
    "SCE": Utility(
        "SCE",
        "CAISO",
        "DLAP_SCE-APND",
        "CA",
        "America/Los_Angeles",
        ("SCE-TOU-GS-3", "SCE-TOU-8"),
        500.0,
        ("SCE", "Clean Power Alliance", "Orange County Power Authority"),
        (
            ("Irvine", "92614"),
            ("Ontario", "91761"),
            ("Long Beach", "90802"),
            ("Santa Ana", "92705"),
            ("Rancho Cucamonga", "91730"),
            ("Pomona", "91768"),
        ),
    ),
    "SDGE": Utility(
        "SDGE",
        "CAISO",
        "DLAP_SDGE-APND",
        "CA",
        "America/Los_Angeles",
        ("SDGE-AL-TOU", "SDGE-AL-TOU"),
        1e12,
        ("SDGE", "San Diego Community Power"),
        (
            ("San Diego", "92121"),
            ("Chula Vista", "91911"),
            ("Escondido", "92029"),
            ("Carlsbad", "92008"),
        ),
    ),
    # Leap's utility enum spells Consolidated Edison "CECONY"; the tariff codes keep the common "CONED" prefix.
    "CECONY": Utility(
        "CECONY",
        "NYISO",
        "N.Y.C.",
        "NY",
        "America/New_York",
        ("CONED-SC9", "CONED-SC9"),
        1e12,
        ("CECONY", "Constellation NewEnergy", "Direct Energy Business"),
        (
            ("New York", "10001"),
            ("New York", "10013"),
            ("Brooklyn", "11201"),
            ("Bronx", "10451"),
            ("Long Island City", "11101"),
        ),
    ),
    "ONCOR": Utility(
        "ONCOR",
        "ERCOT",
        "LZ_NORTH",
        "TX",
        "America/Chicago",
        ("ONCOR-SECONDARY", "ONCOR-SECONDARY"),
        1e12,
        ("TXU Energy", "Reliant Energy Retail Services", "Constellation NewEnergy"),
        (("Dallas", "75207"), ("Fort Worth", "76102"), ("Irving", "75038"), ("Plano", "75074")),
    ),
    "CENTERPOINT": Utility(
        "CENTERPOINT",
        "ERCOT",
        "LZ_HOUSTON",
        "TX",
        "America/Chicago",
        ("CENTERPOINT-SECONDARY", "CENTERPOINT-SECONDARY"),
        1e12,
        ("Reliant Energy Retail Services", "TXU Energy", "Engie Resources"),
        (("Houston", "77002"), ("Houston", "77041"), ("Pasadena", "77506"), ("Katy", "77449")),
    ),
}

#: utility_name choices (with weights) per region
REGION_UTILITIES: dict[str, tuple[tuple[str, float], ...]] = {
    "CAISO": (("PGE", 0.5), ("SCE", 0.35), ("SDGE", 0.15)),
    "NYISO": (("CECONY", 1.0),),
    "ERCOT": (("ONCOR", 0.5), ("CENTERPOINT", 0.5)),
}

#: target share of meters per region (the remainder after CAISO and NYISO goes to ERCOT)
REGION_SHARES = (("CAISO", 0.70), ("NYISO", 0.15), ("ERCOT", 0.15))

REGION_TIMEZONES = {
    "CAISO": "America/Los_Angeles",
    "NYISO": "America/New_York",
    "ERCOT": "America/Chicago",
}

STREET_NAMES = (
    "Industrial Pkwy",
    "Commerce Way",
    "Market St",
    "Harbor Blvd",
    "Technology Dr",
    "Main St",
    "Airport Rd",
    "Logistics Ct",
    "Enterprise Ave",
    "Park Ave",
    "Broadway",
    "Warehouse Row",
    "Innovation Blvd",
    "Railroad Ave",
)

# --- Site archetypes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Archetype:
    """A kind of C&I site: how it is named, what it can curtail, how big it is (peak demand, kW)."""

    key: str
    name_patterns: tuple[str, ...]
    load_types: tuple[str, ...]
    optional_load_types: tuple[str, ...]
    peak_kw_range: tuple[float, float]
    customer_group: str


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "office",
        ("{p} Office Tower", "{p} Corporate Center", "{p} Business Park"),
        ("HVAC", "LIGHTING"),
        ("BUILDING_AUTOMATION", "EV_CHARGING"),
        (250, 1200),
        "Commercial Real Estate",
    ),
    Archetype(
        "cold_storage",
        ("{p} Cold Storage", "{p} Refrigerated Logistics", "{p} Frozen Foods"),
        ("COLD_STORAGE",),
        ("LIGHTING", "PUMPING"),
        (300, 1500),
        "Cold Chain",
    ),
    Archetype(
        "manufacturing",
        ("{p} Manufacturing", "{p} Precision Machining", "{p} Plastics", "{p} Metal Works"),
        ("MANUFACTURING",),
        ("HVAC", "PUMPING", "LIGHTING"),
        (500, 3000),
        "Industrial",
    ),
    Archetype(
        "warehouse",
        ("{p} Distribution Center", "{p} Fulfillment Center", "{p} Logistics Hub"),
        ("LIGHTING", "HVAC"),
        ("EV_CHARGING", "BUILDING_AUTOMATION"),
        (200, 900),
        "Industrial",
    ),
    Archetype(
        "hospital",
        ("{p} Medical Center", "{p} Community Hospital"),
        ("HVAC", "WATER_HEATING"),
        ("BUILDING_AUTOMATION", "LIGHTING"),
        (1000, 4000),
        "Healthcare",
    ),
    Archetype(
        "school",
        ("{p} Unified School District", "{p} Community College", "{p} High School"),
        ("HVAC", "LIGHTING"),
        ("BUILDING_AUTOMATION",),
        (200, 1000),
        "Education",
    ),
    Archetype(
        "retail",
        ("{p} Grocery", "{p} Shopping Plaza", "{p} Home Improvement"),
        ("HVAC", "LIGHTING"),
        ("COLD_STORAGE", "EV_CHARGING"),
        (150, 700),
        "Retail",
    ),
    Archetype(
        "data_center",
        ("{p} Data Center", "{p} Colocation"),
        ("HVAC",),
        ("BUILDING_AUTOMATION",),
        (1500, 6000),
        "Technology",
    ),
    Archetype(
        "water",
        ("{p} Water District Pump Station", "{p} Wastewater Treatment Plant"),
        ("PUMPING",),
        ("OTHER",),
        (300, 1500),
        "Public Sector",
    ),
    Archetype(
        "hotel",
        ("{p} Hotel", "{p} Resort and Conference Center"),
        ("HVAC", "WATER_HEATING"),
        ("LIGHTING",),
        (300, 1200),
        "Hospitality",
    ),
)

NAME_PREFIXES = (
    "Bayview",
    "Sierra",
    "Pacific Crest",
    "Golden Gate",
    "Harbor Point",
    "Redwood",
    "Summit",
    "Mission",
    "Coastal",
    "Lakeside",
    "Ironwood",
    "Meridian",
    "Northstar",
    "Cypress",
    "Granite",
    "Silverline",
    "Evergreen",
    "Riverbend",
    "Highland",
    "Oakmont",
    "Canyon",
    "Bluewater",
    "Horizon",
    "Keystone",
    "Liberty",
    "Empire",
    "Hudson",
    "Lone Star",
    "Trinity",
    "Brazos",
    "Pecan Valley",
    "Sunrise",
)
COMPANY_SUFFIXES = ("Inc.", "LLC", "Holdings LLC", "Corp.", "Partners LP")
CONTACT_FIRST_NAMES = (
    "Maria",
    "James",
    "Priya",
    "David",
    "Chen",
    "Aisha",
    "Robert",
    "Elena",
    "Marcus",
    "Sofia",
)
CONTACT_LAST_NAMES = (
    "Garcia",
    "Nguyen",
    "Patel",
    "Johnson",
    "Kim",
    "Okafor",
    "Rossi",
    "Smith",
    "Lopez",
    "Cohen",
)
CONTACT_TITLES = ("Facilities Mgr", "Energy Manager", "COO", "Plant Manager", "VP Operations")

BATTERY_MODELS = (
    ("Tesla", "Megapack 2"),
    ("Fluence", "Gridstack Pro"),
    ("Sungrow", "PowerTitan"),
    ("BYD", "Chess Pro"),
    ("Stem", "PowerStore"),
)
BATTERY_INSTALLERS = (
    "Acme Installations Inc.",
    "Golden State Storage LLC",
    "GridEdge Builders",
    "Volt Partners",
)

# --- Programs ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramInfo:
    """Enrollment shape of a program: region, delivery-period naming and length, nomination style."""

    program_identifier: str
    transmission_region: str
    #: prefix of ``delivery_period`` names, e.g. ``CAISO-CCA`` -> ``CAISO-CCA_2024_OCT``
    period_prefix: str
    #: delivery periods are blocks of this many calendar months, aligned to January
    period_months: int
    #: True: one nomination per delivery month; False: one open-ended nomination
    monthly_nominations: bool
    market_group_name: str


PROGRAMS: dict[str, ProgramInfo] = {
    p.program_identifier: p
    for p in (
        ProgramInfo("CCA", "CAISO", "CAISO-CCA", 1, True, "CCA_CAISO_SANDBOX_GRP1"),
        ProgramInfo("ELRP", "CAISO", "CAISO-ELRP", 1, True, "ELRP_CAISO_SANDBOX_GRP1"),
        ProgramInfo("CEC-DSGS", "CAISO", "CEC-DSGS", 3, False, "DSGS_OPT3_SANDBOX_GRP1"),
        ProgramInfo(
            "CEC-DSGS-OPTION4", "CAISO", "CEC-DSGS-OPTION4", 3, False, "DSGS_OPT4_SANDBOX_GRP1"
        ),
        ProgramInfo("NYISO-SCR", "NYISO", "NYISO-SCR", 6, False, "SCR_NYC_SANDBOX_GRP1"),
        ProgramInfo("CONED-CSRP", "NYISO", "CONED-CSRP", 6, False, "CSRP_NYC_SANDBOX_GRP1"),
        ProgramInfo("CONED-DLRP", "NYISO", "CONED-DLRP", 6, False, "DLRP_NYC_SANDBOX_GRP1"),
        ProgramInfo("ERCOT-ERS", "ERCOT", "ERCOT-ERS", 4, False, "ERS_ERCOT_SANDBOX_GRP1"),
    )
}


@dataclass(frozen=True)
class DispatchStream:
    """One kind of dispatch a program issues, with the values from Leap's per-program examples.

    ``daily_probability`` is the chance that a local day carries such an event. Start hours are local wall
    clock; events are hour-aligned. ``energy`` is how ``energy_kw`` relates to the meter's nomination:
    ``award`` (a market award, 50-100 % of the nomination), ``nomination`` (equal to it) or ``null``.
    """

    name: str
    program: str
    daily_probability: float
    priority: int
    performance_compensation_cap: str
    is_voluntary: bool
    dispatch_event_types: tuple[str, ...]
    start_hours: tuple[int, ...]
    durations_hours: tuple[int, ...]
    energy: str
    #: True: one timeslot per hour (market awards); False: one timeslot for the whole event
    hourly_timeslots: bool = False
    #: share of event days dispatched at group level (the whole market group) instead of per meter
    group_share: float = 0.0
    update_probability: float = 0.0
    cancel_probability: float = 0.0
    #: chance of a brand-new ``hour-ahead`` timeslot right after a day-ahead award
    hour_ahead_probability: float = 0.0
    #: for ``5m`` real-time events: durations in minutes (overrides ``durations_hours``)
    durations_minutes: tuple[int, ...] = ()


DISPATCH_STREAMS: tuple[DispatchStream, ...] = (
    DispatchStream(
        "cca-day-ahead",
        "CCA",
        0.22,
        2,
        "up-to-site-load",
        False,
        ("day-ahead",),
        (16, 17, 18, 19),
        (1, 2, 3, 4),
        "award",
        hourly_timeslots=True,
        group_share=0.35,
        update_probability=0.3,
        cancel_probability=0.08,
        hour_ahead_probability=0.25,
    ),
    DispatchStream(
        "cca-capacity-test",
        "CCA",
        0.035,
        1,
        "up-to-nomination",
        False,
        ("capacity-test",),
        (17, 18, 19),
        (1, 2),
        "nomination",
        hourly_timeslots=True,
        group_share=0.3,
        cancel_probability=0.1,
    ),
    DispatchStream(
        "cca-award-and-test",
        "CCA",
        0.02,
        1,
        "up-to-site-load",
        False,
        ("day-ahead", "capacity-test"),
        (17, 18),
        (1, 2),
        "award",
        hourly_timeslots=True,
    ),
    DispatchStream(
        "cca-real-time",
        "CCA",
        0.05,
        2,
        "up-to-site-load",
        False,
        ("5m",),
        (15, 16, 17, 18, 19),
        (1,),
        "award",
        durations_minutes=(15, 30, 45, 60),
    ),
    DispatchStream(
        "elrp",
        "ELRP",
        0.07,
        3,
        "grid-exports-allowed",
        True,
        ("standard",),
        (16, 17, 18),
        (1, 2, 3, 4),
        "null",
        group_share=0.3,
        update_probability=0.25,
        cancel_probability=0.1,
    ),
    DispatchStream(
        "dsgs-option3",
        "CEC-DSGS",
        0.06,
        4,
        "grid-exports-allowed",
        True,
        ("standard",),
        (16, 17, 18, 19),
        (1, 2, 3, 4),
        "nomination",
        group_share=0.3,
        update_probability=0.2,
        cancel_probability=0.1,
    ),
    DispatchStream(
        "dsgs-option4",
        "CEC-DSGS-OPTION4",
        0.05,
        4,
        "grid-exports-allowed",
        False,
        ("standard",),
        (16, 17, 18, 19),
        (2, 3),
        "nomination",
        group_share=0.3,
        update_probability=0.2,
        cancel_probability=0.05,
    ),
    DispatchStream(
        "nyiso-scr",
        "NYISO-SCR",
        0.04,
        1,
        "up-to-nomination",
        False,
        ("standard",),
        (13, 14, 15, 16),
        (4,),
        "nomination",
        group_share=0.5,
        update_probability=0.2,
        cancel_probability=0.05,
    ),
    DispatchStream(
        "coned-csrp",
        "CONED-CSRP",
        0.07,
        3,
        "up-to-nomination",
        False,
        ("standard",),
        (14, 16, 19),
        (4,),
        "nomination",
        group_share=0.3,
        update_probability=0.15,
        cancel_probability=0.1,
    ),
    DispatchStream(
        "coned-dlrp",
        "CONED-DLRP",
        0.05,
        5,
        "up-to-nomination",
        False,
        ("standard",),
        (11, 14, 16),
        (4,),
        "nomination",
        group_share=0.3,
        update_probability=0.15,
        cancel_probability=0.1,
    ),
    DispatchStream(
        "ercot-ers",
        "ERCOT-ERS",
        0.05,
        1,
        "up-to-nomination",
        False,
        ("standard",),
        (15, 16, 17, 18),
        (1, 2, 3, 4),
        "nomination",
        group_share=0.4,
        update_probability=0.2,
        cancel_probability=0.1,
    ),
)
