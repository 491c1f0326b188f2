"""Report: ``performance_report``, the HTML report for people, refreshed after the figures.

It reads DuckDB inside the ``duckdb`` pool (so it never meets a writer) and writes one HTML
file (``VPP_REPORT_DIR``, default ``data/reports/performance_report.html``); the
materialization links it, and ``vpp report`` prints its path (``--open`` opens it).
"""

from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from vpp_pipeline.measurement import config as measurement_config
from vpp_pipeline.report import ReportOptions, build_report, report_path

#: Requested once its inputs changed and none of them (nor the report) is still running.
AFTER_INPUTS_UPDATE = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
)


class PerformanceReportConfig(dg.Config):
    """How much the report plots."""

    max_event_plots_per_meter: int = ReportOptions.max_event_plots_per_meter
    """Event plots per flagged meter (the flag's evidence first, then the most recent)."""
    max_event_plots: int = ReportOptions.max_event_plots
    """Event plots in all (each flagged meter gets at least one)."""
    recent_dispatch_events: int = ReportOptions.recent_dispatch_events
    """Dispatch events on the timeline (most recently received first)."""


@dg.asset(
    group_name="report",
    kinds={"html"},
    deps=[
        "event_performance",
        "underperformers",
        "baseline_accuracy",
        "dispatch_actions",
        "meters",
    ],
    pool="duckdb",
    automation_condition=AFTER_INPUTS_UPDATE,
)
def performance_report(
    context: dg.AssetExecutionContext, config: PerformanceReportConfig, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    """One self-contained HTML file (opens offline): portfolio performance factor by program
    and market-local month; flagged meters with company names, reasons and evidence; per
    flagged meter its events with quarter-hour baseline and actual load (event and adjustment
    windows shaded, committed kW); baseline accuracy by meter; the dispatch timeline (webhook
    received -> site command) of recent events. Open it with `vpp report --open`."""
    path = report_path(Path(duckdb.database))
    options = ReportOptions(
        max_event_plots_per_meter=config.max_event_plots_per_meter,
        max_event_plots=config.max_event_plots,
        recent_dispatch_events=config.recent_dispatch_events,
    )
    with duckdb.get_connection() as conn:
        summary = build_report(conn, path, measurement_config.load_measurement_config(), options)
    absolute = path.resolve()
    context.log.info(f"performance report written to {absolute}")
    pf = summary.portfolio_performance_factor
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(absolute)),
            "open": dg.MetadataValue.url(absolute.as_uri()),
            "charts": summary.charts,
            "event_plots": summary.event_plots,
            "flagged_meters": summary.flagged_meters,
            "portfolio_performance_factor": None if pf is None else round(pf, 4),
            "kilobytes": round(absolute.stat().st_size / 1024, 1),
            "how_to_open": dg.MetadataValue.md(
                f"`vpp report --open`, or open `{absolute}` in a browser (no network needed)."
            ),
        }
    )


report_automation = dg.AutomationConditionSensorDefinition(
    "report_automation",
    target=dg.AssetSelection.assets(performance_report),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes performance_report after its inputs change.",
)

SENSORS = [report_automation]
