"""The Dagster code location (``workspace.yaml`` loads ``vpp_pipeline.definitions:defs``).

Global settings live here: the in-process executor, because DuckDB allows one writing
process per file (every DuckDB asset is also in the ``duckdb`` pool, limited to 1 in
``dagster_home/dagster.yaml``).
"""

from __future__ import annotations

import dagster as dg

from assets import connect, manage
from vpp_pipeline.resources import duckdb_resource, leap_resource

STAGE_MODULES = [connect, manage]


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """The project's definitions; ``resources`` overrides the environment-configured ones."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(STAGE_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(STAGE_MODULES),
        jobs=[manage.inventory_job],
        schedules=[manage.inventory_schedule],
        resources=resources or {"leap": leap_resource(), "duckdb": duckdb_resource()},
        executor=dg.in_process_executor,
    )


defs = build_definitions()
