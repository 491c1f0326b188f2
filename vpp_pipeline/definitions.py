"""The Dagster code location (``workspace.yaml`` loads ``vpp_pipeline.definitions:defs``).

Global settings live here: the in-process executor, because DuckDB allows one writing
process per file (every DuckDB asset is also in the ``duckdb`` pool, limited to 1 in
``dagster_home/dagster.yaml``).

Each stage module in ``assets/`` holds its assets and checks, and may list its ``JOBS``,
``SCHEDULES`` and ``SENSORS``; adding a stage is adding its module to ``STAGE_MODULES``.
"""

from __future__ import annotations

import dagster as dg

from assets import (
    analyze_intervals,
    analyze_performance,
    bid,
    connect,
    dispatch,
    manage,
    publish,
    report,
)
from vpp_pipeline.data_dictionary import with_table_metadata
from vpp_pipeline.dispatch.resources import ops_store_resource, site_controller_resource
from vpp_pipeline.resources import duckdb_resource, interval_source_resource, leap_resource

STAGE_MODULES = [
    connect,
    manage,
    analyze_intervals,
    dispatch,
    bid,
    analyze_performance,
    report,
    publish,
]


def load_assets() -> list:
    """Every asset of the stage modules, with the data dictionary's column schema and table
    name attached to the assets that write described tables (the catalog's column lists)."""
    return list(dg.map_asset_specs(with_table_metadata, dg.load_assets_from_modules(STAGE_MODULES)))


def default_resources() -> dict:
    """Resources configured from the environment (see ``vpp_pipeline.settings``)."""
    return {
        "leap": leap_resource(),
        "duckdb": duckdb_resource(),
        "interval_source": interval_source_resource(),
        "ops_store": ops_store_resource(),
        "site_controller": site_controller_resource(),
    }


def build_definitions(
    resources: dict | None = None, *, ops_executor: dg.ExecutorDefinition | None = None
) -> dg.Definitions:
    """The project's definitions; ``resources`` overrides the environment-configured ones.

    ``ops_executor``: the executor of the ops-path jobs (``dispatch.OPS_JOBS``: ops store and HTTP only),
    e.g. ``dagster_celery.celery_executor`` or ``dagster_k8s.k8s_job_executor`` in a deployment's code
    location; every DuckDB job keeps the in-process executor (docs/deployment.md)."""
    collected = {
        name: [item for module in STAGE_MODULES for item in getattr(module, name, [])]
        for name in ("JOBS", "SCHEDULES", "SENSORS")
    }
    if ops_executor is not None:
        collected["JOBS"] = [
            job.with_executor_def(ops_executor) if job.name in dispatch.OPS_JOBS else job
            for job in collected["JOBS"]
        ]
    return dg.Definitions(
        assets=load_assets(),
        asset_checks=dg.load_asset_checks_from_modules(STAGE_MODULES),
        jobs=collected["JOBS"],
        schedules=collected["SCHEDULES"],
        sensors=collected["SENSORS"],
        resources={**default_resources(), **(resources or {})},
        executor=dg.in_process_executor,
    )


defs = build_definitions()
