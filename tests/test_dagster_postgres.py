"""The Dagster instance on PostgreSQL: ``deploy/dagster.yaml`` (the production instance file, connection
from environment variables) loaded as it is, against a temporary database of the local server. On it,
the dispatch sensor and a dispatch_job run (ops store on PostgreSQL too) and one DuckDB asset (the
ops-store mirror, in the ``duckdb`` pool); runs, materializations and pool limits are read back from
PostgreSQL. And the ops path under an out-of-process executor, as a Celery or Kubernetes deployment runs
it (those executors cannot run here; the multiprocess executor moves the step into another process,
which is what they change)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import duckdb
import httpx
import ops_job_target
import psycopg
import pytest
from conftest import POSTGRES_ADMIN_URL
from dagster._core.definitions.reconstruct import ReconstructableJob
from test_dispatch_flow import Stack, meter_note, plain_meters, slot

from assets.dispatch import dispatch_history, dispatch_inbox_sensor
from vpp_pipeline.dispatch.resources import ops_store_resource
from vpp_pipeline.ops import OpsStore
from vpp_pipeline.receiver import ReceiverServer, ReceiverSettings
from vpp_pipeline.resources import duckdb_resource

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.postgres


@pytest.fixture
def dagster_database(postgres_database):
    """An empty database for Dagster's storage, dropped afterwards; its connection in DAGSTER_PG_*."""
    name = f"vpp_dagster_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(postgres_database, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def production_home(tmp_path, monkeypatch, database: str) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml, its DAGSTER_PG_* pointing at ``database``."""
    server = urlsplit(POSTGRES_ADMIN_URL)
    monkeypatch.setenv("DAGSTER_PG_HOST", server.hostname or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(server.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", server.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", server.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", database)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home


def test_dispatch_path_and_a_duckdb_asset_on_a_postgres_instance(
    tmp_path, monkeypatch, dagster_database, postgres_location, sandbox, site
):
    home = production_home(tmp_path, monkeypatch, dagster_database)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_coordinator.dequeue_interval_seconds == 1

        # the dispatch path: receiver -> ops store (PostgreSQL) -> sensor -> dispatch_job -> site
        stack = Stack(tmp_path, sandbox, site, instance, postgres_location)
        meter = plain_meters(sandbox.portfolio, 1)[0]
        event = slot(energy_kw=6.0)
        with stack.receiver:
            summary = stack.send_and_run(meter_note((meter, [event])))
        assert summary is not None and summary["delivered"] == 1
        assert [(r["meter_id"], r["json"]["target_kw"]) for r in site.requests] == [(meter, 6.0)]
        (record,) = instance.get_run_records(dg.RunsFilter(job_name="dispatch_job"))
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert record.dagster_run.tags["vpp/ops_store_id"] == stack.store.store_id

        # one DuckDB asset, in the duckdb pool
        db_path = tmp_path / "vpp.duckdb"
        result = dg.materialize(
            [dispatch_history],
            resources={
                "ops_store": stack.resources["ops_store"],
                "duckdb": duckdb_resource(db_path),
            },
            instance=instance,
        )
        assert result.success
        latest = instance.get_latest_materialization_event(dg.AssetKey("dispatch_actions"))
        assert latest is not None and latest.run_id == result.run_id
        assert instance.event_log_storage.get_concurrency_info("duckdb").slot_count == 1
        with duckdb.connect(str(db_path)) as conn:
            assert conn.execute(
                "SELECT meter_id, target_kw, status FROM dispatch_actions"
            ).fetchall() == [(meter, 6.0, "delivered")]

    # what Dagster wrote is in PostgreSQL, not on the local disk
    with psycopg.connect(
        POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{dagster_database}", autocommit=True
    ) as conn:
        runs = conn.execute("SELECT count(*) FROM runs").fetchall()[0][0]
        materialized = conn.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        ).fetchall()[0][0]
    assert runs == 2 and materialized == 2
    assert not (home / "history").exists() and not (home / "storage" / "runs.db").exists()


def test_the_ops_path_runs_its_step_in_another_process(
    tmp_path, monkeypatch, dagster_database, postgres_location, sandbox, site
):
    home = production_home(tmp_path, monkeypatch, dagster_database)
    for name, value in {
        "VPP_OPS_DB_URL": postgres_location,
        "SITE_CONTROLLER_URL": site.base_url,
        "SITE_CONTROLLER_TOKEN": site.token,
        "LEAP_API_BASE_URL": sandbox.base_url,
        "LEAP_API_KEY": sandbox.api_key,
        # the step process imports this module to rebuild the job
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])
        ),
    }.items():
        monkeypatch.setenv(name, value)
    store = OpsStore.initialize(postgres_location)
    meter = plain_meters(sandbox.portfolio, 1)[0]
    config = ReceiverSettings(api_key="k", ops_db_url=postgres_location)
    with ReceiverServer(config) as receiver:
        body = meter_note((meter, [slot(energy_kw=4.0)]))
        assert httpx.post(receiver.url, json=body, headers={"x-api-key": "k"}).status_code == 200
    with dg.DagsterInstance.from_config(str(home)) as instance:
        with dg.build_sensor_context(
            instance=instance, resources={"ops_store": ops_store_resource(postgres_location)}
        ) as context:
            (request,) = dispatch_inbox_sensor(context).run_requests
        with dg.execute_job(
            # the step process rebuilds the job from this file, as a code location would
            ReconstructableJob.for_file(
                str(Path(ops_job_target.__file__)), "ops_job_on_the_multiprocess_executor"
            ),
            instance=instance,
            run_config=request.run_config,
            tags=request.tags,
        ) as result:
            assert result.success
            step_pids = {
                e.pid
                for e in result.all_events
                if e.event_type_value in ("STEP_START", "STEP_OUTPUT", "STEP_SUCCESS")
            }
    assert step_pids and os.getpid() not in step_pids
    assert [(r["meter_id"], r["json"]["target_kw"]) for r in site.requests] == [(meter, 4.0)]
    assert store.pending_inbox_ids(0) == []
