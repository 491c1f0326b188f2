"""The bid assets through Dagster against the sandbox, with interval_reads written directly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import httpx
import pytest

from tests.conftest import make_resources
from vpp_pipeline.bidding import market, pipeline
from vpp_pipeline.bidding.demo import run_bid_demo
from vpp_pipeline.bidding.tariffs import load_tariffs
from vpp_pipeline.definitions import STAGE_MODULES
from vpp_pipeline.leap import LeapClient


def _inventory(server, db, instance):
    result = dg.materialize(
        list(dg.load_assets_from_modules(STAGE_MODULES)),
        selection=dg.AssetSelection.assets(
            "meters",
            "meter_history",
            "enrollments",
            "meter_enrollment_status",
            "participation_preferences",
            "nominations",
        ),
        resources=make_resources(server, db),
        instance=instance,
    )
    assert result.success


def _write_interval_reads(db, until: datetime, days: int = 28) -> None:
    """Synthetic 15-minute reads for every CAISO battery meter: 300 kW, 600 kW 16-21 local."""
    with duckdb.connect(str(db)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(
            """
            CREATE OR REPLACE TABLE interval_reads AS
            SELECT m.meter_id, t AS interval_start, t + INTERVAL 15 MINUTE AS interval_end,
                   CASE WHEN hour(timezone('America/Los_Angeles', t)) BETWEEN 16 AND 20
                        THEN 150.0 ELSE 75.0 END AS kwh,
                   NULL::DOUBLE AS consumed_kwh, NULL::DOUBLE AS generated_kwh, true AS final,
                   'csv' AS source, NULL AS source_file, now() AS loaded_at,
                   timezone('America/Los_Angeles', t)::DATE AS local_date
            FROM meters m,
                 unnest(generate_series($start, $end - INTERVAL 15 MINUTE, INTERVAL 15 MINUTE)) AS g(t)
            WHERE m.has_battery AND m.transmission_region = 'CAISO'
            """,
            {"start": until - timedelta(days=days), "end": until},
        )


@pytest.fixture
def inventory_db(private_sandbox, tmp_path, instance):
    db = tmp_path / "vpp.duckdb"
    _inventory(private_sandbox, db, instance)
    return db


def test_bids_for_the_next_trading_day_through_dagster(private_sandbox, inventory_db, instance):
    server = private_sandbox
    _write_interval_reads(
        inventory_db, datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    )
    resources = make_resources(server, inventory_db)
    summary = run_bid_demo(resources, instance=instance)
    assert summary["success"], summary
    assert summary["failed_checks"] == []
    day = summary["trading_day"]
    hours = len(market.trading_day_hours(datetime.fromisoformat(day).date()))
    assert summary["bids"] == summary["batteries"] * hours
    assert summary["with_curve"] > 0
    standing = httpx.get(server.base_url + "/_sandbox/bids").json()["bids"]
    with duckdb.connect(str(inventory_db), read_only=True) as conn:
        rows = conn.execute(
            "SELECT b.meter_id, strftime(b.hour_start, '%Y-%m-%dT%H:%M:%SZ'), b.curve::VARCHAR, "
            "i.status, i.reserve_kw, i.in_demand_window, i.opportunity_cost_usd_per_kwh "
            "FROM bids b JOIN bid_inputs i USING (trading_day, meter_id, hour_start) "
            "WHERE b.trading_day = $d",
            {"d": day},
        ).fetchall()
        sources = {
            r[0] for r in conn.execute("SELECT DISTINCT source FROM day_ahead_prices").fetchall()
        }
    # what Leap holds is exactly the non-empty curves
    placed = {(m, s): json.loads(c) for m, s, c, *_ in rows if json.loads(c)}
    assert {(b["meter_id"], b["start_time"]): b["curve"] for b in standing} == placed
    # idle / disenrolled / not enrolled hours are cancels; every price >= opportunity cost
    for _, _, curve, status, _, _, opportunity in rows:
        points = json.loads(curve)
        if status != pipeline.STATUS_BID:
            assert points == []
        for p in points:
            assert 0.01 <= p["price"] <= 1.0 and p["price"] >= opportunity - 1e-9
    # site batteries (not submeters) hold energy for their demand-window peak
    assert any(r[4] > 0 for r in rows if r[5])
    assert sources <= {"forecast", "sandbox_synthetic"}

    # a re-run replaces the day's bids: no duplicates, Leap answers REPLACED/CANCEL
    again = run_bid_demo(
        resources, instance=instance, trading_day=datetime.fromisoformat(day).date()
    )
    assert again["success"] and again["bids"] == summary["bids"]
    assert again["leap_statuses"].get("PLACED", 0) == 0
    assert len(httpx.get(server.base_url + "/_sandbox/bids").json()["bids"]) == len(standing)


def test_idle_battery_gets_cancels(private_sandbox, inventory_db):
    server = private_sandbox
    day = market.next_biddable_day(datetime.now(UTC))
    _write_interval_reads(inventory_db, market.trading_day_start(day) - timedelta(days=2))
    with duckdb.connect(str(inventory_db)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        battery = conn.execute(
            "SELECT m.meter_id FROM meters m JOIN enrollments e USING (meter_id) "
            "WHERE m.has_battery AND m.transmission_region = 'CAISO' "
            "AND e.enrollment_status = 'ACTIVE' ORDER BY 1 LIMIT 1"
        ).fetchall()[0][0]
        conn.execute(
            "INSERT INTO participation_preferences (meter_id, participation_preference, "
            "start_time, end_time, reason) VALUES ($m, 'IDLE', $s, $e, 'test')",
            {"m": battery, "s": market.trading_day_start(day), "e": market.trading_day_end(day)},
        )
        book = load_tariffs()
        with LeapClient(server.base_url, server.api_key) as client:
            pipeline.build_day_ahead_prices(conn, day, client=client)
            pipeline.build_load_forecast(conn, day, book)
            pipeline.build_bid_inputs(conn, day, book)
            pipeline.build_and_submit_bids(conn, day, client)
        statuses = conn.execute(
            "SELECT DISTINCT i.status, b.points FROM bid_inputs i JOIN bids b "
            "USING (trading_day, meter_id, hour_start) WHERE meter_id = $m",
            {"m": battery},
        ).fetchall()
    assert statuses == [(pipeline.STATUS_IDLE, 0)]


@pytest.mark.parametrize("day", ["2027-03-14", "2027-11-07"])
def test_dst_trading_day_gets_23_or_25_hourly_bids(private_sandbox, inventory_db, day):
    trading_day = datetime.fromisoformat(day).date()
    _write_interval_reads(
        inventory_db, datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    )
    with (
        duckdb.connect(str(inventory_db)) as conn,
        LeapClient(private_sandbox.base_url, private_sandbox.api_key) as client,
    ):
        conn.execute("SET TimeZone = 'UTC'")
        book = load_tariffs()
        pipeline.build_day_ahead_prices(conn, trading_day, client=client)
        pipeline.build_load_forecast(conn, trading_day, book)
        pipeline.build_bid_inputs(conn, trading_day, book)
        pipeline.build_and_submit_bids(conn, trading_day, client)
        counts = {
            r[0]
            for r in conn.execute(
                "SELECT count(*) FROM bids WHERE trading_day = $d GROUP BY meter_id",
                {"d": trading_day},
            ).fetchall()
        }
    assert counts == {len(market.trading_day_hours(trading_day))}
    assert counts <= {23, 25}


def test_oasis_csv_drop_is_preferred_over_the_api(private_sandbox, inventory_db, tmp_path):
    day = datetime(2026, 7, 1).date()
    landing = tmp_path / "prices"
    landing.mkdir()
    header = (
        "INTERVALSTARTTIME_GMT,INTERVALENDTIME_GMT,OPR_DT,OPR_HR,OPR_INTERVAL,NODE_ID_XML,NODE_ID,"
        "NODE,MARKET_RUN_ID,LMP_TYPE,XML_DATA_ITEM,PNODE_RESMRID,GRP_TYPE,POS,MW,GROUP"
    )
    lines = [header]
    for i, (start, end) in enumerate(market.trading_day_hours(day)):
        for lmp_type, item, value in (("LMP", "LMP_PRC", 40 + i), ("MCE", "LMP_ENE_PRC", 1.0)):
            lines.append(
                f"{start:%Y-%m-%dT%H:%M:%S}-00:00,{end:%Y-%m-%dT%H:%M:%S}-00:00,{day},{i + 1},0,"
                f"DLAP_SCE-APND,DLAP_SCE-APND,DLAP_SCE-APND,DAM,{lmp_type},{item},DLAP_SCE-APND,"
                f"ALL,1,{value},1"
            )
    (landing / "20260701_PRC_LMP_DAM.csv").write_text("\n".join(lines) + "\n")
    with duckdb.connect(str(inventory_db)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        summary = pipeline.build_day_ahead_prices(conn, day, client=None, landing_dir=landing)
        rows = conn.execute(
            "SELECT load_zone, source, count(*), min(price_usd_per_kwh), max(lmp_usd_per_mwh) "
            "FROM day_ahead_prices WHERE trading_day = $d GROUP BY ALL",
            {"d": day},
        ).fetchall()
    assert summary["origin"] == "csv"
    assert rows == [("DLAP_SCE-APND", "oasis_csv", 24, 0.04, 63.0)]


@pytest.mark.parametrize("local_time", ["00:05", "06:00", "23:29", "23:45", "23:59"])
def test_the_next_biddable_day_is_always_a_partition(local_time):
    """In the last half hour of a Pacific day the next biddable day is three days ahead; the
    trading-day partitions must already hold it (the demo and the schedule build it)."""
    from assets.bid import trading_days

    for day in ("2026-03-07", "2026-06-15", "2026-11-01", "2026-12-02"):
        now = datetime.fromisoformat(f"{day}T{local_time}").replace(tzinfo=market.MARKET_TZ)
        keys = trading_days.get_partition_keys(current_time=now)
        assert market.next_biddable_day(now).isoformat() in keys, (day, local_time)
