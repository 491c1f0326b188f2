"""Shared fixtures: real sandbox servers on 127.0.0.1, temporary DuckDB files, Dagster."""

from __future__ import annotations

import os

# Tests replay fixed historical days (DST days of 2026, ...): their partitions must exist
# whatever today is, so the suite does not use the rolling default start.
os.environ.setdefault("VPP_INTERVAL_PARTITIONS_START", "2025-01-01")

import dagster as dg
import pytest

from vpp_pipeline.definitions import default_resources
from vpp_pipeline.resources import IntervalSourceResource, LeapResource, duckdb_resource
from vpp_pipeline.sandbox import SandboxServer


@pytest.fixture(scope="session")
def shared_sandbox():
    """One read-only sandbox for tests that do not change its state (faults are reset)."""
    with SandboxServer(seed=7, port=0) as server:
        yield server


@pytest.fixture
def sandbox(shared_sandbox):
    shared_sandbox.faults.clear()
    yield shared_sandbox
    shared_sandbox.faults.clear()


@pytest.fixture
def private_sandbox():
    """A sandbox of the test's own, for tests that change the portfolio."""
    with SandboxServer(seed=11, port=0) as server:
        yield server


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def make_resources(server, db_path) -> dict:
    """Every resource the definitions need (environment defaults), with the API, the
    DuckDB file and the landing folder pointed at the test's own."""
    return {
        **default_resources(),
        "interval_source": IntervalSourceResource(landing_dir=str(db_path.parent / "landing")),
        "leap": LeapResource(
            base_url=server.base_url,
            api_key=server.api_key,
            backoff_initial_s=0.01,
            backoff_max_s=0.05,
        ),
        "duckdb": duckdb_resource(db_path),
    }


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`vpp demo` end to end into a temporary folder (its own Dagster instance): the DuckDB
    file, the published copy, the report and the demo's printed output. Shared by the data
    dictionary, report and browser tests (~20 s once)."""
    import io

    from vpp_pipeline.demo import run_demo

    folder = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    with dg.instance_for_test() as inst:
        code = run_demo(seed=7, duckdb_path=folder / "vpp.duckdb", out=out, instance=inst)
        yield {
            "exit_code": code,
            "output": out.getvalue(),
            "duckdb_path": folder / "vpp.duckdb",
            "published_path": folder / "published" / "vpp.duckdb",
            "report_path": folder / "reports" / "performance_report.html",
            "instance": inst,
        }
