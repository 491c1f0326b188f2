"""Underperformer flags, reconciliation with Leap's figures and the demo summary, over
hand-made event_performance rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from test_performance_fixtures import connect

from vpp_pipeline.measurement import models, performance_summary
from vpp_pipeline.measurement.config import MeasurementConfig
from vpp_pipeline.measurement.flag_quality import flag_quality
from vpp_pipeline.warehouse import run_models, stage_frame

AS_OF = date(2024, 9, 30)


def make_performance(conn, rows):
    """rows: (event_id, meter_id, days_before_as_of, settlement pf, (uncapped kW, low, high),
    event-window completeness, is_voluntary, committed_kw, status, delivered_kwh[, options]);
    one-hour events at 18:00 local, placebo bias 0. options: dispatch_event_types,
    expected_kw, market_group_event_id, interval_data_loaded."""
    conn.execute(
        "CREATE OR REPLACE TABLE event_performance (meter_event_id VARCHAR, meter_id VARCHAR, "
        "programs VARCHAR[], event_start TIMESTAMPTZ, event_end TIMESTAMPTZ, "
        "committed_kw DOUBLE, expected_kw DOUBLE, is_voluntary BOOLEAN, "
        "performance_factor DOUBLE, data_completeness DOUBLE, event_window_completeness DOUBLE, "
        "status VARCHAR, baseline_kwh DOUBLE, actual_kwh DOUBLE, delivered_kwh DOUBLE, "
        "delivered_kw DOUBLE, delivered_kw_uncapped DOUBLE, placebo_bias_kw DOUBLE, "
        "delivered_kw_low DOUBLE, delivered_kw_high DOUBLE, performance_factor_low DOUBLE, "
        "performance_factor_high DOUBLE, placebo_days BIGINT, dispatch_event_types VARCHAR[], "
        "market_group_event_id VARCHAR, interval_data_loaded BOOLEAN)"
    )
    for row in rows:
        (
            event_id,
            meter_id,
            days_back,
            pf,
            measured,
            completeness,
            voluntary,
            committed,
            status,
            kwh,
        ) = row[:10]
        options = row[10] if len(row) > 10 else {}
        uncapped, low, high = measured if measured else (None, None, None)
        expected = options.get("expected_kw", committed)
        # 18:00 local (PDT) on the day
        start = datetime.combine(AS_OF - timedelta(days=days_back), datetime.min.time(), UTC)
        start += timedelta(hours=25)
        conn.execute(
            "INSERT INTO event_performance VALUES (?, ?, ['ELRP'], ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "10, 5, ?, ?, ?, 0.0, ?, ?, ?, ?, 10, ?, ?, ?)",
            [
                event_id,
                meter_id,
                start,
                start + timedelta(hours=1),
                committed,
                expected,
                voluntary,
                pf,
                completeness,
                completeness,
                status,
                kwh,
                kwh,
                uncapped,
                low,
                high,
                None if low is None else low / expected,
                None if high is None else high / expected,
                options.get("dispatch_event_types", ["day-ahead"]),
                options.get("market_group_event_id"),
                options.get("interval_data_loaded", True),
            ],
        )


ROWS = [
    # low performer: pooled (5 + 7) / 20 = 0.6, half width sqrt(1 + 1) / 20 -> high 0.671 < 0.8
    ("a1", "m-low", 10, 0.5, (5.0, 4.0, 6.0), 1.0, False, 10.0, "scored", 5.0),
    ("a2", "m-low", 20, 0.7, (7.0, 6.0, 8.0), 1.0, False, 10.0, "scored", 7.0),
    # one event only: 0.5 (0.4 to 0.6), its whole band below 0.8 -> LOW_PERFORMANCE (with
    # low_performance_min_events = 2: INCONCLUSIVE)
    ("b1", "m-one", 5, 0.5, (5.0, 4.0, 6.0), 1.0, False, 10.0, "scored", 5.0),
    # no response on a committed, non-voluntary event: high bound 0.9 < 0.1 x 10 kW. The
    # second event's 1.95 does not make up for it: shares 0.02 (half width 0.07) and 1.95
    # (0.1), weights 204.1 and 100 -> pooled 0.655, half width 0.057, high 0.712 < 0.8
    ("c1", "m-nores", 3, 0.02, (0.2, -0.5, 0.9), 1.0, False, 10.0, "scored", 0.2),
    ("c2", "m-nores", 4, 1.95, (19.5, 18.5, 20.5), 1.0, False, 10.0, "scored", 19.5),
    # a good responder with one noisy event: pf 0.05 (the old rule's NO_RESPONSE) but its
    # high bound 7 kW is far above 1 kW. Inverse-variance pooling: shares 0.05 (half width
    # 0.65) and 1.0 (0.1), weights 1/0.65^2 = 2.367 and 100 -> pooled 0.978, half width
    # 1/sqrt(102.367) = 0.099: bounds 0.879-1.077, above 0.8 -> no row at all
    ("n1", "m-noisy", 3, 0.05, (0.5, -6.0, 7.0), 1.0, False, 10.0, "scored", 0.5),
    ("n2", "m-noisy", 4, 1.0, (10.0, 9.0, 11.0), 1.0, False, 10.0, "scored", 10.0),
    # two noisy events: shares 0.5 each, half width 0.6 each -> pooled 0.5, half width
    # 0.6/sqrt(2) = 0.424: bounds 0.076-0.924 straddle 0.8, wider than 0.5 -> INCONCLUSIVE
    ("u1", "m-unsure", 3, 0.5, (5.0, -1.0, 11.0), 1.0, False, 10.0, "scored", 5.0),
    ("u2", "m-unsure", 4, 0.5, (5.0, -1.0, 11.0), 1.0, False, 10.0, "scored", 5.0),
    # voluntary event with pf 0 is not judged
    ("d1", "m-vol", 3, 0.0, (0.0, -0.5, 0.5), 1.0, True, 10.0, "scored", 0.0),
    ("d2", "m-vol", 4, 0.0, (0.0, -0.5, 0.5), 1.0, True, 10.0, "scored", 0.0),
    # a real-time (5m) event is not judged (programs that do not take part in real time)
    (
        "r1",
        "m-5m",
        3,
        0.0,
        (0.0, -0.5, 0.5),
        1.0,
        False,
        10.0,
        "scored",
        0.0,
        {"dispatch_event_types": ["5m"]},
    ),
    # missing data: the event window 85 % read -> MISSING_DATA, and never judged on its 3 kW
    ("e1", "m-missing", 3, 0.3, (3.0, 2.0, 4.0), 0.85, False, 10.0, "scored", 3.0),
    ("e2", "m-missing", 6, 1.0, (10.0, 9.0, 11.0), 0.95, False, 10.0, "scored", 10.0),
    # an event with no data at all is missing data even when too few baseline days
    ("e3", "m-empty", 6, None, None, 0.0, False, 10.0, "insufficient_data", None),
    # no data because none was loaded for that day yet (a later backfill): not MISSING_DATA
    (
        "e4",
        "m-unloaded",
        6,
        0.0,
        None,
        0.0,
        False,
        10.0,
        "scored",
        0.0,
        {"interval_data_loaded": False},
    ),
    # outside the trailing 90 days (day 90 back) and unscored events are ignored
    ("f1", "m-old", 90, 0.0, (0.0, -0.5, 0.5), 0.0, False, 10.0, "scored", 0.0),
    ("f2", "m-old", 89, 1.0, (10.0, 9.0, 11.0), 1.0, False, 10.0, "scored", 10.0),
    ("f3", "m-old", 1, None, None, 0.0, False, 10.0, "pending_data", None),
    # boundary: a high bound of exactly 0.1 x committed and 0.9 completeness are not flagged
    ("g1", "m-edge", 2, 0.1, (0.5, 0.0, 1.0), 0.9, False, 10.0, "scored", 1.0),
    ("g2", "m-edge", 3, 1.5, (15.5, 15.0, 16.0), 0.9, False, 10.0, "scored", 15.0),
    # a meter's share of group events (allocated here, not committed to it by Leap): judged
    # only when flag_group_events is on
    (
        "k1",
        "m-group",
        2,
        0.0,
        (0.0, -0.5, 0.5),
        1.0,
        False,
        10.0,
        "scored",
        0.0,
        {"market_group_event_id": "g1"},
    ),
    (
        "k2",
        "m-group",
        3,
        0.0,
        (0.0, -0.5, 0.5),
        1.0,
        False,
        10.0,
        "scored",
        0.0,
        {"market_group_event_id": "g2"},
    ),
    # a battery submeter held to what its battery can deliver (5 of 10 committed kW): 0.9
    (
        "h1",
        "m-battery",
        2,
        0.45,
        (4.5, 4.5, 4.5),
        1.0,
        False,
        10.0,
        "scored",
        4.5,
        {"expected_kw": 5.0},
    ),
    (
        "h2",
        "m-battery",
        3,
        0.45,
        (4.5, 4.5, 4.5),
        1.0,
        False,
        10.0,
        "scored",
        4.5,
        {"expected_kw": 5.0},
    ),
]


@pytest.fixture
def conn(tmp_path):
    conn = connect(tmp_path / "vpp.duckdb")
    make_performance(conn, ROWS)
    yield conn
    conn.close()


def flagged(conn, as_of=AS_OF):
    rows = conn.execute(
        "SELECT meter_id, reason_codes, scored_events, pooled_performance_factor, "
        "no_response_event_ids, missing_data_event_ids, flagged, reason, evidence "
        "FROM underperformers WHERE as_of_date = ? ORDER BY meter_id",
        [as_of],
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_underperformer_reasons(conn):
    models.build_underperformers(conn, MeasurementConfig(), AS_OF)
    flags = flagged(conn)
    assert set(flags) == {"m-low", "m-nores", "m-missing", "m-empty", "m-unsure", "m-one"}
    reasons, events, pooled, no_response, missing, is_flagged, reason, evidence = flags["m-low"]
    assert no_response == [] and missing == [] and is_flagged
    assert reasons == ["LOW_PERFORMANCE"]
    assert events == 2 and pooled == pytest.approx((5 + 7) / 20)
    assert reason == (
        "LOW_PERFORMANCE: pooled performance 0.60 (0.53 to 0.67 at 90%) over 2 committed "
        "non-voluntary events, high bound below 0.8"
    )
    assert [e["meter_event_id"] for e in evidence] == ["a2", "a1"]  # oldest first
    assert evidence[1]["delivered_kw_high"] == 6.0 and evidence[1]["committed_kw"] == 10.0
    assert flags["m-nores"][0] == ["LOW_PERFORMANCE", "NO_RESPONSE"]
    assert flags["m-nores"][2] == pytest.approx(
        (0.02 / 0.07**2 + 1.95 / 0.1**2) / (1 / 0.07**2 + 100)
    )
    assert flags["m-nores"][3] == ["c1"]
    assert "c1 on " in flags["m-nores"][6] and "0.2 kW of 10.0 kW expected" in flags["m-nores"][6]
    assert [e["no_response"] for e in flags["m-nores"][7]] == [False, True]
    assert flags["m-missing"][0] == ["MISSING_DATA"]
    assert flags["m-missing"][4] == ["e1"]
    assert "not judged on performance" in flags["m-missing"][6]
    assert flags["m-empty"][0] == ["MISSING_DATA"] and flags["m-empty"][4] == ["e3"]
    # the noisy good responder: its precise event outweighs the noisy one
    assert "m-noisy" not in flags
    pooled_noisy = (0.05 / 0.65**2 + 1.0 / 0.1**2) / (1 / 0.65**2 + 1 / 0.1**2)
    assert pooled_noisy == pytest.approx(0.978, abs=1e-3)
    # too noisy to tell: not a flag, and the row says what would help
    reasons, _, pooled, no_response, _, is_flagged, reason, _ = flags["m-unsure"]
    assert reasons == ["INCONCLUSIVE"] and not is_flagged and no_response == []
    assert pooled == pytest.approx(0.5)
    assert "0.50 (0.08 to 0.92 at 90%) over 2" in reason
    assert "more events" in reason and "submeter" in reason


def test_flags_judge_the_response_not_the_pay(conn):
    """The same events read through the settlement figures would flag m-noisy (pf 0.05) and
    m-battery (mean pf 0.45); the flags read the uncapped delivered kW and its bounds."""
    models.build_underperformers(conn, MeasurementConfig(), AS_OF)
    flags = flagged(conn)
    assert "m-battery" not in flags and "m-vol" not in flags and "m-5m" not in flags
    assert "m-noisy" not in flags
    strict = MeasurementConfig(
        defaults=MeasurementConfig().defaults.__class__(flag_real_time_events=True)
    )
    models.build_underperformers(conn, strict, AS_OF)
    assert flagged(conn)["m-5m"][0] == ["LOW_PERFORMANCE", "NO_RESPONSE"]
    assert "m-group" not in flagged(conn)
    # with flag_group_events on, m-group's shares are still not judged: there are no
    # enrollments here, so whether it was in the group at the events is unknown (see the
    # test below)
    with_groups = MeasurementConfig(
        defaults=MeasurementConfig().defaults.__class__(flag_group_events=True)
    )
    models.build_underperformers(conn, with_groups, AS_OF)
    assert "m-group" not in flagged(conn)


def _start(days_back: int) -> datetime:
    """The event start make_performance gives an event ``days_back`` days before AS_OF."""
    return datetime.combine(AS_OF - timedelta(days=days_back), datetime.min.time(), UTC) + (
        timedelta(hours=25)
    )


def test_group_shares_are_judged_only_for_members_at_the_event(tmp_path):
    """A meter's share of a group event is judged when, at the event's start, the meter had
    an ACTIVE enrollment in the event's group and program, a nomination in force and no
    IDLE/DISENROLL preference, and every meter the event was split over did too."""
    conn = connect(tmp_path / "vpp.duckdb")
    nothing = (0.0, -0.5, 0.5)  # no response, bounds well below 0.1 x 10 kW
    share = [0.0, nothing, 1.0, False, 10.0, "scored", 0.0]
    shares = {
        # (meter_event_id, meter_id, group event, days back)
        ("k1", "m-group", "g1", 2),
        ("k4", "m-group", "g3", 4),
        # g2 was split over m-group and m-idle, idle at the time: neither share is judged
        ("k2", "m-group", "g2", 3),
        ("k3", "m-idle", "g2", 3),
        # enrolled in the group only from 1 day before AS_OF: not a member 2 days back
        ("k5", "m-late", "g4", 2),
        # enrolled, but no nomination in force: Leap does not dispatch it
        ("k6", "m-unnominated", "g5", 2),
    }
    make_performance(
        conn,
        [
            (eid, meter, back, *share, {"market_group_event_id": g})
            for eid, meter, g, back in shares
        ],
    )
    for eid, meter, g, back in shares:
        conn.execute(
            "INSERT INTO dispatch_events BY NAME SELECT ? AS meter_event_id, "
            "? AS market_group_event_id, ? AS meter_id, 'G' AS market_group_id, "
            "['ELRP'] AS programs, ? AS start_time",
            [eid, g, meter, _start(back)],
        )
    conn.execute(
        "CREATE TABLE enrollments (meter_id VARCHAR, program_identifier VARCHAR, "
        "enrollment_status VARCHAR, market_group_id VARCHAR, "
        "delivery_period_start TIMESTAMPTZ, delivery_period_end TIMESTAMPTZ)"
    )
    period = (_start(60), _start(-60))
    for meter in ("m-group", "m-idle", "m-unnominated"):
        conn.execute(
            "INSERT INTO enrollments VALUES (?, 'ELRP', 'ACTIVE', 'G', ?, ?)", [meter, *period]
        )
    conn.execute(
        "INSERT INTO enrollments VALUES ('m-late', 'ELRP', 'ACTIVE', 'G', ?, ?)",
        [_start(1), period[1]],
    )
    # m-late was in the group before, in an earlier period that ended before its event
    conn.execute(
        "INSERT INTO enrollments VALUES ('m-late', 'ELRP', 'INACTIVE', 'G', ?, ?)",
        [_start(60), _start(1)],
    )
    for meter in ("m-group", "m-idle", "m-late"):
        conn.execute(
            "INSERT INTO nominations VALUES (?, 'ELRP', ?, NULL, 'LEAP', 20.0, ?)",
            [meter, period[0], period[0]],
        )
    conn.execute(
        "CREATE TABLE participation_preferences (meter_id VARCHAR, "
        "participation_preference VARCHAR, start_time TIMESTAMPTZ, end_time TIMESTAMPTZ, "
        "reason VARCHAR)"
    )
    conn.execute(
        "INSERT INTO participation_preferences VALUES ('m-idle', 'IDLE', ?, ?, 'maintenance'), "
        "('m-group', 'PARTICIPATE', ?, NULL, NULL)",
        [_start(5), _start(0), period[0]],
    )

    with_groups = MeasurementConfig(
        defaults=MeasurementConfig().defaults.__class__(flag_group_events=True)
    )
    models.build_underperformers(conn, with_groups, AS_OF)
    flags = flagged(conn)
    assert set(flags) == {"m-group"}
    reasons, _, pooled, no_response, *_, evidence = flags["m-group"]
    assert reasons == ["LOW_PERFORMANCE", "NO_RESPONSE"]
    assert [e["meter_event_id"] for e in evidence] == ["k4", "k1"]  # not k2: g2's split
    assert no_response == ["k4", "k1"] and pooled == pytest.approx(0.0)

    # the benchmark's population follows the same rule: meters whose only group shares the
    # flags may not judge are not counted (they could be neither caught nor missed)
    truth = {"m-group": "partial", "m-idle": "none", "m-late": "none", "m-unnominated": "none"}
    quality = flag_quality(conn, truth, AS_OF, group_events=True)
    assert quality["meters_judged"] == 1 and quality["confusion"]["tp"] == 1
    assert quality["performance_recall"] == 1.0

    models.build_underperformers(conn, MeasurementConfig(), AS_OF)  # off by default
    assert flagged(conn) == {}
    conn.close()


def test_one_event_below_the_threshold(conn):
    """m-one: one event, bounds 0.4-0.6 below 0.8. By default that is LOW_PERFORMANCE (the
    band, not a count of events, guards against noise); with low_performance_min_events = 2
    it is not, and the row says why."""
    models.build_underperformers(conn, MeasurementConfig(), AS_OF)
    reasons, *_, is_flagged, reason, evidence = flagged(conn)["m-one"]
    assert reasons == ["LOW_PERFORMANCE"] and is_flagged
    assert reason == (
        "LOW_PERFORMANCE: pooled performance 0.50 (0.40 to 0.60 at 90%) over 1 committed "
        "non-voluntary event, high bound below 0.8"
    )
    assert [e["meter_event_id"] for e in evidence] == ["b1"]
    two = MeasurementConfig(
        defaults=MeasurementConfig().defaults.__class__(low_performance_min_events=2)
    )
    models.build_underperformers(conn, two, AS_OF)
    reasons, *_, is_flagged, reason, evidence = flagged(conn)["m-one"]
    assert reasons == ["INCONCLUSIVE"] and not is_flagged
    assert "over 1 committed non-voluntary event:" in reason and "more events" in reason


def test_flag_history_answers_which_meters_were_flagged_last_month(conn):
    config = MeasurementConfig()
    for day in (AS_OF - timedelta(days=40), AS_OF - timedelta(days=35), AS_OF):
        models.build_underperformers(conn, config, day)
    rows = conn.execute(
        "SELECT DISTINCT meter_id FROM underperformers WHERE flagged "
        "AND as_of_date BETWEEN DATE '2024-08-01' AND DATE '2024-08-31' ORDER BY meter_id"
    ).fetchall()
    # as of Aug 21 and Aug 26 the window holds only m-old's f1 (no data: MISSING_DATA) and f2
    assert rows == [("m-old",)]
    assert conn.execute("SELECT count(DISTINCT as_of_date) FROM underperformers").fetchall() == [
        (3,)
    ]


def test_underperformer_partition_is_idempotent_and_thresholds_configurable(conn):
    config = MeasurementConfig()
    models.build_underperformers(conn, config, AS_OF)
    models.build_underperformers(conn, config, AS_OF)
    assert conn.execute("SELECT count(*) FROM underperformers").fetchall()[0][0] == 6
    two = MeasurementConfig(
        defaults=MeasurementConfig().defaults.__class__(low_performance_min_events=2)
    )
    models.build_underperformers(conn, two, AS_OF - timedelta(days=1))
    # as of the day before, c1/e1/g1 (1-3 days back) shift, and m-one's one event is no
    # longer enough
    assert flagged(conn, AS_OF - timedelta(days=1))["m-one"][0] == ["INCONCLUSIVE"]
    assert len(flagged(conn)) == 6  # the first partition is untouched


def test_reconciliation_flags_differences_over_five_percent(conn):
    stage_frame(
        conn,
        "stg_leap_meter_performance",
        __import__("polars").DataFrame(
            {
                "meter_id": ["m-low", "m-low", "m-nores", "m-x"],
                "meter_event_id": ["a1", "a2", "c2", "zz"],
                "start": [datetime(2024, 9, 1, tzinfo=UTC)] * 4,
                "end": [datetime(2024, 9, 1, 1, tzinfo=UTC)] * 4,
                "baseline_kwh": [10.0, 10.0, 10.0, 10.0],
                "usage_kwh": [5.0, 3.0, 1.0, 1.0],
                # a1: 5.0 vs 5.2 (3.8 %) ok; a2: 7.0 vs 6.0 (16.7 %) differs; c2: equal
                "delivered_kwh": [5.2, 6.0, 19.5, 9.0],
            }
        ),
    )
    run_models(conn, "performance_reconciliation", tolerance_pct=5.0)
    rows = conn.execute(
        "SELECT meter_event_id, reason_code, round(delivered_difference_pct, 3) "
        "FROM performance_reconciliation ORDER BY meter_event_id"
    ).fetchall()
    assert rows == [("a2", "DELIVERED_DIFFERS", round(100 / 6, 3)), ("zz", "NOT_SCORED_HERE", None)]


def test_performance_summary(conn):
    models.build_underperformers(conn, MeasurementConfig(), AS_OF)
    conn.execute(
        "CREATE TABLE baseline_accuracy AS SELECT 'm-low' AS meter_id, '10-in-10' AS method, "
        "0.31::DOUBLE AS rrmse, 0.05::DOUBLE AS bias, true AS unreliable UNION ALL SELECT 'm-one', "
        "'10-in-10', "
        "0.1, 0.0, false"
    )
    summary = performance_summary(conn)
    scored = [r for r in ROWS if r[8] == "scored"]
    assert summary["scored_events"] == len(scored)
    assert summary["portfolio_mean_performance_factor"] == pytest.approx(
        sum(r[3] for r in scored) / len(scored)
    )
    assert summary["events_by_status"] == {
        "insufficient_data": 1,
        "pending_data": 1,
        "scored": len(scored),
    }
    assert [m["meter_id"] for m in summary["flagged_meters"]] == [
        "m-empty",
        "m-low",
        "m-missing",
        "m-nores",
        "m-one",
    ]
    assert summary["flagged_meters"][1]["reason"].startswith("LOW_PERFORMANCE: pooled")
    assert [m["meter_id"] for m in summary["inconclusive_meters"]] == ["m-unsure"]
    assert summary["unreliable_baselines"] == [
        {"meter_id": "m-low", "method": "10-in-10", "rrmse": 0.31, "bias": 0.05}
    ]


def test_performance_summary_without_tables(tmp_path):
    import duckdb

    with duckdb.connect(str(tmp_path / "empty.duckdb")) as empty:
        summary = performance_summary(empty)
    assert summary["scored_events"] == 0 and summary["flagged_meters"] == []
