"""The main job end to end on the embedded defaults (``make demo`` / ``vpp demo``).

Starts the sandbox on a free port, materializes every stage in order through Dagster
(real runs, recorded in ``DAGSTER_HOME`` when it is set, so they show in the UI), prints
progress and a summary of row counts against what the sandbox serves, and stops the
sandbox. Exits non-zero when a stage or a check failed, naming it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import dagster as dg

from vpp_pipeline import settings
from vpp_pipeline.resources import LeapResource, duckdb_resource

QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

#: (asset group, what it does), in journey order. Later stages append here.
STAGES: list[tuple[str, str]] = [
    ("connect", "meters and meter history from POST /v2/meters/search"),
    ("manage", "enrollments and nominations"),
]

#: Tables the summary reports, in order.
SUMMARY_TABLES = [
    "meters",
    "meter_history",
    "enrollments",
    "meter_enrollment_status",
    "participation_preferences",
    "nominations",
]


@dataclass
class StageOutcome:
    group: str
    seconds: float
    failed_steps: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.failed_steps or self.failed_checks or self.error)


def _instance() -> dg.DagsterInstance:
    # With DAGSTER_HOME (the Makefile sets it) the runs land where `dagster dev` shows them.
    try:
        return dg.DagsterInstance.get()
    except Exception:
        return dg.DagsterInstance.ephemeral()


def run_stage(group: str, resources: dict, instance: dg.DagsterInstance) -> StageOutcome:
    """Materialize one asset group (and its checks) as one Dagster run."""
    from vpp_pipeline.definitions import STAGE_MODULES

    started = time.monotonic()
    defs_assets = list(dg.load_assets_from_modules(STAGE_MODULES))
    checks = list(dg.load_asset_checks_from_modules(STAGE_MODULES))
    outcome = StageOutcome(group=group, seconds=0.0)
    try:
        result = dg.materialize(
            [*defs_assets, *checks],
            selection=dg.AssetSelection.groups(group),
            resources=resources,
            instance=instance,
            run_config=QUIET_RUN_CONFIG,
            raise_on_error=False,
            tags={"vpp/launched_by": "vpp demo"},
        )
    except Exception as exc:  # a definition or config problem: report, don't hide
        outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.seconds = time.monotonic() - started
        return outcome
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            info = event.step_failure_data.error
            message = info.message.strip().splitlines()[-1] if info else "unknown error"
            outcome.failed_steps.append(f"{event.step_key}: {message}")
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            label = evaluation.asset_check_key.name
            severity = getattr(evaluation.severity, "value", evaluation.severity)
            outcome.failed_checks.append(f"{label} ({severity})")
    outcome.seconds = time.monotonic() - started
    return outcome


def table_counts(duckdb_path: Path) -> dict[str, int | None]:
    import duckdb

    counts: dict[str, int | None] = {}
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        existing = {
            r[0]
            for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        for table in SUMMARY_TABLES:
            counts[table] = (
                conn.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
                if table in existing
                else None
            )
    return counts


def served_counts(base_url: str, api_key: str) -> dict[str, int]:
    """What the API serves, fetched independently of the assets, for the summary."""
    from vpp_pipeline.leap import LeapClient

    with LeapClient(base_url, api_key) as client:
        meters = client.search_meters()
        enrollments = client.search_enrollments()
        nominations = client.search_nominations(start_time=settings.nominations_since())
    return {
        "meters": len(meters),
        "enrollments": sum(len(e.program_enrollment) for e in enrollments),
        "meter_enrollment_status": len(enrollments),
        "nominations": len(nominations),
    }


def run_demo(*, seed: int = 7, duckdb_path: Path | None = None, out: TextIO = sys.stdout) -> int:
    from vpp_pipeline.definitions import default_resources
    from vpp_pipeline.sandbox import SandboxServer

    db_path = duckdb_path or settings.duckdb_path()
    say = lambda text="": print(text, file=out, flush=True)  # noqa: E731
    say(f"vpp demo: sandbox seed {seed}, DuckDB file {db_path}")
    instance = _instance()
    outcomes: list[StageOutcome] = []
    with SandboxServer(seed=seed, port=0) as sandbox:
        say(f"  sandbox API listening on {sandbox.base_url}")
        resources = {
            **default_resources(),
            "leap": LeapResource(base_url=sandbox.base_url, api_key=sandbox.api_key),
            "duckdb": duckdb_resource(db_path),
        }
        for number, (group, label) in enumerate(STAGES, start=1):
            say(f"[{number}/{len(STAGES)}] {group}: {label} ...")
            outcome = run_stage(group, resources, instance)
            outcomes.append(outcome)
            status = "ok" if outcome.ok else "FAILED"
            say(f"      {status} in {outcome.seconds:.1f} s")
            for line in [outcome.error, *outcome.failed_steps, *outcome.failed_checks]:
                if line:
                    say(f"      - {line}")
        served = served_counts(sandbox.base_url, sandbox.api_key)

    counts = table_counts(db_path)
    say()
    say("Summary (rows in DuckDB / served by the API):")
    mismatches = []
    for table in SUMMARY_TABLES:
        rows = counts[table]
        expected = served.get(table)
        rows_text = "missing" if rows is None else str(rows)
        note = ""
        if expected is not None:
            note = f" / {expected}"
            if rows != expected:
                note += "  <-- mismatch"
                mismatches.append(table)
        say(f"  {table:<28} {rows_text:>8}{note}")
    failed = [o.group for o in outcomes if not o.ok]
    if failed or mismatches:
        say(f"\nFAILED: stages {failed or 'none'}; count mismatches {mismatches or 'none'}")
        return 1
    say(f"\nAll {len(STAGES)} stages succeeded. Query the results with: duckdb {db_path}")
    return 0
