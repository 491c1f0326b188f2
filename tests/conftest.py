"""Shared fixtures: real sandbox servers on 127.0.0.1, temporary DuckDB files, Dagster."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

# Tests replay fixed historical days (DST days of 2026, ...): their partitions must exist
# whatever today is, so the suite does not use the rolling default start.
os.environ.setdefault("VPP_INTERVAL_PARTITIONS_START", "2025-01-01")

import dagster as dg
import pytest

from vpp_pipeline.definitions import default_resources
from vpp_pipeline.resources import IntervalSourceResource, LeapResource, duckdb_resource
from vpp_pipeline.sandbox import SandboxServer
from vpp_pipeline.sandbox.site_controller import SiteControllerServer


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


@pytest.fixture
def site():
    """A recording sandbox site controller on a free port (bearer token ``site-token``)."""
    with SiteControllerServer(token="site-token") as server:
        yield server


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


# --- the ops store on both backends ---------------------------------------------------------------------
#
# `ops_location` runs a test once on a SQLite file and once on PostgreSQL (a schema of its own in a
# database made for this test session, both dropped afterwards). Where no server answers, the PostgreSQL
# half is skipped and the summary says so in one line; `make test` prints how many ran.

POSTGRES_ADMIN_URL = os.environ.get(
    "VPP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_postgres_outcomes: dict[str, int] = {}
_postgres_skip_reason: list[str] = []


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def postgres_database():
    """A PostgreSQL database for this test session (URL), dropped at the end; skips when no server."""
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = (
            f"no PostgreSQL server at {POSTGRES_ADMIN_URL} ({str(exc).strip().splitlines()[0]})"
        )
        _postgres_skip_reason.append(reason)
        pytest.skip(reason)
    name = f"vpp_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(POSTGRES_ADMIN_URL, name)
    finally:
        from vpp_pipeline.ops.postgres_backend import close_pools

        close_pools()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def new_postgres_schema(database_url: str) -> tuple[str, str]:
    """A fresh schema in ``database_url``: (its name, a URL whose search_path is that schema)."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in database_url else "?"
    return schema, f"{database_url}{sep}options=-csearch_path%3D{schema}"


def split_postgres_location(url: str) -> tuple[str, str]:
    """(database URL, schema) of a location made by :func:`new_postgres_schema`."""
    base, _, options = url.partition("?options=-csearch_path%3D")
    return base, options


def drop_postgres_schema(database_url: str, schema: str) -> None:
    import psycopg

    from vpp_pipeline.ops.postgres_backend import close_pools

    close_pools()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def postgres_location(postgres_database):
    """A URL of an empty PostgreSQL schema of this test's own (dropped afterwards)."""
    schema, url = new_postgres_schema(postgres_database)
    try:
        yield url
    finally:
        drop_postgres_schema(postgres_database, schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ops_location(request, tmp_path):
    """Where this test's ops store goes, on each backend: a SQLite path or a PostgreSQL URL. Nothing is
    created there (see ``ops_store``)."""
    if request.param == "sqlite":
        yield str(tmp_path / "ops.sqlite")
    else:
        yield request.getfixturevalue("postgres_location")


@pytest.fixture
def ops_store(ops_location):
    """A new, empty ops store on each backend."""
    from vpp_pipeline.ops import OpsStore

    return OpsStore.initialize(ops_location)


def receiver_store_settings(location: str) -> dict:
    """``ReceiverSettings`` keyword arguments for an ops store location (path or URL)."""
    from vpp_pipeline.ops import is_postgres

    if is_postgres(location):
        return {"ops_db_url": location}
    return {"ops_db_path": location}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "postgres: runs against PostgreSQL (skipped when no server is reachable)"
    )


def pytest_runtest_logreport(report):
    """Count each PostgreSQL test once: its call, or its setup when that skipped or failed."""
    if "postgres" not in report.keywords:
        return
    if report.when == "call":
        outcome = report.outcome
    elif report.when == "setup" and report.outcome != "passed":
        outcome = "skipped" if report.outcome == "skipped" else "error"
    else:
        return
    _postgres_outcomes[outcome] = _postgres_outcomes.get(outcome, 0) + 1


def pytest_terminal_summary(terminalreporter):
    if not _postgres_outcomes:
        return
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(_postgres_outcomes.items()))
    line = f"PostgreSQL tests: {counts}"
    if _postgres_skip_reason:
        line += f" - skipped because {_postgres_skip_reason[0]}"
    terminalreporter.write_line(line)


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
