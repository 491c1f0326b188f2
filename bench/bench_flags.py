"""Benchmark: quality of the underperformer flags against the sandbox's truth (issue 10).

For each seed, a sandbox portfolio of the given size with ``--days`` of dispatch history is
served over HTTP; the real pipeline loads meters, nominations and dispatch events from it
(Dagster materializations), the sandbox's interval reads for the same days go straight into
``interval_reads`` (the data the intervals API would serve), and baselines, event
performance and the underperformer flags are computed by the pipeline's SQL models. The
flags of yesterday are compared with ``response_profile`` (good / partial / none / gaps):
confusion matrix, precision and recall of the performance flags (LOW_PERFORMANCE,
NO_RESPONSE: right on partial and none meters) and of MISSING_DATA (right on gaps meters),
per seed, response category and load type (site archetype). Time to flag: the flags are
also computed for every as-of day of the history; for each under-responding meter flagged
on the last day, the days from its first event the flags judge to the first as-of day it
carried a performance flag.

    .venv/bin/python bench/bench_flags.py --seeds 1 2 3 4 5 --meters 40 72 100 60 120 --days 180
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_baseline_accuracy import materialize  # noqa: E402 (a sibling script: bench/ is sys.path[0])

from vpp_pipeline.definitions import default_resources  # noqa: E402
from vpp_pipeline.measurement import models  # noqa: E402
from vpp_pipeline.measurement.config import load_measurement_config  # noqa: E402
from vpp_pipeline.measurement.flag_quality import UNDER_RESPONDING, flag_quality  # noqa: E402
from vpp_pipeline.resources import IntervalSourceResource, LeapResource, duckdb_resource  # noqa: E402
from vpp_pipeline.sandbox import SandboxServer  # noqa: E402
from vpp_pipeline.sandbox.intervals import (  # noqa: E402
    event_truth,
    generate_intervals,
    response_profile,
)

TZ = "America/Los_Angeles"


def load_interval_reads(conn: duckdb.DuckDBPyConnection, sandbox: SandboxServer, days: int) -> int:
    portfolio = sandbox.portfolio
    frame = generate_intervals(portfolio, portfolio.anchor - timedelta(days=days), portfolio.anchor)
    frame = frame.with_columns(
        pl.col("interval_start").dt.convert_time_zone(TZ).dt.date().alias("local_date")
    ).select(
        "meter_id",
        "interval_start",
        "interval_end",
        "kwh",
        "consumed_kwh",
        "generated_kwh",
        "final",
        "local_date",
    )
    conn.register("sandbox_reads", frame.to_arrow())
    conn.execute(
        "CREATE OR REPLACE TABLE interval_reads AS SELECT meter_id, interval_start, interval_end, "
        "kwh, consumed_kwh, generated_kwh, final, 'api' AS source, NULL::VARCHAR AS source_file, "
        "now() AS loaded_at, local_date FROM sandbox_reads ORDER BY local_date, meter_id, interval_start"
    )
    conn.unregister("sandbox_reads")
    return frame.height


def time_to_flag(conn, truth: dict[str, str], last_as_of, group_events: bool) -> list[int]:
    """Days from each flagged under-responder's first committed, non-voluntary event in the
    data (one the flags judge) to the first as-of day it carried a performance flag."""
    under = [m for m, c in truth.items() if c in UNDER_RESPONDING]
    rows = conn.execute(
        """
        WITH first_flag AS (
            SELECT meter_id, min(as_of_date) AS first_flagged
            FROM underperformers
            WHERE list_has_any(reason_codes, ['LOW_PERFORMANCE', 'NO_RESPONSE'])
                AND meter_id IN (SELECT unnest($under))
            GROUP BY meter_id
        ),
        first_event AS (
            SELECT meter_id, min(CAST(timezone($tz, event_start) AS DATE)) AS first_event
            FROM event_performance
            LEFT JOIN group_event_members USING (meter_event_id)  -- staged by flag_quality
            WHERE status = 'scored' AND committed_kw > 0 AND NOT is_voluntary
                AND NOT list_contains(dispatch_event_types, '5m')
                AND (market_group_event_id IS NULL OR (
                    $group_events AND coalesce(was_member AND split_over_members, false)
                ))
            GROUP BY meter_id
        )
        SELECT f.first_flagged - e.first_event
        FROM first_flag f JOIN first_event e USING (meter_id)
        WHERE f.meter_id IN (
            SELECT meter_id FROM underperformers
            WHERE as_of_date = $last AND list_has_any(reason_codes, ['LOW_PERFORMANCE', 'NO_RESPONSE'])
        )
        """,
        {"under": under, "tz": TZ, "last": last_as_of, "group_events": group_events},
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def bound_coverage(conn, true_delivery: pl.DataFrame) -> dict:
    """How often [delivered_kw_low, delivered_kw_high] holds the sandbox's true delivered kW,
    over scored meter-level events with bounds from placebo days (battery submeters, metered
    directly, left out), and the median half width as a share of committed kW."""
    conn.register("true_delivery", true_delivery.to_arrow())
    row = conn.execute(
        """
        SELECT
            count(*),
            avg(CAST(t.true_delivered_kw BETWEEN p.delivered_kw_low AND p.delivered_kw_high AS INTEGER)),
            median((p.delivered_kw_high - p.delivered_kw_low) / 2 / p.committed_kw)
        FROM event_performance p
        JOIN true_delivery t USING (meter_event_id)
        WHERE p.status = 'scored' AND p.placebo_days >= 2 AND p.committed_kw > 0
            AND p.market_group_event_id IS NULL AND p.event_window_completeness = 1
            AND t.true_delivered_kw IS NOT NULL
        """
    ).fetchall()[0]
    conn.unregister("true_delivery")
    return {
        "events": row[0],
        "coverage": None if row[1] is None else round(row[1], 3),
        "median_half_width_share_of_committed": None if row[2] is None else round(row[2], 3),
    }


def run_seed(seed: int, meters: int, days: int, flag_days: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"vpp_bench_flags_{seed}_"))
    db_path = work / "vpp.duckdb"
    os.environ["VPP_DISPATCH_LOOKBACK_DAYS"] = str(days + 5)
    started = time.perf_counter()
    with (
        SandboxServer(seed=seed, port=0, n_meters=meters, history_days=days) as sandbox,
        dg.instance_for_test() as instance,
    ):
        resources = {
            **default_resources(),
            "leap": LeapResource(base_url=sandbox.base_url, api_key=sandbox.api_key),
            "duckdb": duckdb_resource(db_path),
            "interval_source": IntervalSourceResource(landing_dir=str(work / "landing")),
        }
        materialize(dg.AssetSelection.groups("connect", "manage"), resources, instance)
        materialize(dg.AssetSelection.assets("dispatch_events"), resources, instance)
        truth = response_profile(sandbox.portfolio)
        true_delivery = event_truth(sandbox.portfolio).select("meter_event_id", "true_delivered_kw")
        archetypes = {m: s.archetype for m, s in sandbox.portfolio.sites.items()}
        anchor = sandbox.portfolio.anchor
        with duckdb.connect(str(db_path)) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            reads = load_interval_reads(conn, sandbox, days)
    config = load_measurement_config()
    last_as_of = anchor.astimezone(ZoneInfo(TZ)).date() - timedelta(days=1)
    with duckdb.connect(str(db_path)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        t0 = time.perf_counter()
        models.build_baselines(conn, config)
        models.build_event_performance(conn, config, anchor)
        pipeline_s = time.perf_counter() - t0
        for back in range(flag_days - 1, -1, -1):
            models.build_underperformers(conn, config, last_as_of - timedelta(days=back))
        quality = flag_quality(
            conn,
            truth,
            last_as_of,
            archetypes,
            TZ,
            window_days=config.defaults.flag_window_days,
            min_events=2,  # the breakdown over meters with two or more judged events
            group_events=config.defaults.flag_group_events,
        )
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM event_performance GROUP BY ALL").fetchall()
        )
        delays = time_to_flag(conn, truth, last_as_of, config.defaults.flag_group_events)
        coverage = bound_coverage(conn, true_delivery)
    return {
        "seed": seed,
        "meters": meters,
        "days": days,
        "interval_reads": reads,
        "events_by_status": statuses,
        "truth": {c: sum(1 for v in truth.values() if v == c) for c in sorted(set(truth.values()))},
        **quality,
        "time_to_flag_days": {
            "flagged_under_responders": len(delays),
            "median": statistics.median(delays) if delays else None,
            "max": max(delays) if delays else None,
        },
        "bounds": coverage,
        "analyze_s": round(pipeline_s, 2),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--meters", type=int, nargs="+", default=[40, 72, 100, 60, 120])
    parser.add_argument("--days", type=int, default=180, help="days of dispatch history and reads")
    parser.add_argument(
        "--flag-days", type=int, default=None, help="as-of days computed (default: --days)"
    )
    args = parser.parse_args()
    sizes = (args.meters * len(args.seeds))[: len(args.seeds)]
    flag_days = args.flag_days or args.days
    results = [run_seed(s, n, args.days, flag_days) for s, n in zip(args.seeds, sizes, strict=True)]
    for r in results:
        print(json.dumps(r, default=str))
    print()
    print(
        "seed meters judged | TP FP FN  TN | prec  recall | >=2 events: judged TP FP FN prec  recall"
        " | MISSING_DATA tp fp fn prec | inconclusive | days to flag median max | bounds hold"
    )

    def fmt(x):
        return "-" if x is None else f"{x:.2f}"

    for r in results:
        c, md, two = r["confusion"], r["missing_data"], r["with_min_events"]
        c2 = two["confusion"]
        inconclusive = sum(v["inconclusive"] for v in r["per_category"].values())
        ttf = r["time_to_flag_days"]
        print(
            f"{r['seed']:>4} {r['meters']:>6} {r['meters_judged']:>6} | {c['tp']:>2} {c['fp']:>2} "
            f"{c['fn']:>2} {c['tn']:>3} | {fmt(r['performance_precision']):>4} "
            f"{fmt(r['performance_recall']):>6} | {two['meters_judged']:>18} {c2['tp']:>2} "
            f"{c2['fp']:>2} {c2['fn']:>2} {fmt(two['performance_precision']):>4} "
            f"{fmt(two['performance_recall']):>6} | {md['tp']:>15} {md['fp']:>2} {md['fn']:>2} "
            f"{fmt(r['missing_data_precision']):>4} | {inconclusive:>12} | "
            f"{ttf['median']!s:>19} {ttf['max']!s:>3} | {r['bounds']['coverage']!s:>11}"
        )


if __name__ == "__main__":
    main()
