"""The performance report: one self-contained HTML file for people (see ``page``)."""

from pathlib import Path

from vpp_pipeline import settings
from vpp_pipeline.report.page import ReportOptions, ReportSummary, build_report

REPORT_FILE_NAME = "performance_report.html"


def report_path(duckdb_path: Path | None = None) -> Path:
    """Where ``performance_report`` writes for the analytics file ``duckdb_path`` (default
    ``VPP_DUCKDB_PATH``): ``VPP_REPORT_DIR``, default ``data/reports``."""
    return settings.report_dir(duckdb_path) / REPORT_FILE_NAME


__all__ = ["REPORT_FILE_NAME", "ReportOptions", "ReportSummary", "build_report", "report_path"]
