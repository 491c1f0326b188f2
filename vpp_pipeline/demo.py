"""The main job end to end on the embedded defaults (``make demo`` / ``vpp demo``).

Starts the sandbox on a free port, runs every stage of the journey in order through
Dagster (real runs, recorded in ``DAGSTER_HOME`` when it is set, so they show in the UI),
prints progress and a summary (row counts against what the sandbox serves, and what each
stage reports), and stops the sandbox. Exits non-zero when a stage or a check failed,
naming it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import dagster as dg

from vpp_pipeline import settings
from vpp_pipeline.resources import IntervalSourceResource, LeapResource, duckdb_resource

QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

#: Days of interval reads the demo loads (ending yesterday, market time): the default span
#: of the interval partitions, so a first run fills every one of them.
DEMO_INTERVAL_DAYS = settings.DEFAULT_INTERVAL_HISTORY_DAYS


@dataclass
class DemoContext:
    """What every stage can use: the running sandbox, resources, instance and files."""

    sandbox: Any
    resources: dict
    instance: dg.DagsterInstance
    duckdb_path: Path
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stage:
    """One step of the journey: assets to materialize (one run; ``partition_range`` makes
    it one single-run backfill) and/or an action that reports lines for the summary."""

    name: str
    label: str
    selection: dg.AssetSelection | None = None
    partition_range: Callable[[DemoContext], tuple[str, str]] | None = None
    partition_key: Callable[[DemoContext], str] | None = None
    run_config: dict | None = None
    action: Callable[[DemoContext], list[str]] | None = None


@dataclass
class StageOutcome:
    name: str
    seconds: float = 0.0
    failed_steps: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    error: str | None = None
    report: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.failed_steps or self.failed_checks or self.error)


def _interval_range(ctx: DemoContext) -> tuple[str, str]:
    today = datetime.now(ZoneInfo(settings.market_timezone())).date()
    first = max(
        today - timedelta(days=DEMO_INTERVAL_DAYS),
        date.fromisoformat(settings.interval_partitions_start(today)),
    )
    return first.isoformat(), (today - timedelta(days=1)).isoformat()


def meter_names(duckdb_path: Path) -> dict[str, str]:
    """meter_id -> company name, for printing names beside ids."""
    import duckdb

    from vpp_pipeline.report.data import meter_names as names

    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        return names(conn)


def labelled(meter_id: str, names: dict[str, str]) -> str:
    return f"{names.get(meter_id, '(unknown meter)')} ({meter_id[:8]})"


def _interval_report(ctx: DemoContext) -> list[str]:
    import duckdb

    with duckdb.connect(str(ctx.duckdb_path), read_only=True) as conn:
        meters, days, rows, first, last = conn.execute(
            "SELECT count(DISTINCT meter_id), count(DISTINCT local_date), count(*), min(local_date), "
            "max(local_date) FROM interval_reads"
        ).fetchall()[0]
        per_meter_days = conn.execute(
            "SELECT min(d), max(d) FROM (SELECT meter_id, count(DISTINCT local_date) AS d "
            "FROM interval_reads GROUP BY meter_id)"
        ).fetchall()[0]
        rejects = conn.execute("SELECT count(*) FROM interval_rejects").fetchall()[0][0]
    return [
        f"interval_reads: {rows:,} rows, {meters} meters, {days} local days ({first} .. {last})",
        f"days of data per meter: {per_meter_days[0]} to {per_meter_days[1]}; rejected rows: {rejects}",
    ]


def _bid_report(ctx: DemoContext) -> list[str]:
    from vpp_pipeline.bidding.demo import run_bid_demo

    summary = run_bid_demo(ctx.resources, instance=ctx.instance)
    ctx.notes["bids"] = summary
    lines = [
        f"trading day {summary['trading_day']} (bids due by {summary['deadline']}): "
        f"{summary.get('batteries', 0)} batteries x {summary.get('hours', 0)} hours",
        f"{summary.get('bids', 0)} bids submitted, {summary.get('with_curve', 0)} with a curve "
        f"({summary.get('offered_kwh', 0):,.0f} kWh offered), {summary.get('cancels', 0)} empty (cancel)",
        f"price sources: {summary.get('price_sources')}; battery status: {summary.get('status_hours')}",
    ]
    if not summary["success"]:
        raise RuntimeError(f"bid run failed (checks not passed: {summary['failed_checks']})")
    return lines


def _dispatch_report(ctx: DemoContext) -> list[str]:
    from vpp_pipeline.dispatch.demo import run_dispatch_demo

    ops_db_path = ctx.duckdb_path.parent / "demo_ops.sqlite"
    # Every demo starts a new sandbox and a new site controller, so the demo's ops store starts new
    # too: a store left by an earlier demo believes the schedules it sent are already at a site that
    # no longer has them, and would send nothing.
    for leftover in (
        ops_db_path,
        *(ops_db_path.with_name(ops_db_path.name + s) for s in ("-wal", "-shm", "-journal")),
    ):
        leftover.unlink(missing_ok=True)
    result = run_dispatch_demo(
        ctx.sandbox.base_url,
        ctx.sandbox.api_key,
        instance=ctx.instance,
        ops_db_path=ops_db_path,
    )
    ctx.notes["dispatch"] = result
    if not result.get("ok"):
        raise RuntimeError(f"test dispatch did not reach the site controller: {result}")
    names = meter_names(ctx.duckdb_path)
    return [
        f"{result['program']} for {labelled(result['meter_id'], names)}: "
        "integration-test webhook -> receiver -> ops store -> "
        f"dispatch_inbox_sensor -> dispatch_job -> site controller",
        f"webhook to site command: {result['latency_s']:.3f} s "
        f"({result['site_requests']} site request(s), dry_run={result['dry_run']}, "
        f"webhook HTTP {result['webhook_http_status']})",
    ]


def _yesterday(ctx: DemoContext) -> str:
    return (
        datetime.now(ZoneInfo(settings.market_timezone())).date() - timedelta(days=1)
    ).isoformat()


def _performance_report(ctx: DemoContext) -> list[str]:
    import duckdb

    from vpp_pipeline.measurement.summary import performance_summary

    with duckdb.connect(str(ctx.duckdb_path), read_only=True) as conn:
        summary = performance_summary(conn)
        by_method = conn.execute(
            "SELECT baseline_method, count(*), round(avg(performance_factor), 3) FROM event_performance "
            "WHERE status = 'scored' GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    ctx.notes["performance"] = summary
    names = meter_names(ctx.duckdb_path)
    mean_pf = summary["portfolio_mean_performance_factor"]
    lines = [
        f"meter events by status: {summary['events_by_status']}",
        f"portfolio mean performance factor: {mean_pf:.3f} over {summary['scored_events']} scored events"
        if mean_pf is not None
        else "portfolio mean performance factor: no scored events yet",
        "by baseline method: " + ", ".join(f"{m} {n} events pf {pf}" for m, n, pf in by_method),
        f"flagged meters as of {summary['flagged_as_of']}: {len(summary['flagged_meters'])}",
    ]
    for flag in summary["flagged_meters"]:
        lines.append(f"  {labelled(flag['meter_id'], names)}: {flag['reason']}")
    lines.append(
        f"inconclusive (not flagged; the noise is too large to tell): "
        f"{len(summary['inconclusive_meters'])}"
    )
    lines += _flag_quality_lines(ctx, summary["flagged_as_of"])
    unreliable = summary["unreliable_baselines"]
    lines.append(f"meter/method pairs with unreliable baselines (RRMSE > 20%): {len(unreliable)}")
    for row in unreliable:
        lines.append(
            f"  {labelled(row['meter_id'], names)}  {row['method']}  RRMSE {row['rrmse']:.1%}"
            f"  bias {row['bias']:+.1%}"
        )
    return lines


#: The journey, in order. Later stages append here.
STAGES: list[Stage] = [
    Stage(
        "connect",
        "meters and meter history from POST /v2/meters/search",
        selection=dg.AssetSelection.groups("connect"),
    ),
    Stage("manage", "enrollments and nominations", selection=dg.AssetSelection.groups("manage")),
    Stage(
        "intervals",
        f"{DEMO_INTERVAL_DAYS} days of 15-minute interval reads from the intervals API (one backfill run)",
        selection=dg.AssetSelection.assets("interval_files", "interval_reads"),
        partition_range=_interval_range,
        action=_interval_report,
    ),
    Stage(
        "performance",
        "dispatch events, baselines, event performance, baseline accuracy, reconciliation",
        selection=dg.AssetSelection.assets(
            "dispatch_events",
            "baselines",
            "event_performance",
            "baseline_accuracy",
            "performance_reconciliation",
        ),
    ),
    Stage(
        "underperformers",
        "underperformer flags as of yesterday (market time)",
        selection=dg.AssetSelection.assets("underperformers"),
        partition_key=_yesterday,
        action=_performance_report,
    ),
    Stage(
        "dispatch",
        "one test dispatch through receiver, sensor and job to the sandbox site controller",
        action=_dispatch_report,
    ),
    Stage(
        "bids",
        "CAISO battery bid inputs, optimized schedules and bid curves for the next biddable day",
        action=_bid_report,
    ),
    Stage(
        "report",
        "dispatch history mirror, the performance report, and the analysts' read-only copy",
        selection=dg.AssetSelection.assets(
            "ops_dispatch_events", "dispatch_actions", "performance_report"
        ),
        action=lambda ctx: _report_lines(ctx),
    ),
]


def _report_lines(ctx: DemoContext) -> list[str]:
    """Publish the analysts' copy (the job the publish sensor runs after every run that
    changed analyst tables; the demo has no daemon, so it runs it here) and say where
    the report is."""
    from assets.publish import publish_analytics_job
    from vpp_pipeline.report import report_path

    result = publish_analytics_job.execute_in_process(
        resources={"duckdb": ctx.resources["duckdb"]},
        instance=ctx.instance,
        run_config=QUIET_RUN_CONFIG,
        tags={"vpp/launched_by": "vpp demo"},
    )
    published = result.output_for_node("publish_analytics_copy")
    ctx.notes["published"] = published["path"]
    ctx.notes["report"] = str(report_path(ctx.duckdb_path).resolve())
    return [
        f"performance report: {ctx.notes['report']}",
        f"read-only copy for analysts: {published['path']} ({published['tables']} tables, "
        f"{published['bytes'] / 1e6:.1f} MB)",
    ]


#: Tables the summary reports, in order, with what the API serves where it can be counted.
SUMMARY_TABLES = [
    "meters",
    "meter_history",
    "enrollments",
    "meter_enrollment_status",
    "participation_preferences",
    "nominations",
    "interval_reads",
    "interval_rejects",
    "dispatch_events",
    "baselines",
    "event_performance",
    "underperformers",
    "baseline_accuracy",
    "performance_reconciliation",
    "load_forecast",
    "bid_inputs",
    "bids",
    "dispatch_actions",
]


def _instance() -> dg.DagsterInstance:
    # With DAGSTER_HOME (the Makefile sets it) the runs land where `dagster dev` shows them.
    try:
        return dg.DagsterInstance.get()
    except Exception:
        return dg.DagsterInstance.ephemeral()


def materialize_stage(stage: Stage, ctx: DemoContext, outcome: StageOutcome) -> None:
    """Materialize a stage's assets (and their checks) as one Dagster run."""
    from vpp_pipeline.definitions import STAGE_MODULES, load_assets

    tags = {"vpp/launched_by": "vpp demo"}
    if stage.partition_range is not None:
        start, end = stage.partition_range(ctx)
        tags |= {
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        }
    result = dg.materialize(
        [
            *load_assets(),
            *dg.load_asset_checks_from_modules(STAGE_MODULES),
        ],
        selection=stage.selection,
        partition_key=stage.partition_key(ctx) if stage.partition_key else None,
        resources=ctx.resources,
        instance=ctx.instance,
        run_config={**QUIET_RUN_CONFIG, **(stage.run_config or {})},
        raise_on_error=False,
        tags=tags,
    )
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            info = event.step_failure_data.error
            message = info.message.strip().splitlines()[-1] if info else "unknown error"
            outcome.failed_steps.append(f"{event.step_key}: {message}")
    for evaluation in result.get_asset_check_evaluations():
        severity = getattr(evaluation.severity, "value", str(evaluation.severity))
        if not evaluation.passed and severity == "ERROR":
            outcome.failed_checks.append(evaluation.asset_check_key.name)
        elif not evaluation.passed:
            outcome.report.append(explain_warning(ctx, evaluation))


def _flag_quality_lines(ctx: DemoContext, as_of) -> list[str]:
    """The flags' precision and recall against the sandbox's truth (its response_profile):
    performance flags are right on partial and none responders, MISSING_DATA on gaps meters."""
    if ctx.sandbox is None or as_of is None:
        return []
    import duckdb

    from vpp_pipeline.measurement.config import load_measurement_config
    from vpp_pipeline.measurement.flag_quality import flag_quality
    from vpp_pipeline.sandbox.intervals import response_profile

    defaults = load_measurement_config().defaults
    with duckdb.connect(str(ctx.duckdb_path), read_only=True) as conn:
        quality = flag_quality(
            conn,
            response_profile(ctx.sandbox.portfolio),
            as_of,
            timezone=settings.market_timezone(),
            window_days=defaults.flag_window_days,
            min_events=defaults.low_performance_min_events,
            group_events=defaults.flag_group_events,
        )

    def pct(value) -> str:
        return "-" if value is None else f"{value:.0%}"

    c, md = quality["confusion"], quality["missing_data"]
    return [
        f"flags vs the sandbox's truth ({quality['meters_judged']} meters with events the flags "
        f"judge): performance flags precision {pct(quality['performance_precision'])}, recall "
        f"{pct(quality['performance_recall'])} (TP {c['tp']}, FP {c['fp']}, FN {c['fn']}, "
        f"TN {c['tn']}); MISSING_DATA precision {pct(quality['missing_data_precision'])}, "
        f"recall {pct(quality['missing_data_recall'])} (TP {md['tp']}, FP {md['fp']}, "
        f"FN {md['fn']})",
    ]


def _deliberate_gap_meters(ctx: DemoContext) -> set[str]:
    """Meters the sandbox leaves gaps in on purpose (its ``gaps`` response category)."""
    if ctx.sandbox is None:
        return set()
    from vpp_pipeline.sandbox.intervals import response_profile

    return {m for m, c in response_profile(ctx.sandbox.portfolio).items() if c == "gaps"}


def explain_warning(ctx: DemoContext, evaluation) -> str:
    """One line for a warning check: what it found and whether the sandbox meant it (its gap
    meters miss days, hours and event windows on purpose; its readings stop at its clock, the
    UTC midnight, so the last local day is still arriving) or not."""
    name = evaluation.asset_check_key.name
    meta = evaluation.metadata
    found = meta["violations"].value if "violations" in meta else None
    meters = list(meta["meter_ids"].value) if "meter_ids" in meta else None
    text = f"check {name}: {found if found is not None else '?'} finding(s)"
    if meters is None or ctx.sandbox is None:
        names = meter_names(ctx.duckdb_path) if meters else {}
        who = ", ".join(labelled(m, names) for m in (meters or [])[:4])
        return f"warning: {text}{' on ' + who if who else ''}; see the check in the UI"
    deliberate = _deliberate_gap_meters(ctx)
    names = meter_names(ctx.duckdb_path)
    findings = [(m, None) for m in meters]
    arriving_day = None
    if name == "interval_reads_complete_days" and ctx.sandbox is not None:
        findings, arriving_day = _incomplete_days(ctx)
    gap_findings = [f for f in findings if f[0] in deliberate]
    arriving = [
        f
        for f in findings
        if arriving_day is not None and f[0] not in deliberate and f[1] == arriving_day
    ]
    unexpected = [f for f in findings if f not in gap_findings and f not in arriving]
    parts = []
    if gap_findings:
        gap_meters = sorted({m for m, _ in gap_findings})
        on = (
            f"{len(gap_findings)} on"
            if any(d is not None for _, d in gap_findings)
            else f"{'all' if not unexpected and not arriving else 'some'} on"
        )
        parts.append(
            f"{on} the sandbox's meter(s) with deliberately missing data ("
            + ", ".join(labelled(m, names) for m in gap_meters)
            + ")"
        )
    if arriving:
        parts.append(
            f"{len(arriving)} on {arriving_day}, still arriving (the sandbox serves readings "
            f"up to {ctx.sandbox.portfolio.anchor:%Y-%m-%d %H:%M} UTC)"
        )
    if not unexpected:
        return f"expected: {text}: " + "; ".join(parts)
    who = ", ".join(labelled(m, names) for m in sorted({m for m, _ in unexpected})[:4])
    return f"warning: {text}, {len(unexpected)} not explained by the sandbox's design: {who}"


def _incomplete_days(ctx: DemoContext) -> tuple[list[tuple[str, object]], object]:
    """Incomplete (meter, local day) pairs of the loaded days, and the local day that was
    still arriving when the sandbox's readings stopped (its anchor), if any."""
    import duckdb

    from assets.analyze_intervals import COMPLETE_DAYS_SQL

    start, end = _interval_range(ctx)
    anchor = ctx.sandbox.portfolio.anchor
    arriving = anchor.astimezone(ZoneInfo(settings.market_timezone()))
    arriving_day = arriving.date() if arriving.time() != datetime.min.time() else None
    with duckdb.connect(str(ctx.duckdb_path), read_only=True) as conn:
        conn.execute("SET VARIABLE market_tz = $tz", {"tz": settings.market_timezone()})
        rows = conn.execute(
            COMPLETE_DAYS_SQL, {"s": date.fromisoformat(start), "e": date.fromisoformat(end)}
        ).fetchall()
    return [(r[0], r[1]) for r in rows], arriving_day


def run_stage(stage: Stage, ctx: DemoContext) -> StageOutcome:
    outcome = StageOutcome(stage.name)
    started = time.monotonic()
    try:
        if stage.selection is not None:
            materialize_stage(stage, ctx, outcome)
        if stage.action is not None and outcome.ok:
            outcome.report.extend(stage.action(ctx))
    except Exception as exc:  # report, don't hide: the summary names the failing stage
        outcome.error = f"{type(exc).__name__}: {exc}"
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


def run_demo(
    *,
    seed: int = 7,
    duckdb_path: Path | None = None,
    out: TextIO = sys.stdout,
    instance: dg.DagsterInstance | None = None,
) -> int:
    from vpp_pipeline.definitions import default_resources
    from vpp_pipeline.dispatch.resources import ops_store_resource
    from vpp_pipeline.sandbox import SandboxServer

    db_path = duckdb_path or settings.duckdb_path()
    say = lambda text="": print(text, file=out, flush=True)  # noqa: E731
    say(f"vpp demo: sandbox seed {seed}, DuckDB file {db_path}")
    outcomes: list[StageOutcome] = []
    with SandboxServer(seed=seed, port=0) as sandbox:
        say(f"  sandbox API listening on {sandbox.base_url}")
        resources = {
            **default_resources(),
            "ops_store": ops_store_resource(db_path.parent / "demo_ops.sqlite"),
            "leap": LeapResource(base_url=sandbox.base_url, api_key=sandbox.api_key),
            "duckdb": duckdb_resource(db_path),
            "interval_source": IntervalSourceResource(
                landing_dir=str(db_path.parent / "landing" / "intervals"),
                market_timezone=settings.market_timezone(),
            ),
        }
        ctx = DemoContext(sandbox, resources, instance or _instance(), db_path)
        for number, stage in enumerate(STAGES, start=1):
            say(f"[{number}/{len(STAGES)}] {stage.name}: {stage.label} ...")
            outcome = run_stage(stage, ctx)
            outcomes.append(outcome)
            say(f"      {'ok' if outcome.ok else 'FAILED'} in {outcome.seconds:.1f} s")
            for line in [
                outcome.error,
                *outcome.failed_steps,
                *outcome.failed_checks,
                *outcome.report,
            ]:
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
        rows_text = "missing" if rows is None else f"{rows:,}"
        note = ""
        if expected is not None:
            note = f" / {expected:,}"
            if rows != expected:
                note += "  <-- mismatch"
                mismatches.append(table)
        say(f"  {table:<28} {rows_text:>10}{note}")
    failed = [o.name for o in outcomes if not o.ok]
    if failed or mismatches:
        say(f"\nFAILED: stages {failed or 'none'}; count mismatches {mismatches or 'none'}")
        return 1
    say(f"\nAll {len(STAGES)} stages succeeded.")
    say(
        f'Query the analysts\' copy: .venv/bin/vpp sql "SELECT * FROM event_performance LIMIT 5" '
        f"(opens {ctx.notes['published']} read-only; `.venv/bin/vpp sql` alone starts a prompt)"
    )
    say("Open the report: .venv/bin/vpp report --open")
    say(f"Performance report: {ctx.notes['report']}")
    return 0


def backfill_intervals(
    *, start: date, end: date, fetch_api: bool = True, out: TextIO = sys.stdout
) -> int:
    """Materialize interval_reads for local days [start, end] as one run (``vpp backfill-intervals``),
    against the API configured in the environment, recorded in DAGSTER_HOME."""
    from vpp_pipeline.definitions import default_resources

    stage = Stage(
        "backfill",
        f"interval_reads {start} .. {end}",
        selection=dg.AssetSelection.assets("interval_files", "interval_reads"),
        partition_range=lambda _ctx: (start.isoformat(), end.isoformat()),
        run_config={"ops": {"interval_reads": {"config": {"fetch_api": fetch_api}}}},
    )
    ctx = DemoContext(None, default_resources(), _instance(), settings.duckdb_path())
    print(
        f"backfilling interval_reads for {start} .. {end} ({(end - start).days + 1} days) ...",
        file=out,
        flush=True,
    )
    outcome = run_stage(stage, ctx)
    for line in [outcome.error, *outcome.failed_steps, *outcome.failed_checks, *outcome.report]:
        if line:
            print(f"  - {line}", file=out)
    print(f"{'ok' if outcome.ok else 'FAILED'} in {outcome.seconds:.1f} s", file=out)
    return 0 if outcome.ok else 1
