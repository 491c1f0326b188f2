"""The analyze-performance assets as real Dagster materializations: dispatch events from
the sandbox's dispatch search, and pending events scored by automation when their interval
data arrives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest
from conftest import make_resources
from test_performance_fixtures import add_event, add_meter, add_reads, connect, local

from assets import analyze_performance
from assets.manage import nominations
from vpp_pipeline.leap import LeapClient
from vpp_pipeline.resources import duckdb_resource


def test_dispatch_events_from_sandbox_split_groups_by_nomination(sandbox, instance, tmp_path):
    db_path = tmp_path / "vpp.duckdb"
    result = dg.materialize(
        [nominations, analyze_performance.dispatch_events],
        resources=make_resources(sandbox, db_path),
        instance=instance,
    )
    assert result.success
    anchor = datetime.now(UTC)
    start = anchor.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=120)
    with LeapClient(sandbox.base_url, sandbox.api_key) as client:
        groups = client.search_group_dispatches(
            start, anchor + timedelta(days=7), exclude_real_time_events=False
        )
        meters = client.search_meter_dispatches(
            start, anchor + timedelta(days=7), exclude_real_time_events=False
        )
    noms = [n for n in sandbox.portfolio.nominations]

    def nomination_at(meter_id, program, at):
        for n in noms:
            s = datetime.fromisoformat(n["start_time"].replace("Z", "+00:00"))
            e = n["end_time"] and datetime.fromisoformat(n["end_time"].replace("Z", "+00:00"))
            if (
                n["meter_id"] == meter_id
                and n["program_identifier"] == program
                and s <= at
                and (not e or at < e)
            ):
                return n["nomination_kw"]
        return None

    with duckdb.connect(str(db_path), read_only=True) as conn:
        rows = {
            r[0]: r
            for r in conn.execute(
                "SELECT meter_event_id, market_group_event_id, meter_id, energy_kw, "
                "nomination_kw, committed_kw, source FROM dispatch_events"
            ).fetchall()
        }
    expected_count = sum(len(r.timeslots) for r in meters) + sum(
        len(r.timeslots) * len(r.meter_ids) for r in groups
    )
    assert len(rows) == expected_count
    checked = 0
    for group in groups:
        for slot in group.timeslots:
            kws = [nomination_at(m, slot.programs[0], slot.start_time) for m in group.meter_ids]
            for meter_id, kw in zip(group.meter_ids, kws, strict=True):
                share = (
                    kw / sum(kws) if None not in kws and sum(kws) > 0 else 1 / len(group.meter_ids)
                )
                row = rows[f"{slot.market_group_event_id}:{meter_id}"]
                assert row[1] == slot.market_group_event_id and row[2] == meter_id
                if slot.energy_kw is not None:
                    assert row[3] == pytest.approx(slot.energy_kw * share, rel=1e-9)
                assert row[4] == pytest.approx(slot.nomination_kw * share, rel=1e-9)
                assert row[5] == pytest.approx(
                    (slot.energy_kw if slot.energy_kw is not None else slot.nomination_kw) * share,
                    rel=1e-9,
                )
                checked += 1
    assert checked > 0
    assert {r[6] for r in rows.values()} == {"search"}


def test_ops_mirror_rows_win(sandbox, instance, tmp_path):
    db_path = tmp_path / "vpp.duckdb"
    resources = make_resources(sandbox, db_path)
    assert dg.materialize(
        [nominations, analyze_performance.dispatch_events], resources=resources, instance=instance
    ).success
    with duckdb.connect(str(db_path)) as conn:
        event_id = conn.execute("SELECT min(meter_event_id) FROM dispatch_events").fetchall()[0][0]
        conn.execute(
            "CREATE TABLE ops_dispatch_events AS SELECT * REPLACE ('webhook' AS source, "
            "7 AS revision, 1.5 AS energy_kw, 1.5 AS committed_kw) FROM dispatch_events "
            "WHERE meter_event_id = $e",
            {"e": event_id},
        )
        total = conn.execute("SELECT count(*) FROM dispatch_events").fetchall()[0][0]
    assert dg.materialize(
        [analyze_performance.dispatch_events], resources=resources, instance=instance
    ).success
    with duckdb.connect(str(db_path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT source, revision, energy_kw FROM dispatch_events WHERE meter_event_id = $e",
            {"e": event_id},
        ).fetchall()
        assert conn.execute("SELECT count(*) FROM dispatch_events").fetchall()[0][0] == total
    assert rows == [("webhook", 7, 1.5)]


@dg.asset(group_name="analyze")
def interval_reads():
    """Stand-in for the real interval_reads asset: the test writes the rows itself."""


def _evaluate(defs, instance, cursor):
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    requested = {
        key
        for key in ("interval_reads", "baselines", "event_performance")
        if result.get_num_requested(dg.AssetKey(key))
    }
    return requested, result.cursor


def test_pending_event_scored_by_automation_when_reads_arrive(tmp_path):
    tz = ZoneInfo("America/Los_Angeles")
    event_day = datetime.now(tz).date() - timedelta(days=1)
    while event_day.weekday() >= 5:
        event_day -= timedelta(days=1)
    db_path = tmp_path / "vpp.duckdb"
    conn = connect(db_path)
    add_meter(conn, "m1")
    add_event(conn, "e1", "m1", local(event_day, 16), local(event_day, 18), energy_kw=2.0)
    add_reads(
        conn, "m1", event_day - timedelta(days=50), event_day - timedelta(days=1), lambda t: 2.0
    )
    conn.close()

    checks = dg.load_asset_checks_from_modules([analyze_performance])
    targets = [analyze_performance.baselines, analyze_performance.event_performance]
    defs = dg.Definitions(
        assets=[interval_reads, *targets],
        asset_checks=[
            c for c in checks if {k.asset_key for k in c.check_keys} <= {t.key for t in targets}
        ],
        sensors=analyze_performance.SENSORS,
        resources={"duckdb": duckdb_resource(db_path)},
    )
    assert analyze_performance.analyze_performance_automation in analyze_performance.SENSORS
    with dg.instance_for_test() as instance:
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("interval_reads"), *[t.key for t in targets]],
        )
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations())
        with duckdb.connect(str(db_path), read_only=True) as c:
            assert c.execute("SELECT status FROM event_performance").fetchall() == [
                ("pending_data",)
            ]
        requested, cursor = _evaluate(defs, instance, None)
        requested, cursor = _evaluate(defs, instance, cursor)
        assert requested == set()  # nothing new upstream

        # the event day's reads arrive: 2 kWh per quarter hour as usual, 1 kWh in the event
        with duckdb.connect(str(db_path)) as c:
            c.execute("SET TimeZone = 'UTC'")
            add_reads(c, "m1", event_day, event_day, lambda t: 1.0 if 16 <= t.hour < 18 else 2.0)
        assert job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("interval_reads")]
        ).success
        requested, cursor = _evaluate(defs, instance, cursor)
        # event_performance is requested in the same tick, downstream of baselines
        assert requested == {"baselines", "event_performance"}
        assert job.execute_in_process(
            instance=instance, asset_selection=[t.key for t in targets]
        ).success
        requested, cursor = _evaluate(defs, instance, cursor)
        assert requested == set()
    with duckdb.connect(str(db_path), read_only=True) as c:
        rows = c.execute(
            "SELECT status, delivered_kwh, performance_factor FROM event_performance"
        ).fetchall()
    # baseline 2.0 kWh x ratio 1 (flat load), actual 1.0: 8 x 1.0 kWh over 2 h vs 2 kW
    assert rows == [("scored", pytest.approx(8.0), pytest.approx(2.0))]


def test_reconciliation_against_sandbox_performance(sandbox, instance, tmp_path):
    from vpp_pipeline.leap.analytics import fetch_meter_performance

    anchor = sandbox.portfolio.anchor
    with LeapClient(sandbox.base_url, sandbox.api_key) as client:
        meter_ids = list(sandbox.portfolio.meters)[:20]
        leap = fetch_meter_performance(client, meter_ids, anchor - timedelta(days=60), anchor)
    assert leap.height >= 2
    first, second = leap.row(0, named=True), leap.row(1, named=True)
    db_path = tmp_path / "vpp.duckdb"
    with duckdb.connect(str(db_path)) as conn:
        conn.execute(
            "CREATE TABLE event_performance (meter_event_id VARCHAR, meter_id VARCHAR, "
            "event_start TIMESTAMPTZ, event_end TIMESTAMPTZ, baseline_kwh DOUBLE, "
            "actual_kwh DOUBLE, delivered_kwh DOUBLE, status VARCHAR)"
        )
        for row, delivered in (
            (first, first["delivered_kwh"] * 1.01),
            (second, second["delivered_kwh"] * 1.5 + 1),
        ):
            conn.execute(
                "INSERT INTO event_performance VALUES (?, ?, ?, ?, 0, 0, ?, 'scored')",
                [row["meter_event_id"], row["meter_id"], row["start"], row["end"], delivered],
            )
    result = dg.materialize(
        [analyze_performance.performance_reconciliation],
        resources=make_resources(sandbox, db_path),
        instance=instance,
    )
    assert result.success
    with duckdb.connect(str(db_path), read_only=True) as conn:
        flagged = dict(
            conn.execute(
                "SELECT meter_event_id, reason_code FROM performance_reconciliation"
            ).fetchall()
        )
    assert first["meter_event_id"] not in flagged  # 1 % off: within 5 %
    assert flagged[second["meter_event_id"]] == "DELIVERED_DIFFERS"
