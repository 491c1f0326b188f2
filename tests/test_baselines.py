"""Hand-worked baselines and performance (docs/methodology.md), against the SQL pipeline.

Every expected figure is computed here in plain Python from the same load functions that
generated the readings, with the eligible days written out by hand; the pipeline's output
must agree to 1e-6 kWh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from statistics import mean

import pytest
from test_performance_fixtures import (
    LA,
    QUARTER,
    add_event,
    add_meter,
    add_reads,
    connect,
    local,
)

from vpp_pipeline.measurement import models
from vpp_pipeline.measurement.config import MeasurementConfig, MeasurementParameters

TOL = 1e-6
NOW = datetime(2024, 12, 1, tzinfo=UTC)
WED = date(2024, 7, 17)
SAT = date(2024, 7, 20)


def base_load(t: datetime) -> float:
    """kWh per quarter hour at local time ``t``: varies by hour, minute, day and UTC offset
    (so the two 01:xx readings of a fall-back day differ)."""
    summer = 0.2 if t.utcoffset() == timedelta(hours=-7) else 0.0
    return 1.0 + 0.1 * t.hour + t.minute / 600 + (t.toordinal() % 5) * 0.07 + summer


def in_window(t: datetime, day: date, start_hour: float, end_hour: float) -> bool:
    hours = t.hour + t.minute / 60
    return t.date() == day and start_hour <= hours < end_hour


def event_day_load(
    day: date,
    event: tuple[float, float],
    during: Callable[[datetime], float],
    window_factor: float = 1.0,
    window_add: float = 0.0,
) -> Callable[[datetime], float]:
    """base_load, replaced by ``during`` in the event hours of ``day`` and scaled/shifted in
    the adjustment window [start - 4 h, start - 1 h) of that day."""

    def load(t: datetime) -> float:
        if in_window(t, day, *event):
            return during(t)
        if in_window(t, day, event[0] - 4, event[0] - 1):
            return base_load(t) * window_factor + window_add
        return base_load(t)

    return load


# -- hand computation ------------------------------------------------------------------


def quarters(start: datetime, end: datetime) -> list[datetime]:
    out, cursor = [], start
    while cursor < end:
        out.append(cursor)
        cursor += QUARTER
    return out


def readings_at(load, day: date, hh: int, mm: int) -> list[float]:
    """The readings a local day has at wall-clock hh:mm: none (spring forward), one, or two
    (fall back)."""
    found: dict[datetime, float] = {}
    for fold in (0, 1):
        wall = datetime.combine(day, time(hh, mm), tzinfo=LA).replace(fold=fold)
        instant = wall.astimezone(UTC)
        back = instant.astimezone(LA)
        if (back.hour, back.minute, back.date()) == (hh, mm, day):
            found[instant] = load(back)
    return list(found.values())


def hand_unadjusted(load, event_day: date, instant: datetime, days: list[date]) -> float:
    wall = instant.astimezone(LA)
    shift = (wall.date() - event_day).days
    per_day = []
    for d in days:
        values = readings_at(load, d + timedelta(days=shift), wall.hour, wall.minute)
        if values:
            per_day.append(mean(values))
    return mean(per_day)


def hand_day_of(load, event_day, start, end, days, low=0.8, high=1.2):
    """(ratio, [(instant, unadjusted, adjusted)]) for 10-in-10 / 4-in-4."""
    window = quarters(start - timedelta(hours=4), start - timedelta(hours=1))
    actual = sum(load(q.astimezone(LA)) for q in window)
    base = sum(hand_unadjusted(load, event_day, q, days) for q in window)
    ratio = 1.0 if base == 0 else min(high, max(low, actual / base))
    rows = []
    for q in quarters(start, end):
        unadjusted = hand_unadjusted(load, event_day, q, days)
        rows.append((q, unadjusted, unadjusted * ratio))
    return ratio, rows


# -- the scenario ----------------------------------------------------------------------

HALF = lambda t: base_load(t) * 0.5  # noqa: E731
SCENARIOS: dict[str, dict] = {}


def scenario(meter_id, load, first, last, events, **meter):
    SCENARIOS[meter_id] = {"load": load, "first": first, "last": last, "events": events, **meter}


scenario(
    "m-plain",
    event_day_load(WED, (16, 18), HALF),
    date(2024, 5, 25),
    WED,
    [
        ("e-plain", local(WED, 16), local(WED, 18), {}),
        ("e-plain-earlier", local(date(2024, 7, 10), 16), local(date(2024, 7, 10), 17), {}),
        (
            "e-plain-cancelled",
            local(date(2024, 7, 16), 10),
            local(date(2024, 7, 16), 11),
            {"cancelled": True},
        ),
        (
            "e-plain-test",
            local(date(2024, 7, 15), 10),
            local(date(2024, 7, 15), 11),
            {"is_test": True},
        ),
    ],
)
scenario(
    "m-insufficient",
    event_day_load(WED, (16, 18), HALF),
    date(2024, 7, 11),
    WED,
    [("e-insufficient", local(WED, 16), local(WED, 18), {})],
)
scenario(
    "m-clamp-low",
    event_day_load(WED, (16, 18), HALF, window_factor=0.5),
    date(2024, 5, 25),
    WED,
    [("e-clamp-low", local(WED, 16), local(WED, 18), {})],
)
scenario(
    "m-clamp-high",
    event_day_load(WED, (16, 18), HALF, window_factor=2.0),
    date(2024, 5, 25),
    WED,
    [("e-clamp-high", local(WED, 16), local(WED, 18), {})],
)
scenario(
    "m-cap-nomination",
    event_day_load(WED, (16, 18), lambda t: 0.0),
    date(2024, 5, 25),
    WED,
    [
        (
            "e-cap-nomination",
            local(WED, 16),
            local(WED, 18),
            {"cap": "up-to-nomination", "energy_kw": 2.0, "nomination_kw": 2.0},
        )
    ],
)
scenario(
    "m-cap-site",
    event_day_load(WED, (16, 18), lambda t: -1.0),
    date(2024, 5, 25),
    WED,
    [("e-cap-site", local(WED, 16), local(WED, 18), {"cap": "up-to-site-load"})],
)
scenario(
    "m-cap-grid",
    event_day_load(WED, (16, 18), lambda t: -1.0),
    date(2024, 5, 25),
    WED,
    [("e-cap-grid", local(WED, 16), local(WED, 18), {"cap": "grid-exports-allowed"})],
)
scenario(
    "m-null-energy",
    event_day_load(WED, (16, 18), HALF),
    date(2024, 5, 25),
    WED,
    [("e-null-energy", local(WED, 16), local(WED, 18), {"energy_kw": None, "nomination_kw": 4.0})],
)
scenario(
    "m-weekend",
    event_day_load(SAT, (16, 18), HALF),
    date(2024, 5, 25),
    SAT,
    [("e-weekend", local(SAT, 16), local(SAT, 18), {})],
)
scenario(
    "m-spring",
    event_day_load(date(2024, 3, 10), (1, 5), HALF),
    date(2024, 1, 20),
    date(2024, 3, 10),
    [("e-spring", local(date(2024, 3, 10), 1), local(date(2024, 3, 10), 4), {})],
)
scenario(
    "m-spring-baseline",
    event_day_load(date(2024, 3, 16), (1, 3), HALF),
    date(2024, 1, 20),
    date(2024, 3, 16),
    [("e-spring-baseline", local(date(2024, 3, 16), 1), local(date(2024, 3, 16), 3), {})],
)
scenario(
    "m-fall",
    event_day_load(date(2024, 11, 3), (0, 3), HALF),
    date(2024, 9, 20),
    date(2024, 11, 3),
    [("e-fall", local(date(2024, 11, 3), 0), local(date(2024, 11, 3), 3), {})],
)
scenario(
    "m-fall-baseline",
    event_day_load(date(2024, 11, 9), (0.5, 2), HALF),
    date(2024, 9, 20),
    date(2024, 11, 9),
    [("e-fall-baseline", local(date(2024, 11, 9), 0, 30), local(date(2024, 11, 9), 2), {})],
)
scenario(
    "m-battery",
    event_day_load(WED, (16, 18), lambda t: -1.25),
    date(2024, 5, 25),
    WED,
    [("e-battery", local(WED, 16), local(WED, 18), {"cap": "up-to-site-load", "energy_kw": 5.0})],
    meter_type="SUBMETER",
    load_types=("BATTERY_STORAGE",),
)
scenario(
    "m-high",
    event_day_load(WED, (16, 18), HALF, window_add=0.3),
    date(2024, 5, 25),
    WED,
    [("e-high", local(WED, 16), local(WED, 18), {"program": "PJM-CAPACITY"})],
)
scenario(
    "m-pending",
    base_load,
    date(2024, 5, 25),
    date(2024, 7, 16),
    [("e-pending", local(WED, 16), local(WED, 18), {})],
)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    conn = connect(tmp_path_factory.mktemp("baselines") / "vpp.duckdb")
    for meter_id, spec in SCENARIOS.items():
        add_meter(
            conn,
            meter_id,
            meter_type=spec.get("meter_type", "UTILITY_METER"),
            load_types=spec.get("load_types", ("HVAC",)),
        )
        add_reads(conn, meter_id, spec["first"], spec["last"], spec["load"])
        for event_id, start, end, options in spec["events"]:
            add_event(conn, event_id, meter_id, start, end, **options)
    config = MeasurementConfig()
    models.build_baselines(conn, config)
    models.build_event_performance(conn, config, NOW)
    yield conn
    conn.close()


def baseline_rows(db, event_id):
    return db.execute(
        "SELECT interval_start, method, baseline_status, eligible_days, unadjusted_kwh, "
        "adjustment_ratio, adjustment_additive_kwh, adjusted_kwh, actual_kwh, local_time "
        "FROM baselines WHERE meter_event_id = ? ORDER BY interval_start",
        [event_id],
    ).fetchall()


def performance(db, event_id) -> dict:
    cursor = db.execute("SELECT * FROM event_performance WHERE meter_event_id = ?", [event_id])
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


def check_day_of(db, event_id, event_day, days, method, low=0.8, high=1.2):
    spec = next(s for s in SCENARIOS.values() if any(e[0] == event_id for e in s["events"]))
    start, end = next((e[1], e[2]) for e in spec["events"] if e[0] == event_id)
    ratio, expected = hand_day_of(spec["load"], event_day, start, end, days, low, high)
    rows = baseline_rows(db, event_id)
    assert [r[0] for r in rows] == [q for q, _, _ in expected]
    for row, (_, unadjusted, adjusted) in zip(rows, expected, strict=True):
        assert row[1] == method
        assert row[2] == "ok"
        assert row[3] == days
        assert row[4] == pytest.approx(unadjusted, abs=TOL)
        assert row[5] == pytest.approx(ratio, abs=TOL)
        assert row[7] == pytest.approx(adjusted, abs=TOL)
    return ratio, expected, spec["load"]


def hand_delivered(expected, load, cap=None, nomination_kw=None):
    total = 0.0
    for q, _unadjusted, adjusted in expected:
        delivered = adjusted - load(q.astimezone(LA))
        if cap == "up-to-nomination":
            delivered = min(delivered, nomination_kw * 0.25)
        elif cap == "up-to-site-load":
            delivered = min(delivered, adjusted)
        total += delivered
    return total


# -- the tests -------------------------------------------------------------------------


def test_plain_weekday_event(db):
    days = [date(2024, 7, d) for d in (16, 15, 12, 11, 9, 8, 5, 3, 2, 1)]
    ratio, expected, load = check_day_of(db, "e-plain", WED, days, "10-in-10")
    assert 0.8 < ratio < 1.2  # the day-of ratio is really applied, not clamped
    perf = performance(db, "e-plain")
    delivered = hand_delivered(expected, load)
    assert perf["status"] == "scored"
    assert perf["baseline_method"] == "10-in-10"
    assert perf["baseline_kwh"] == pytest.approx(sum(a for _, _, a in expected), abs=TOL)
    assert perf["actual_kwh"] == pytest.approx(
        sum(load(q.astimezone(LA)) for q, _, _ in expected), abs=TOL
    )
    assert perf["delivered_kwh"] == pytest.approx(delivered, abs=TOL)
    assert perf["delivered_kw"] == pytest.approx(delivered / 2, abs=TOL)
    assert perf["performance_factor"] == pytest.approx(delivered / 2 / 10.0, abs=TOL)
    # 8 event quarter hours + 10 complete 96-quarter-hour days, all present
    assert perf["data_completeness"] == pytest.approx(1.0)


def test_holiday_and_earlier_event_day_are_excluded(db):
    days = baseline_rows(db, "e-plain")[0][3]
    assert date(2024, 7, 4) not in days  # Independence Day (a Thursday)
    assert date(2024, 7, 10) not in days  # the meter's earlier event
    # cancelled and test dispatches do not exclude their days
    assert date(2024, 7, 16) in days and date(2024, 7, 15) in days
    assert performance(db, "e-plain-cancelled")["status"] == "cancelled"
    assert performance(db, "e-plain-test")["status"] == "test"


def test_four_eligible_days_is_insufficient_data(db):
    rows = baseline_rows(db, "e-insufficient")
    assert {r[2] for r in rows} == {"insufficient_data"}
    assert rows[0][3] == [
        date(2024, 7, 16),
        date(2024, 7, 15),
        date(2024, 7, 12),
        date(2024, 7, 11),
    ]
    assert all(r[7] is None for r in rows)
    perf = performance(db, "e-insufficient")
    assert perf["status"] == "insufficient_data"
    assert perf["performance_factor"] is None


def test_clamp_at_low_and_high(db):
    days = [date(2024, 7, d) for d in (16, 15, 12, 11, 10, 9, 8, 5, 3, 2)]
    low, _, _ = check_day_of(db, "e-clamp-low", WED, days, "10-in-10")
    high, _, _ = check_day_of(db, "e-clamp-high", WED, days, "10-in-10")
    assert low == 0.8
    assert high == 1.2


@pytest.mark.parametrize(
    ("event_id", "cap", "nomination_kw", "committed_kw"),
    [
        ("e-cap-nomination", "up-to-nomination", 2.0, 2.0),
        ("e-cap-site", "up-to-site-load", 10.0, 10.0),
        ("e-cap-grid", "grid-exports-allowed", 10.0, 10.0),
    ],
)
def test_compensation_caps(db, event_id, cap, nomination_kw, committed_kw):
    days = [date(2024, 7, d) for d in (16, 15, 12, 11, 10, 9, 8, 5, 3, 2)]
    _, expected, load = check_day_of(db, event_id, WED, days, "10-in-10")
    capped = hand_delivered(expected, load, cap, nomination_kw)
    uncapped = hand_delivered(expected, load)
    perf = performance(db, event_id)
    assert perf["delivered_kwh"] == pytest.approx(capped, abs=TOL)
    assert perf["performance_factor"] == pytest.approx(capped / 2 / committed_kw, abs=TOL)
    if cap == "grid-exports-allowed":
        assert capped == uncapped
    else:
        assert capped < uncapped - 0.1  # the cap really bites in this scenario
    if cap == "up-to-nomination":
        assert capped == pytest.approx(8 * 2.0 * 0.25)


def test_energy_kw_null_commits_the_nomination(db):
    days = [date(2024, 7, d) for d in (16, 15, 12, 11, 10, 9, 8, 5, 3, 2)]
    _, expected, load = check_day_of(db, "e-null-energy", WED, days, "10-in-10")
    perf = performance(db, "e-null-energy")
    assert perf["energy_kw"] is None
    assert perf["committed_kw"] == 4.0
    assert perf["performance_factor"] == pytest.approx(
        hand_delivered(expected, load) / 2 / 4.0, abs=TOL
    )


def test_weekend_event_uses_4_in_4(db):
    days = [date(2024, 7, 14), date(2024, 7, 13), date(2024, 7, 7), date(2024, 7, 6)]
    _, expected, load = check_day_of(db, "e-weekend", SAT, days, "4-in-4")
    assert performance(db, "e-weekend")["delivered_kwh"] == pytest.approx(
        hand_delivered(expected, load), abs=TOL
    )


def test_event_on_spring_forward_day(db):
    day = date(2024, 3, 10)
    days = [date(2024, 3, 9), date(2024, 3, 3), date(2024, 3, 2), date(2024, 2, 25)]
    _, expected, load = check_day_of(db, "e-spring", day, days, "4-in-4")
    # 01:00 PST to 04:00 PDT is two hours: 02:xx does not exist that day
    assert [r[9] for r in baseline_rows(db, "e-spring")] == [
        "01:00",
        "01:15",
        "01:30",
        "01:45",
        "03:00",
        "03:15",
        "03:30",
        "03:45",
    ]
    perf = performance(db, "e-spring")
    assert perf["event_hours"] == pytest.approx(2.0)
    assert perf["delivered_kwh"] == pytest.approx(hand_delivered(expected, load), abs=TOL)


def test_spring_forward_baseline_day_is_skipped_for_missing_times(db):
    days = [date(2024, 3, 10), date(2024, 3, 9), date(2024, 3, 3), date(2024, 3, 2)]
    _, expected, _ = check_day_of(db, "e-spring-baseline", date(2024, 3, 16), days, "4-in-4")
    load = SCENARIOS["m-spring-baseline"]["load"]
    two_am = local(date(2024, 3, 16), 2)
    row = next(e for e in expected if e[0] == two_am)
    # only three days have a 02:00 reading
    assert row[1] == pytest.approx(
        mean(load(datetime.combine(d, time(2), tzinfo=LA)) for d in days[1:])
    )


def test_event_on_fall_back_day(db):
    day = date(2024, 11, 3)
    days = [date(2024, 11, 2), date(2024, 10, 27), date(2024, 10, 26), date(2024, 10, 20)]
    _, expected, load = check_day_of(db, "e-fall", day, days, "4-in-4")
    rows = baseline_rows(db, "e-fall")
    assert len(rows) == 16  # 00:00 PDT to 03:00 PST is four hours
    times = [r[9] for r in rows]
    assert times.count("01:15") == 2
    twice = [r for r in rows if r[9] == "01:15"]
    assert twice[0][4] == pytest.approx(twice[1][4], abs=TOL)  # same wall clock, same baseline
    assert performance(db, "e-fall")["delivered_kwh"] == pytest.approx(
        hand_delivered(expected, load), abs=TOL
    )


def test_fall_back_baseline_day_averages_its_two_readings(db):
    days = [date(2024, 11, 3), date(2024, 11, 2), date(2024, 10, 27), date(2024, 10, 26)]
    _, expected, _ = check_day_of(db, "e-fall-baseline", date(2024, 11, 9), days, "4-in-4")
    load = SCENARIOS["m-fall-baseline"]["load"]
    one_am = local(date(2024, 11, 9), 1)
    row = next(e for e in expected if e[0] == one_am)
    first = load(datetime(2024, 11, 3, 1, tzinfo=LA, fold=0))
    second = load(datetime(2024, 11, 3, 1, tzinfo=LA, fold=1))
    assert first != second
    others = [load(datetime.combine(d, time(1), tzinfo=LA)) for d in days[1:]]
    assert row[1] == pytest.approx(mean([(first + second) / 2, *others]), abs=TOL)


def test_battery_submeter_uses_generator_output(db):
    rows = baseline_rows(db, "e-battery")
    assert {r[1] for r in rows} == {"meter-generator-output"}
    assert all(r[7] == 0.0 for r in rows)
    perf = performance(db, "e-battery")
    # 8 quarter hours discharging 1.25 kWh; up-to-site-load caps nothing on a submeter
    assert perf["delivered_kwh"] == pytest.approx(8 * 1.25, abs=TOL)
    assert perf["performance_factor"] == pytest.approx(8 * 1.25 / 2 / 5.0, abs=TOL)


def test_high_4_of_5_with_additive_adjustment(db):
    spec = SCENARIOS["m-high"]
    load = spec["load"]
    start, end = local(WED, 16), local(WED, 18)
    five = [date(2024, 7, d) for d in (16, 15, 12, 11, 10)]
    event_quarters = quarters(start, end)

    def day_mean(d):
        return mean(
            load(datetime.combine(d, q.astimezone(LA).time(), tzinfo=LA)) for q in event_quarters
        )

    lowest = min(five, key=lambda d: (day_mean(d), d))
    kept = [d for d in five if d != lowest]
    window = quarters(start - timedelta(hours=4), start - timedelta(hours=1))
    adjustment = mean(load(q.astimezone(LA)) - hand_unadjusted(load, WED, q, kept) for q in window)
    assert adjustment == pytest.approx(0.3, abs=0.2)  # the +0.3 kWh window shift shows
    rows = baseline_rows(db, "e-high")
    assert rows[0][1] == "high-4-of-5"
    assert rows[0][3] == kept
    delivered = 0.0
    for row, q in zip(rows, event_quarters, strict=True):
        unadjusted = hand_unadjusted(load, WED, q, kept)
        assert row[4] == pytest.approx(unadjusted, abs=TOL)
        assert row[6] == pytest.approx(adjustment, abs=TOL)
        assert row[7] == pytest.approx(unadjusted + adjustment, abs=TOL)
        delivered += unadjusted + adjustment - load(q.astimezone(LA))
    assert performance(db, "e-high")["delivered_kwh"] == pytest.approx(delivered, abs=TOL)


def test_event_off_the_quarter_hour_with_adjustment_window_up_to_its_start(tmp_path):
    """An event starting at 16:07 with an adjustment window ending at the event start:
    the 16:00 quarter hour is both the first event quarter hour and the last adjustment
    one (the windows are whole quarter hours around [start - 4 h, start))."""
    conn = connect(tmp_path / "odd.duckdb")
    start, end = local(WED, 16, 7), local(WED, 18)

    def load(t: datetime) -> float:
        hours = t.hour + t.minute / 60
        if t.date() == WED and 16 <= hours < 18:
            return base_load(t) * 0.5
        if t.date() == WED and 12 <= hours < 16:
            return base_load(t) * 1.1
        return base_load(t)

    add_meter(conn, "m-odd")
    add_reads(conn, "m-odd", date(2024, 5, 25), WED, load)
    add_event(conn, "e-odd", "m-odd", start, end)
    config = MeasurementConfig(
        defaults=replace(
            MeasurementParameters(), adjustment_start_hours=4.0, adjustment_end_hours=0.0
        )
    )
    models.build_baselines(conn, config)
    # every weekday of the 45 before, most recent first, without Independence Day
    days = [date(2024, 7, d) for d in (16, 15, 12, 11, 10, 9, 8, 5, 3, 2)]
    adjustment_quarters = quarters(local(WED, 12), local(WED, 16, 15))  # 12:00 .. 16:00
    actual = sum(load(q.astimezone(LA)) for q in adjustment_quarters)
    base = sum(hand_unadjusted(load, WED, q, days) for q in adjustment_quarters)
    ratio = actual / base
    assert 0.8 < ratio < 1.2  # not clamped: the 16:00 quarter hour's half load pulls it down
    rows = baseline_rows(conn, "e-odd")
    assert [r[0] for r in rows] == quarters(local(WED, 16), end)
    for row in rows:
        unadjusted = hand_unadjusted(load, WED, row[0], days)
        assert row[1:4] == ("10-in-10", "ok", days)
        assert row[4] == pytest.approx(unadjusted, abs=TOL)
        assert row[5] == pytest.approx(ratio, abs=TOL)
        assert row[7] == pytest.approx(unadjusted * ratio, abs=TOL)
        assert row[8] == pytest.approx(load(row[0].astimezone(LA)), abs=TOL)
    conn.close()


def test_pending_data_until_grace_period_then_scored(db):
    config = MeasurementConfig()
    models.build_event_performance(db, config, local(date(2024, 7, 19), 12))
    assert performance(db, "e-pending")["status"] == "pending_data"
    models.build_event_performance(db, config, local(date(2024, 7, 21), 12))
    perf = performance(db, "e-pending")
    assert perf["status"] == "scored"
    assert perf["delivered_kwh"] == 0.0  # a missing quarter hour delivers nothing
    assert perf["intervals_present"] == 0
    # 0 of 8 event quarter hours + 10 complete days of 96
    assert perf["data_completeness"] == pytest.approx(960 / 968, abs=1e-9)
    models.build_event_performance(db, config, NOW)


def test_baseline_accuracy_flags_unpredictable_meters(tmp_path):
    conn = connect(tmp_path / "accuracy.duckdb")
    as_of = date(2024, 9, 30)
    add_meter(conn, "m-steady")
    add_meter(conn, "m-erratic")
    add_reads(conn, "m-steady", date(2024, 5, 1), as_of, lambda t: 2.0)
    # erratic: 1 kWh on even days, 5 kWh on odd days, flat within the day: the day-of ratio
    # (clamped to [0.8, 1.2]) cannot follow it, the additive adjustment of high 4 of 5
    # absorbs a flat shift exactly
    add_reads(
        conn, "m-erratic", date(2024, 5, 1), as_of, lambda t: 1.0 if t.toordinal() % 2 == 0 else 5.0
    )
    models.build_baseline_accuracy(conn, MeasurementConfig(), as_of)
    rows = {
        (m, method): (days, rrmse, bias, unreliable)
        for m, method, days, rrmse, bias, unreliable in conn.execute(
            "SELECT meter_id, method, test_days, rrmse, bias, unreliable FROM baseline_accuracy"
        ).fetchall()
    }
    # weekdays in [as_of - 90, as_of - 1] = [2024-07-02, 2024-09-29] minus Independence
    # Day (2024-07-04) and Labor Day (2024-09-02)
    window = [as_of - timedelta(days=k) for k in range(1, 91)]
    test_days = sum(1 for d in window if d.weekday() < 5) - 2
    assert set(rows) == {
        (m, method) for m in ("m-steady", "m-erratic") for method in ("10-in-10", "high-4-of-5")
    }
    for method in ("10-in-10", "high-4-of-5"):
        assert rows[("m-steady", method)][:3] == (test_days, 0.0, 0.0)
        assert rows[("m-steady", method)][3] is False
    assert rows[("m-erratic", "10-in-10")][1] > 0.2
    assert rows[("m-erratic", "10-in-10")][3] is True
    assert rows[("m-erratic", "high-4-of-5")][1] == pytest.approx(0.0, abs=1e-12)
    assert rows[("m-erratic", "high-4-of-5")][3] is False
    conn.close()


def test_a_baseline_day_emptied_by_hand_stops_being_eligible(tmp_path):
    """End to end through build_baselines: the first run builds the counts from reads written
    without the ingest; readings deleted afterwards make that day incomplete for the next run,
    so the baseline takes the next older weekday instead."""
    conn = connect(tmp_path / "vpp.duckdb")
    add_meter(conn, "m1")
    event_day = date(2024, 7, 17)  # a Wednesday
    add_reads(conn, "m1", event_day - timedelta(days=30), event_day, lambda t: 10.0 + t.hour)
    start = datetime(2024, 7, 17, 16, tzinfo=LA).astimezone(UTC)
    add_event(conn, "e1", "m1", start, start + timedelta(hours=2))
    config = MeasurementConfig()

    def eligible() -> list[date]:
        models.build_baselines(conn, config)
        return conn.execute(
            "SELECT DISTINCT eligible_days FROM baselines WHERE meter_event_id = 'e1'"
        ).fetchall()[0][0]

    # the 10 weekdays before the event, most recent first (4 July is a NERC holiday)
    days = [16, 15, 12, 11, 10, 9, 8, 5, 3, 2]
    assert eligible() == [date(2024, 7, d) for d in days]
    conn.execute(
        "DELETE FROM interval_reads WHERE local_date = DATE '2024-07-16' "
        "AND interval_start = (SELECT min(interval_start) FROM interval_reads "
        "WHERE local_date = DATE '2024-07-16')"
    )
    # 16 July is no longer complete: the next older weekday, 1 July, takes its place
    assert eligible() == [date(2024, 7, d) for d in [*days[1:], 1]]
    conn.close()
