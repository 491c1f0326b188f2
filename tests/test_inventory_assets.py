"""Connect/Manage assets materialized through Dagster against the real sandbox."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import httpx

from tests.conftest import make_resources
from vpp_pipeline.definitions import STAGE_MODULES, build_definitions
from vpp_pipeline.leap import LeapClient
from vpp_pipeline.settings import nominations_since

TABLES = [
    "meters",
    "meter_history",
    "enrollments",
    "meter_enrollment_status",
    "participation_preferences",
    "nominations",
]

ROOT = Path(__file__).resolve().parent.parent


def materialize_inventory(server, db_path, instance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [
            *dg.load_assets_from_modules(STAGE_MODULES),
            *dg.load_asset_checks_from_modules(STAGE_MODULES),
        ],
        selection=dg.AssetSelection.groups("connect", "manage"),
        resources=make_resources(server, db_path),
        instance=instance,
    )


def snapshot(db_path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def test_inventory_matches_what_the_sandbox_serves(private_sandbox, tmp_path, instance):
    db = tmp_path / "vpp.duckdb"
    result = materialize_inventory(private_sandbox, db, instance)
    assert result.success
    failed = [e.asset_check_key.name for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed == []
    portfolio = private_sandbox.portfolio
    # What the API serves for the asset's window, asked independently of the asset.
    with LeapClient(private_sandbox.base_url, private_sandbox.api_key) as client:
        served_nominations = client.search_nominations(start_time=nominations_since())
    with duckdb.connect(str(db), read_only=True) as conn:
        count = lambda t: conn.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]  # noqa: E731
        assert count("meters") == len(portfolio.meters) >= 60
        assert count("meter_history") == len(portfolio.meters)
        assert count("meter_enrollment_status") == len(portfolio.meters)
        assert count("enrollments") == sum(
            len(e["program_enrollment"]) for e in portfolio.enrollments.values()
        )
        assert count("nominations") == len(served_nominations) > 0
        batteries = conn.execute(
            "SELECT count(*) FROM meters WHERE has_battery AND battery_power_kw > 0 AND battery_energy_kwh > 0"
        ).fetchall()[0][0]
        assert batteries == sum(
            "BATTERY_STORAGE" in m["load_types"] for m in portfolio.meters.values()
        )
        tz = conn.execute("SELECT typeof(valid_from) FROM meter_history LIMIT 1").fetchall()[0][0]
        assert tz == "TIMESTAMP WITH TIME ZONE"


def test_materializing_twice_gives_identical_tables(private_sandbox, tmp_path, instance):
    db = tmp_path / "vpp.duckdb"
    assert materialize_inventory(private_sandbox, db, instance).success
    first = snapshot(db)
    assert materialize_inventory(private_sandbox, db, instance).success
    assert snapshot(db) == first


def test_attribute_change_adds_a_history_row(private_sandbox, tmp_path, instance):
    db = tmp_path / "vpp.duckdb"
    assert materialize_inventory(private_sandbox, db, instance).success
    meter_id = next(iter(private_sandbox.portfolio.meters))
    response = httpx.patch(
        f"{private_sandbox.base_url}/_sandbox/meters/{meter_id}",
        json={"utility": {"tariff": "PGE-B20"}},
    )
    assert response.status_code == 200, response.text
    assert materialize_inventory(private_sandbox, db, instance).success
    with duckdb.connect(str(db), read_only=True) as conn:
        versions = conn.execute(
            "SELECT tariff, valid_to IS NULL AS current FROM meter_history WHERE meter_id = $m ORDER BY valid_from",
            {"m": meter_id},
        ).fetchall()
        assert len(versions) == 2
        assert versions[0][1] is False and versions[1] == ("PGE-B20", True)
        assert conn.execute(
            "SELECT tariff FROM meters WHERE meter_id = $m", {"m": meter_id}
        ).fetchall()[0] == ("PGE-B20",)
        # Every other meter still has exactly one version.
        assert (
            conn.execute("SELECT count(*) FROM meter_history").fetchall()[0][0]
            == len(private_sandbox.portfolio.meters) + 1
        )


def test_failed_fetch_leaves_tables_as_they_were(private_sandbox, tmp_path, instance):
    db = tmp_path / "vpp.duckdb"
    assert materialize_inventory(private_sandbox, db, instance).success
    before = snapshot(db)
    private_sandbox.faults.clear()
    resources = make_resources(private_sandbox, db)
    resources["leap"] = resources["leap"].model_copy(update={"max_attempts": 2})
    private_sandbox.faults.set("500", count=10)
    result = dg.materialize(
        [*dg.load_assets_from_modules(STAGE_MODULES)],
        selection=dg.AssetSelection.groups("connect"),
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    private_sandbox.faults.clear()
    assert not result.success
    assert snapshot(db) == before


def test_definitions_load_with_in_process_executor_and_duckdb_pool():
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(TABLES) <= keys
    for assets_def in dg.load_assets_from_modules(STAGE_MODULES):
        assert assets_def.op.pool == "duckdb", assets_def.op.name
    job = defs.resolve_job_def("inventory_job")
    assert job.executor_def.name == "in_process"


def test_dagster_definitions_validate_passes():
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
