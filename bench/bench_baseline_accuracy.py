"""Accuracy of delivered kW per baseline method against the sandbox's ground truth (issue 4).

Runs the real pipeline (Dagster materializations against the sandbox over HTTP): meters,
enrollments, nominations, ``--days`` of interval reads, dispatch events, baselines and event
performance. Then joins each scored meter event with the sandbox's ``event_truth`` (delivered
kWh from the counterfactual load it generated) and prints, per baseline method, the error
distribution of delivered kW (ours - truth): count, mean (bias), MAE, median and 90th
percentile of the absolute error, and the same as a share of committed kW.

    .venv/bin/python bench/bench_baseline_accuracy.py --days 90
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp_pipeline.definitions import STAGE_MODULES, default_resources  # noqa: E402
from vpp_pipeline.resources import IntervalSourceResource, LeapResource, duckdb_resource  # noqa: E402
from vpp_pipeline.sandbox import SandboxServer  # noqa: E402
from vpp_pipeline.sandbox.intervals import event_truth  # noqa: E402
from vpp_pipeline.warehouse import stage_frame  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def materialize(selection, resources, instance, **kwargs) -> None:
    result = dg.materialize(
        [
            *dg.load_assets_from_modules(STAGE_MODULES),
            *dg.load_asset_checks_from_modules(STAGE_MODULES),
        ],
        selection=selection,
        resources=resources,
        instance=instance,
        run_config=QUIET,
        **kwargs,
    )
    if not result.success:
        raise SystemExit(f"materialization of {selection} failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=90, help="days of interval reads loaded")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vpp_bench_accuracy_"))
    db_path = work / "vpp.duckdb"
    with (
        SandboxServer(seed=args.seed, port=0, history_days=max(args.days, 90)) as sandbox,
        dg.instance_for_test() as instance,
    ):
        resources = {
            **default_resources(),
            "leap": LeapResource(base_url=sandbox.base_url, api_key=sandbox.api_key),
            "duckdb": duckdb_resource(db_path),
            "interval_source": IntervalSourceResource(landing_dir=str(work / "landing")),
        }
        materialize(dg.AssetSelection.groups("connect", "manage"), resources, instance)
        today = datetime.now(ZoneInfo("America/Los_Angeles")).date()
        materialize(
            dg.AssetSelection.assets("interval_files", "interval_reads"),
            resources,
            instance,
            tags={
                "dagster/asset_partition_range_start": (
                    today - timedelta(days=args.days)
                ).isoformat(),
                "dagster/asset_partition_range_end": (today - timedelta(days=1)).isoformat(),
            },
        )
        materialize(
            dg.AssetSelection.assets("dispatch_events", "baselines", "event_performance"),
            resources,
            instance,
        )
        truth = event_truth(sandbox.portfolio)

    with duckdb.connect(str(db_path)) as conn:
        stage_frame(conn, "truth", truth.select("meter_event_id", "true_delivered_kw", "response"))
        per_method = conn.sql(
            """
            WITH scored AS (
                SELECT p.baseline_method, p.committed_kw, p.delivered_kw, t.true_delivered_kw, t.response,
                       p.delivered_kw - t.true_delivered_kw AS error_kw
                FROM event_performance p JOIN truth t USING (meter_event_id)
                WHERE p.status = 'scored' AND t.true_delivered_kw IS NOT NULL
            )
            SELECT baseline_method,
                   count(*) AS events,
                   round(avg(error_kw), 2) AS bias_kw,
                   round(avg(abs(error_kw)), 2) AS mae_kw,
                   round(median(abs(error_kw)), 2) AS median_abs_error_kw,
                   round(quantile_cont(abs(error_kw), 0.9), 2) AS p90_abs_error_kw,
                   round(avg(abs(error_kw) / nullif(committed_kw, 0)) * 100, 1) AS mae_pct_of_committed,
                   round(quantile_cont(abs(error_kw) / nullif(committed_kw, 0), 0.9) * 100, 1)
                       AS p90_pct_of_committed,
                   round(corr(delivered_kw, true_delivered_kw), 3) AS correlation
            FROM scored GROUP BY ALL ORDER BY baseline_method
            """
        ).pl()
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM event_performance GROUP BY ALL").fetchall()
        )
    print(
        json.dumps(
            {
                "seed": args.seed,
                "interval_days": args.days,
                "statuses": statuses,
                "per_method": per_method.to_dicts(),
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
