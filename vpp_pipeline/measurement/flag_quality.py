"""Flag quality against a known truth (the sandbox's ``response_profile``): confusion matrix,
precision and recall of the performance flags and of ``MISSING_DATA``, per response category
and per load type. Used by ``bench/bench_flags.py`` and the demo.

Truth categories: ``good`` (responds 0.9-1.1 of committed kW), ``partial`` (0.3-0.7), ``none``
(0-0.04) and ``gaps`` (good responders with missing data). A performance flag
(``LOW_PERFORMANCE`` or ``NO_RESPONSE``) is right on ``partial`` and ``none`` meters;
``MISSING_DATA`` is right on ``gaps`` meters. Only meters with at least one committed,
non-voluntary, non-real-time event (scored or insufficient_data) in the flag window (a
meter-level event, or a group share the flags may judge: see ``sql/group_event_members.sql``) are
counted: the flags may not judge the others (skipping a voluntary event is allowed). The
performance figures are also given over the meters with at least two such events.
"""

from __future__ import annotations

from datetime import date

import duckdb

from vpp_pipeline.measurement.models import stage_group_event_members

UNDER_RESPONDING = ("partial", "none")


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def flag_quality(
    conn: duckdb.DuckDBPyConnection,
    truth: dict[str, str],
    as_of_date: date,
    load_types: dict[str, str] | None = None,
    timezone: str = "America/Los_Angeles",
    window_days: int = 90,
    min_events: int = 2,
    group_events: bool = False,
) -> dict:
    """Precision / recall of the ``underperformers`` rows of ``as_of_date`` against ``truth``
    (meter_id -> category); ``load_types`` (meter_id -> a label such as the site archetype)
    adds a per-load-type breakdown. Returns plain figures (JSON-ready); ``with_min_events``
    repeats the performance figures over the meters with at least ``min_events`` such events
    (LOW_PERFORMANCE needs two: a partial responder with one event cannot be told).
    ``group_events``: whether the flags judge group events (``flag_group_events``); the
    population follows the same rule (shares of meters in the group at the event only)."""
    stage_group_event_members(conn)
    # the truth is joined here, not in DuckDB: the demo reads its database read-only
    judged = conn.execute(
        """
        WITH judged_meters AS (
            SELECT meter_id, count(*) AS eligible_events
            FROM event_performance
            LEFT JOIN group_event_members USING (meter_event_id)
            WHERE status IN ('scored', 'insufficient_data')
                AND committed_kw > 0
                AND NOT is_voluntary
                AND NOT list_contains(dispatch_event_types, '5m')
                AND (market_group_event_id IS NULL OR (
                    $group_events AND coalesce(was_member AND split_over_members, false)
                ))
                AND CAST(timezone($tz, event_start) AS DATE)
                    BETWEEN CAST($as_of AS DATE) - ($window - 1) AND CAST($as_of AS DATE)
            GROUP BY meter_id
        ),
        flags AS (
            SELECT
                meter_id,
                list_has_any(reason_codes, ['LOW_PERFORMANCE', 'NO_RESPONSE']) AS performance_flag,
                list_contains(reason_codes, 'MISSING_DATA') AS missing_data_flag,
                list_contains(reason_codes, 'INCONCLUSIVE') AS inconclusive
            FROM underperformers
            WHERE as_of_date = $as_of
        )
        SELECT
            j.meter_id,
            coalesce(f.performance_flag, false),
            coalesce(f.missing_data_flag, false),
            coalesce(f.inconclusive, false),
            j.eligible_events
        FROM judged_meters j
        LEFT JOIN flags f USING (meter_id)
        ORDER BY j.meter_id
        """,
        {"tz": timezone, "as_of": as_of_date, "window": window_days, "group_events": group_events},
    ).fetchall()
    rows = [
        (m, truth[m], (load_types or {}).get(m, "?"), perf, missing, inconclusive, events)
        for m, perf, missing, inconclusive, events in judged
        if m in truth
    ]
    several = [r[:6] for r in rows if r[6] >= min_events]
    return {
        **summarize([r[:6] for r in rows]),
        "with_min_events": {
            "min_events": min_events,
            **{
                k: v
                for k, v in summarize(several).items()
                if k
                in ("meters_judged", "confusion", "performance_precision", "performance_recall")
            },
        },
    }


def summarize(rows: list[tuple]) -> dict:
    """Figures from (meter_id, category, load_type, performance_flag, missing_data_flag,
    inconclusive) rows."""
    tp = fp = fn = tn = 0
    md_tp = md_fp = md_fn = 0
    per_category: dict[str, dict[str, int]] = {}
    per_load_type: dict[str, dict[str, int]] = {}
    false_flags: list[str] = []
    missed: list[str] = []
    for meter_id, category, load_type, performance, missing, inconclusive in rows:
        positive = category in UNDER_RESPONDING
        tp += positive and performance
        fp += (not positive) and performance
        fn += positive and not performance
        tn += (not positive) and not performance
        if performance and not positive:
            false_flags.append(f"{meter_id} ({category}, {load_type})")
        if positive and not performance:
            missed.append(f"{meter_id} ({category}, {load_type})")
        md_tp += category == "gaps" and missing
        md_fp += category != "gaps" and missing
        md_fn += category == "gaps" and not missing
        cat = per_category.setdefault(
            category,
            {"meters": 0, "performance_flag": 0, "missing_data": 0, "inconclusive": 0},
        )
        cat["meters"] += 1
        cat["performance_flag"] += performance
        cat["missing_data"] += missing
        cat["inconclusive"] += inconclusive
        lt = per_load_type.setdefault(load_type, {"tp": 0, "fp": 0, "fn": 0, "tn": 0})
        lt[
            "tp"
            if positive and performance
            else "fp"
            if performance
            else "fn"
            if positive
            else "tn"
        ] += 1
    return {
        "meters_judged": len(rows),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "performance_precision": _ratio(tp, tp + fp),
        "performance_recall": _ratio(tp, tp + fn),
        "missing_data": {"tp": md_tp, "fp": md_fp, "fn": md_fn},
        "missing_data_precision": _ratio(md_tp, md_tp + md_fp),
        "missing_data_recall": _ratio(md_tp, md_tp + md_fn),
        "per_category": per_category,
        "per_load_type": per_load_type,
        "false_flags": false_flags,
        "missed": missed,
    }
