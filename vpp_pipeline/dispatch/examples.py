"""Leap's per-program integration-test examples (the EXAMPLES of ``triggerTestMeterDispatchNotification`` /
``triggerTestGroupDispatchNotification``), as data, and payloads built from them with fresh ids and times.

Each example's ``priority``, ``is_voluntary``, ``performance_compensation_cap`` and ``dispatch_event_types``
are the values Leap says are "already set correctly for each program event". ``slots_h`` are the example's
timeslots as hour offsets from the example day's 00:00 UTC; ``meter_kw`` / ``group_kw`` are its
``(energy_kw, nomination_kw)`` at meter and group level (``energy_kw`` None = dispatch the maximum).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vpp_pipeline.leap.client import format_utc


@dataclass(frozen=True)
class ProgramExample:
    name: str
    programs: tuple[str, ...]
    priority: int
    is_voluntary: bool
    performance_compensation_cap: str
    dispatch_event_types: tuple[str, ...]
    slots_h: tuple[tuple[int, int], ...]
    meter_kw: tuple[float | None, float]
    group_kw: tuple[float | None, float]


EXAMPLES: tuple[ProgramExample, ...] = (
    ProgramExample("CAISO - CCA Capacity Test", ("CCA",), 1, False, "up-to-nomination", ("capacity-test",), ((0, 1), (1, 2)), (10, 10), (100, 100)),
    ProgramExample("CAISO - CCA Market Award", ("CCA",), 2, False, "up-to-site-load", ("day-ahead",), ((0, 1), (1, 2)), (8, 10), (80, 100)),
    ProgramExample("CAISO - ELRP", ("ELRP",), 3, True, "grid-exports-allowed", ("standard",), ((0, 4),), (None, 10), (None, 100)),
    ProgramExample("CAISO - DSGS Option 3", ("CEC-DSGS",), 4, True, "grid-exports-allowed", ("standard",), ((0, 2),), (10, 10), (100, 100)),
    ProgramExample("CAISO - DSGS Option 4", ("CEC-DSGS-OPTION4",), 4, False, "grid-exports-allowed", ("standard",), ((0, 2),), (1, 1), (10, 10)),
    ProgramExample("ERCOT - ERS", ("ERCOT-ERS",), 1, False, "up-to-nomination", ("standard",), ((18, 22),), (10, 10), (100, 100)),
    ProgramExample("NYISO - SCR", ("NYISO-SCR",), 1, False, "up-to-nomination", ("standard",), ((19, 20),), (10, 10), (100, 100)),
    ProgramExample("NYISO - CSRP", ("CONED-CSRP",), 3, False, "up-to-nomination", ("standard",), ((16, 20),), (10, 10), (100, 100)),
    ProgramExample("NYISO - DLRP", ("CONED-DLRP",), 5, False, "up-to-nomination", ("standard",), ((14, 18),), (10, 10), (100, 100)),
    ProgramExample("ISO-NE - Clean Peak Standard", ("MA_DOER-CPS",), 2, True, "grid-exports-allowed", ("standard",), ((14, 18),), (10, 10), (100, 100)),
    ProgramExample("ISO-NE - Connected Solutions", ("NATGRID-CS",), 1, True, "grid-exports-allowed", ("standard",), ((15, 18),), (10, 10), (100, 100)),
    ProgramExample("PJM - Capacity", ("PJM-CAPACITY",), 1, False, "up-to-nomination", ("standard",), ((15, 18),), (10, 10), (100, 100)),
)  # fmt: skip

#: Leap's schema-level example: one timeslot that is both a day-ahead award and a capacity test.
COMBINED_CCA = ProgramExample(
    "CAISO - CCA Award and Capacity Test", ("CCA",), 1, False, "up-to-site-load",
    ("day-ahead", "capacity-test"), ((0, 1),), (10, 10), (100, 100),
)  # fmt: skip


def examples_for(program: str) -> list[ProgramExample]:
    """Examples whose programs include ``program`` (case-insensitive), or whose name matches it."""
    wanted = program.strip().upper()
    return [
        e
        for e in (*EXAMPLES, COMBINED_CCA)
        if wanted in (p.upper() for p in e.programs) or e.name.upper() == wanted
    ]


def example_timeslots(
    example: ProgramExample, level: str, day_start: datetime, *, kw_scale: float = 1.0
) -> list[dict]:
    """The example's timeslots on ``day_start`` (UTC) with fresh event ids."""
    energy, nomination = example.meter_kw if level == "meter" else example.group_kw
    id_field = "meter_event_id" if level == "meter" else "market_group_event_id"
    return [
        {
            id_field: str(uuid.uuid4()),
            "start_time": format_utc(day_start + timedelta(hours=start_h)),
            "end_time": format_utc(day_start + timedelta(hours=end_h)),
            "energy_kw": None if energy is None else energy * kw_scale,
            "nomination_kw": nomination * kw_scale,
            "cancelled": False,
            "programs": list(example.programs),
            "priority": example.priority,
            "is_voluntary": example.is_voluntary,
            "performance_compensation_cap": example.performance_compensation_cap,
            "dispatch_event_types": list(example.dispatch_event_types),
        }
        for start_h, end_h in example.slots_h
    ]


def integration_test_payload(
    example: ProgramExample,
    *,
    level: str = "meter",
    meter_ids: list[str],
    market_group_id: str | None = None,
    now: datetime | None = None,
) -> dict:
    """The integration-test request body (``meter_dispatches`` or ``group_dispatches``) for ``example``,
    its first timeslot starting at the next whole hour plus one (UTC), the example's offsets kept."""
    now = now or datetime.now(UTC)
    first_start_h = min(s for s, _ in example.slots_h)
    anchor = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    day_start = anchor - timedelta(hours=first_start_h)
    if level == "meter":
        return {
            "meter_dispatches": [
                {"meter_id": m, "timeslots": example_timeslots(example, "meter", day_start)}
                for m in meter_ids
            ]
        }
    return {
        "group_dispatches": [
            {
                "market_group_id": market_group_id or str(uuid.uuid4()),
                "meter_ids": list(meter_ids),
                "timeslots": example_timeslots(example, "group", day_start),
            }
        ]
    }


def meter_notification(
    meter_id: str,
    meter_event_id: str,
    start: datetime,
    example: ProgramExample | None = None,
) -> dict:
    """A webhook notification body with one meter and one timeslot: the first timeslot of
    ``example`` (default "CAISO - CCA Market Award": 8 kW of 10 kW nominated, one hour),
    starting at ``start`` (UTC), with the given ids; not a test notification."""
    example = example or examples_for("CAISO - CCA Market Award")[0]
    first_start_h = example.slots_h[0][0]
    slot = example_timeslots(example, "meter", start - timedelta(hours=first_start_h))[0]
    slot["meter_event_id"] = meter_event_id
    return {
        "integration_test_notification": False,
        "communication_test": False,
        "meter_dispatches": [{"meter_id": meter_id, "timeslots": [slot]}],
    }


def event_names_frame():
    """Leap's names of its program events (the examples' names) as a frame for SQL:
    ``program_identifier``, ``dispatch_event_types`` (sorted; NULL = the program's market
    prefix only, e.g. ``CAISO - CCA``) and ``event_name``. An event whose program and event
    types match an example exactly takes its name ("CAISO - CCA Market Award"); otherwise the
    prefix and its event types ("CAISO - CCA hour-ahead")."""
    import polars as pl

    rows = {}
    for e in (*EXAMPLES, COMBINED_CCA):
        program = e.programs[0]
        rows[(program, tuple(sorted(e.dispatch_event_types)))] = e.name
        rows.setdefault((program, None), f"{e.name.split(' - ')[0]} - {program}")
    return pl.DataFrame(
        [
            {
                "program_identifier": p,
                "dispatch_event_types": list(t) if t else None,
                "event_name": n,
            }
            for (p, t), n in rows.items()
        ],
        schema={
            "program_identifier": pl.String,
            "dispatch_event_types": pl.List(pl.String),
            "event_name": pl.String,
        },
    )


def leap_event_name(
    programs: list[str] | tuple[str, ...], event_types: list[str] | tuple[str, ...]
) -> str:
    """Leap's name of a program event (see :func:`event_names_frame`), in Python."""
    program = programs[0] if programs else "?"
    prefix = None
    for e in (*EXAMPLES, COMBINED_CCA):
        if e.programs[0] != program:
            continue
        if sorted(e.dispatch_event_types) == sorted(event_types):
            return e.name
        prefix = prefix or f"{e.name.split(' - ')[0]} - {program}"
    return f"{prefix or program} {'+'.join(event_types)}".strip()
