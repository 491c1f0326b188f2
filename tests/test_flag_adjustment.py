"""The adjustment behind the flags' figures at a site with a battery behind its meter
(docs/flags.md section 1), hand-worked.

Two meters with the same readings: 2.5 kWh every quarter hour on every day, except on the
event day (Wednesday 2024-07-17), where the load is 3.0 kWh in the adjustment window
[12:00, 15:00) -- what a battery holding its charge for a 16:00 event looks like -- and
1.5 kWh in the event window [16:00, 18:00). The settlement baseline takes the day-of ratio
3.0 / 2.5 = 1.2 (the clamp's upper end): 3.0 kWh per quarter hour, so both meters settle at
(3.0 - 1.5) x 4 = 6 kW. The flags read the response: at the plain site the ratio stands
(6 kW); at the battery site the ratio measured the battery's pre-event hold, not the day's
load, so the flags use the unadjusted 2.5 kWh: (2.5 - 1.5) x 4 = 4 kW.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from test_performance_fixtures import add_event, add_meter, add_reads, connect, local

from vpp_pipeline.measurement import models
from vpp_pipeline.measurement.config import MeasurementConfig

NOW = datetime(2024, 9, 1, tzinfo=UTC)
EVENT_DAY = date(2024, 7, 17)


def load_kwh(t: datetime) -> float:
    if t.date() == EVENT_DAY and 12 <= t.hour < 15:
        return 3.0
    if t.date() == EVENT_DAY and 16 <= t.hour < 18:
        return 1.5
    return 2.5


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    conn = connect(tmp_path_factory.mktemp("flag_adjustment") / "vpp.duckdb")
    add_meter(conn, "m-plain", load_types=("HVAC",))
    add_meter(conn, "m-battery", load_types=("HVAC", "BATTERY_STORAGE"))
    for meter_id in ("m-plain", "m-battery"):
        add_reads(conn, meter_id, date(2024, 6, 1), date(2024, 7, 18), load_kwh)
        add_event(
            conn,
            f"e-{meter_id}",
            meter_id,
            local(EVENT_DAY, 16),
            local(EVENT_DAY, 18),
            energy_kw=10.0,
        )
    config = MeasurementConfig()
    models.build_baselines(conn, config)
    models.build_event_performance(conn, config, NOW)
    yield conn
    conn.close()


def test_battery_site_flags_go_without_the_day_of_adjustment(db):
    rows = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT meter_id, flag_adjustment, delivered_kw, delivered_kw_uncapped, "
            "placebo_days, delivered_kw_low, delivered_kw_high "
            "FROM event_performance ORDER BY meter_id"
        ).fetchall()
    }
    plain, battery = rows["m-plain"], rows["m-battery"]
    assert plain[0] == "ratio" and battery[0] == "none: behind-the-meter battery"
    # settlement is the same rule for both
    assert plain[1] == pytest.approx(6.0) and battery[1] == pytest.approx(6.0)
    # the response the flags read
    assert plain[2] == pytest.approx(6.0)
    assert battery[2] == pytest.approx(4.0)
    # the placebo days are flat: no noise, the bounds close on the measured figure
    assert battery[3] == 10
    assert battery[4] == pytest.approx(4.0) and battery[5] == pytest.approx(4.0)


def test_baselines_say_which_adjustment_the_flags_read(db):
    rows = db.execute(
        "SELECT meter_id, any_value(flag_adjustment), min(adjusted_kwh), max(adjusted_kwh), "
        "min(flag_baseline_kwh), max(flag_baseline_kwh) FROM baselines GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [
        (
            "m-battery",
            "none: behind-the-meter battery",
            pytest.approx(3.0),
            pytest.approx(3.0),
            pytest.approx(2.5),
            pytest.approx(2.5),
        ),
        (
            "m-plain",
            "ratio",
            pytest.approx(3.0),
            pytest.approx(3.0),
            pytest.approx(3.0),
            pytest.approx(3.0),
        ),
    ]
