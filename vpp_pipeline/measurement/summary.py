"""A compact summary of event performance for ``vpp demo`` and analysts."""

from __future__ import annotations

from typing import Any

import duckdb

from vpp_pipeline.warehouse import table_exists


def performance_summary(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Portfolio figures from ``event_performance``, ``underperformers`` (latest as-of day)
    and ``baseline_accuracy``; a missing table gives empty figures, not an error.

    Keys: ``events_by_status`` {status: count}, ``scored_events``,
    ``portfolio_mean_performance_factor`` (mean over scored events, None without any),
    ``delivered_kwh`` (sum over scored events), ``flagged_as_of`` (date or None),
    ``flagged_meters`` [{meter_id, reason_codes, mean_performance_factor,
    min_data_completeness, reason, flagged}] (the rows with a flag), ``inconclusive_meters``
    (the same, rows that are only INCONCLUSIVE), ``unreliable_baselines`` [{meter_id, method,
    rrmse, bias}].
    """
    summary: dict[str, Any] = {
        "events_by_status": {},
        "scored_events": 0,
        "portfolio_mean_performance_factor": None,
        "delivered_kwh": 0.0,
        "flagged_as_of": None,
        "flagged_meters": [],
        "inconclusive_meters": [],
        "unreliable_baselines": [],
    }
    if table_exists(conn, "event_performance"):
        rows = conn.execute(
            "SELECT status, count(*) FROM event_performance GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        summary["events_by_status"] = {status: int(n) for status, n in rows}
        scored, mean_pf, delivered = conn.execute(
            "SELECT count(*), avg(performance_factor), coalesce(sum(delivered_kwh), 0) "
            "FROM event_performance WHERE status = 'scored'"
        ).fetchall()[0]
        summary.update(
            scored_events=int(scored),
            portfolio_mean_performance_factor=None if mean_pf is None else float(mean_pf),
            delivered_kwh=float(delivered),
        )
    if table_exists(conn, "underperformers"):
        rows = conn.execute(
            "SELECT as_of_date, meter_id, reason_codes, mean_performance_factor, "
            "min_data_completeness, flagged IS NOT FALSE, reason FROM underperformers "
            "WHERE as_of_date = (SELECT max(as_of_date) FROM underperformers) ORDER BY meter_id"
        ).fetchall()
        if rows:
            summary["flagged_as_of"] = rows[0][0]
        verdicts = [
            {
                "meter_id": meter_id,
                "reason_codes": list(reasons),
                "mean_performance_factor": pf,
                "min_data_completeness": completeness,
                "reason": reason,
                "flagged": is_flagged,
            }
            for _, meter_id, reasons, pf, completeness, is_flagged, reason in rows
        ]
        summary["flagged_meters"] = [v for v in verdicts if v["flagged"]]
        summary["inconclusive_meters"] = [v for v in verdicts if not v["flagged"]]
    if table_exists(conn, "baseline_accuracy"):
        rows = conn.execute(
            "SELECT meter_id, method, rrmse, bias FROM baseline_accuracy WHERE unreliable "
            "ORDER BY meter_id, method"
        ).fetchall()
        summary["unreliable_baselines"] = [
            {"meter_id": m, "method": method, "rrmse": _float(rrmse), "bias": _float(bias)}
            for m, method, rrmse, bias in rows
        ]
    return summary


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
