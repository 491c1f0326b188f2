"""interval_reads from the API path: a real sandbox over HTTP, pagination, a 429, the
correction rule between sources, and the command-line backfill."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb

from tests.conftest import make_resources
from vpp_pipeline.definitions import STAGE_MODULES
from vpp_pipeline.sandbox.intervals import generate_intervals

TZ = ZoneInfo("America/Los_Angeles")
ROOT = Path(__file__).resolve().parent.parent


def all_defs():
    return [
        *dg.load_assets_from_modules(STAGE_MODULES),
        *dg.load_asset_checks_from_modules(STAGE_MODULES),
    ]


def local_day_utc(day: date):
    return (
        datetime.combine(day, time(0), tzinfo=TZ).astimezone(ZoneInfo("UTC")),
        datetime.combine(day + timedelta(days=1), time(0), tzinfo=TZ).astimezone(ZoneInfo("UTC")),
    )


def test_api_partition_with_pagination_and_a_429(private_sandbox, tmp_path, instance):
    db = tmp_path / "vpp.duckdb"
    resources = make_resources(private_sandbox, db)
    assert dg.materialize(
        all_defs(),
        selection=dg.AssetSelection.groups("connect"),
        resources=resources,
        instance=instance,
    ).success
    day = (private_sandbox.portfolio.anchor - timedelta(days=5)).astimezone(TZ).date()
    private_sandbox.state.clear_requests()
    private_sandbox.faults.set("429", count=2, retry_after_seconds=0, path_prefix="/v1.1/analytics")
    result = dg.materialize(
        all_defs(),
        selection=dg.AssetSelection.assets("interval_files", "interval_reads"),
        partition_key=day.isoformat(),
        resources=resources,
        instance=instance,
        run_config={"ops": {"interval_reads": {"config": {"api_page_size": 1000}}}},
    )
    assert result.success
    calls = [
        r for r in private_sandbox.requests if r["path"] == "/v1.1/analytics/intervals/meter/search"
    ]
    statuses = [c["status"] for c in calls]
    assert statuses[:2] == [429, 429]
    assert statuses.count(200) >= 6  # 72 meters x 96 intervals in pages of 1000
    assert sum(1 for c in calls if c["status"] == 200 and c["json"].get("page_token")) >= 5

    start, end = local_day_utc(day)
    truth = generate_intervals(private_sandbox.portfolio, start, end)
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT meter_id), sum(kwh) FROM interval_reads WHERE local_date = $d",
            {"d": day},
        ).fetchall()[0]
        assert rows[0] == truth.height
        assert rows[1] == truth["meter_id"].n_unique()
        assert abs(rows[2] - truth["kwh"].sum()) < 1e-6 * max(1.0, abs(truth["kwh"].sum()))
        assert conn.execute("SELECT min(source), max(source) FROM interval_reads").fetchall() == [
            ("api", "api")
        ]

    # Re-running the partition (same API data) changes nothing.
    with duckdb.connect(str(db), read_only=True) as conn:
        before = conn.execute("SELECT * FROM interval_reads ORDER BY ALL").fetchall()
        deliveries = conn.execute("SELECT count(*) FROM interval_deliveries").fetchall()[0][0]
    assert dg.materialize(
        all_defs(),
        selection=dg.AssetSelection.assets("interval_files", "interval_reads"),
        partition_key=day.isoformat(),
        resources=resources,
        instance=instance,
    ).success
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT * FROM interval_reads ORDER BY ALL").fetchall() == before
        assert (
            conn.execute("SELECT count(*) FROM interval_deliveries").fetchall()[0][0] == deliveries
        )


def test_command_line_backfill_of_several_days_is_one_run(private_sandbox, tmp_path):
    db = tmp_path / "vpp.duckdb"
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "LEAP_API_BASE_URL": private_sandbox.base_url,
        "LEAP_API_KEY": private_sandbox.api_key,
        "VPP_DUCKDB_PATH": str(db),
        "VPP_INTERVAL_LANDING_DIR": str(tmp_path / "landing"),
        "DAGSTER_HOME": str(home),
    }
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        resources = make_resources(private_sandbox, db)
        assert dg.materialize(
            all_defs(),
            selection=dg.AssetSelection.groups("connect"),
            resources=resources,
            instance=instance,
        ).success
    end = (private_sandbox.portfolio.anchor - timedelta(days=2)).astimezone(TZ).date()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "vpp_pipeline.cli",
            "backfill-intervals",
            "--days",
            "3",
            "--end",
            end.isoformat(),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (
        f"backfilling interval_reads for {end - timedelta(days=2)} .. {end} (3 days)"
        in completed.stdout
    )
    with duckdb.connect(str(db), read_only=True) as conn:
        days = conn.execute("SELECT DISTINCT local_date FROM interval_reads ORDER BY 1").fetchall()
    assert [d for (d,) in days] == [end - timedelta(days=2), end - timedelta(days=1), end]
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        runs = instance.get_runs()
        backfill_runs = [r for r in runs if r.tags.get("dagster/asset_partition_range_start")]
        assert len(backfill_runs) == 1
