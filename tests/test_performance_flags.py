"""Underperformer flags, reconciliation with Leap's figures and the demo summary, over
hand-made event_performance rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from test_performance_fixtures import connect

from vpp_pipeline.measurement import models, performance_summary
from vpp_pipeline.measurement.config import MeasurementConfig
from vpp_pipeline.warehouse import run_models, stage_frame

AS_OF = date(2024, 9, 30)


def make_performance(conn, rows):
    """rows: (event_id, meter_id, days_before_as_of, pf, completeness, is_voluntary,
    committed_kw, status, delivered_kwh)."""
    conn.execute(
        "CREATE OR REPLACE TABLE event_performance (meter_event_id VARCHAR, meter_id VARCHAR, "
        "programs VARCHAR[], event_start TIMESTAMPTZ, event_end TIMESTAMPTZ, "
        "committed_kw DOUBLE, is_voluntary BOOLEAN, performance_factor DOUBLE, "
        "data_completeness DOUBLE, status VARCHAR, baseline_kwh DOUBLE, actual_kwh DOUBLE, "
        "delivered_kwh DOUBLE)"
    )
    for event_id, meter_id, days_back, pf, completeness, voluntary, committed, status, kwh in rows:
        # 18:00 local (PDT) on the day
        start = datetime.combine(AS_OF - timedelta(days=days_back), datetime.min.time(), UTC)
        start += timedelta(hours=25)
        conn.execute(
            "INSERT INTO event_performance VALUES (?, ?, ['ELRP'], ?, ?, ?, ?, ?, ?, ?, 10, 5, ?)",
            [
                event_id,
                meter_id,
                start,
                start + timedelta(hours=1),
                committed,
                voluntary,
                pf,
                completeness,
                status,
                kwh,
            ],
        )


ROWS = [
    # low performer: mean (0.5 + 0.7) / 2 = 0.6 < 0.8 over 2 events
    ("a1", "m-low", 10, 0.5, 1.0, False, 10.0, "scored", 5.0),
    ("a2", "m-low", 20, 0.7, 1.0, False, 10.0, "scored", 7.0),
    # one event only: mean 0.5 but fewer than 2 events -> not LOW_PERFORMANCE
    ("b1", "m-one", 5, 0.5, 1.0, False, 10.0, "scored", 5.0),
    # no response on a committed, non-voluntary event; mean (0.05 + 1.95) / 2 = 1.0
    ("c1", "m-nores", 3, 0.05, 1.0, False, 10.0, "scored", 0.5),
    ("c2", "m-nores", 4, 1.95, 1.0, False, 10.0, "scored", 19.5),
    # voluntary event with pf 0 is not NO_RESPONSE (and mean over 1 event is not LOW)
    ("d1", "m-vol", 3, 0.0, 1.0, True, 10.0, "scored", 0.0),
    # missing data on one event, good performance
    ("e1", "m-missing", 3, 1.0, 0.85, False, 10.0, "scored", 10.0),
    ("e2", "m-missing", 6, 1.0, 0.95, False, 10.0, "scored", 10.0),
    # outside the trailing 90 days (day 90 back) and unscored events are ignored
    ("f1", "m-old", 90, 0.0, 0.0, False, 10.0, "scored", 0.0),
    ("f2", "m-old", 89, 1.0, 1.0, False, 10.0, "scored", 10.0),
    ("f3", "m-old", 1, None, 0.0, False, 10.0, "pending_data", None),
    # boundary: exactly 0.8 mean, 0.1 pf and 0.9 completeness are not flagged
    ("g1", "m-edge", 2, 0.1, 0.9, False, 10.0, "scored", 1.0),
    ("g2", "m-edge", 3, 1.5, 0.9, False, 10.0, "scored", 15.0),
]


@pytest.fixture
def conn(tmp_path):
    conn = connect(tmp_path / "vpp.duckdb")
    make_performance(conn, ROWS)
    yield conn
    conn.close()


def flagged(conn, as_of=AS_OF):
    rows = conn.execute(
        "SELECT meter_id, reason_codes, scored_events, mean_performance_factor, "
        "no_response_event_ids, missing_data_event_ids FROM underperformers "
        "WHERE as_of_date = ? ORDER BY meter_id",
        [as_of],
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_underperformer_reasons(conn):
    models.build_underperformers(conn, MeasurementConfig(), AS_OF)
    flags = flagged(conn)
    assert set(flags) == {"m-low", "m-nores", "m-missing", "m-edge"} - {"m-edge"}
    reasons, events, mean_pf, no_response, missing = flags["m-low"]
    assert no_response == [] and missing == []
    assert reasons == ["LOW_PERFORMANCE"]
    assert events == 2 and mean_pf == pytest.approx((0.5 + 0.7) / 2)
    assert flags["m-nores"][0] == ["NO_RESPONSE"]
    assert flags["m-nores"][3] == ["c1"]
    assert flags["m-missing"][0] == ["MISSING_DATA"]
    assert flags["m-missing"][4] == ["e1"]


def test_underperformer_partition_is_idempotent_and_thresholds_configurable(conn):
    config = MeasurementConfig()
    models.build_underperformers(conn, config, AS_OF)
    models.build_underperformers(conn, config, AS_OF)
    assert conn.execute("SELECT count(*) FROM underperformers").fetchall()[0][0] == 3
    strict = MeasurementConfig(
        defaults=MeasurementConfig().defaults.__class__(low_performance_min_events=1)
    )
    models.build_underperformers(conn, strict, AS_OF - timedelta(days=1))
    # as of the day before, c1/e1/g1 (1-3 days back) shift but m-one now counts with 1 event
    assert "LOW_PERFORMANCE" in flagged(conn, AS_OF - timedelta(days=1))["m-one"][0]
    assert len(flagged(conn)) == 3  # the first partition is untouched


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
    scored = [r for r in ROWS if r[7] == "scored"]
    assert summary["scored_events"] == len(scored)
    assert summary["portfolio_mean_performance_factor"] == pytest.approx(
        sum(r[3] for r in scored) / len(scored)
    )
    assert summary["events_by_status"] == {"pending_data": 1, "scored": len(scored)}
    assert [m["meter_id"] for m in summary["flagged_meters"]] == ["m-low", "m-missing", "m-nores"]
    assert summary["unreliable_baselines"] == [
        {"meter_id": "m-low", "method": "10-in-10", "rrmse": 0.31, "bias": 0.05}
    ]


def test_performance_summary_without_tables(tmp_path):
    import duckdb

    with duckdb.connect(str(tmp_path / "empty.duckdb")) as empty:
        summary = performance_summary(empty)
    assert summary["scored_events"] == 0 and summary["flagged_meters"] == []
