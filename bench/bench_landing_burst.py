"""Benchmark: a burst of landing files through the real sensor and the real jobs (issue 13).

50 Leap-format interval CSV files over 365 market-local days land in the landing folder over
a few ticks: 3 are poison (a latin-1 byte after the first 64 KiB, a NUL byte, a cut UTF-8
character), 2 are still being uploaded (one chunk per tick through an open handle). Every
tick evaluates ``interval_landing_sensor`` as the daemon does and executes the runs it
requests in process (interval_files + interval_reads over the partitions they touch, with
their asset checks) against a Dagster instance on disk.

Checked at the end: every good row loaded exactly once (the growing files whole), the
poison files in ``failed/`` with their codes and byte offsets, ``interval_reads`` equal to
what was delivered, and how many runs it took. Prints one JSON object for BENCHMARKS.md.

    .venv/bin/python bench/bench_landing_burst.py --files 50 --days 365 --meters 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp_pipeline.definitions import build_definitions  # noqa: E402
from vpp_pipeline.resources import IntervalSourceResource, duckdb_resource  # noqa: E402
from vpp_pipeline.sandbox.landing_drops import write_burst  # noqa: E402

TZ = "America/Los_Angeles"


def peak_rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--poison", type=int, default=3)
    parser.add_argument("--growing", type=int, default=2)
    parser.add_argument("--growing-chunks", type=int, default=4, help="ticks an upload takes")
    parser.add_argument("--arrival-ticks", type=int, default=3, help="ticks the burst lands over")
    parser.add_argument("--tick-seconds", type=float, default=2.0, help="wall time between ticks")
    parser.add_argument("--max-ticks", type=int, default=40)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vpp_bench_burst_"))
    landing = work / "landing"
    db = work / "vpp.duckdb"
    meters = [
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"vpp-bench-meter-{i}")) for i in range(args.meters)
    ]
    last_day = date.today() - timedelta(days=2)
    result: dict = {
        "files": args.files,
        "days": args.days,
        "meters": args.meters,
        "poison": args.poison,
        "growing": args.growing,
        "cores": os.cpu_count(),
    }
    try:
        with duckdb.connect(str(db)) as conn:
            conn.execute("CREATE TABLE meters (meter_id VARCHAR)")
            conn.executemany("INSERT INTO meters VALUES (?)", [[m] for m in meters])
        source = IntervalSourceResource(landing_dir=str(landing), market_timezone=TZ)
        defs = build_definitions({"duckdb": duckdb_resource(db), "interval_source": source})
        sensor = defs.resolve_sensor_def("interval_landing_sensor")
        started = time.perf_counter()
        burst = write_burst(
            landing,
            meters,
            last_day,
            n_days=args.days,
            n_files=args.files,
            n_poison=args.poison,
            n_growing=args.growing,
            growing_chunks=args.growing_chunks,
            release_groups=args.arrival_ticks,
        )
        result["generate_seconds"] = round(time.perf_counter() - started, 2)
        result["rows_delivered_good"] = burst.expected_rows
        result["csv_bytes"] = sum(p.stat().st_size for p in landing.glob("*.csv"))
        result["peak_rss_mb_before_runs"] = peak_rss_mb()

        runs: list[dict] = []
        cursor = None
        first_file_at = time.perf_counter()
        ticks = 0
        (work / "dagster_home").mkdir()
        with dg.DagsterInstance.local_temp(str(work / "dagster_home")) as instance:
            while ticks < args.max_ticks:
                tick_started = time.perf_counter()
                ticks += 1
                burst.release()
                for upload in burst.growing:
                    upload.advance()
                context = dg.build_sensor_context(
                    instance=instance,
                    cursor=cursor,
                    definitions=defs,
                    resources={"interval_source": source},
                )
                data = sensor.evaluate_tick(context)
                cursor = data.cursor if data.cursor is not None else cursor
                for request in data.run_requests or []:
                    run_started = time.perf_counter()
                    outcome = defs.resolve_job_def(request.job_name).execute_in_process(
                        run_config=request.run_config,
                        tags=request.tags,
                        partition_key=request.partition_key,
                        instance=instance,
                        raise_on_error=False,
                    )
                    runs.append(
                        {
                            "tick": ticks,
                            "job": request.job_name,
                            "files": len(
                                request.run_config["ops"]["interval_files"]["config"]["files"]
                            ),
                            "partitions": (
                                f"{request.tags.get('dagster/asset_partition_range_start')}"
                                f"..{request.tags.get('dagster/asset_partition_range_end')}"
                                if request.partition_key is None
                                else request.partition_key
                            ),
                            "seconds": round(time.perf_counter() - run_started, 2),
                            "step_seconds": {
                                e.step_key: round(e.event_specific_data.duration_ms / 1000, 2)
                                for e in outcome.all_events
                                if e.event_type == dg.DagsterEventType.STEP_SUCCESS
                            },
                            "peak_rss_mb_after": peak_rss_mb(),
                            "success": outcome.success,
                        }
                    )
                pending = any(p.is_file() for p in landing.iterdir())
                if (
                    not pending
                    and not burst.pending
                    and all(u.written == len(u.chunks) for u in burst.growing)
                ):
                    break
                time.sleep(max(0.0, args.tick_seconds - (time.perf_counter() - tick_started)))
        result["ticks"] = ticks
        result["runs"] = runs
        result["seconds_first_file_to_loaded"] = round(time.perf_counter() - first_file_at, 2)

        with duckdb.connect(str(db), read_only=True) as conn:
            per_file = dict(
                conn.execute(
                    "SELECT source_file, count(*) FROM interval_deliveries GROUP BY 1"
                ).fetchall()
            )
            distinct = conn.execute(
                "SELECT count(*), count(DISTINCT (source_file, source_line)) FROM interval_deliveries"
            ).fetchall()[0]
            reads = conn.execute(
                "SELECT count(*), sum(kwh), count(DISTINCT local_date) FROM interval_reads"
            ).fetchall()[0]
            rejects = conn.execute(
                "SELECT source_file, code, message FROM interval_rejects ORDER BY 1"
            ).fetchall()
        expected = {f.name: f.rows for f in burst.good}
        result["rows_loaded"] = distinct[0]
        result["every_good_row_loaded_once"] = per_file == expected and distinct[0] == distinct[1]
        result["growing_files_loaded_whole"] = all(
            per_file.get(f.name) == f.rows for f in burst.files if f.kind == "growing"
        )
        result["interval_reads_rows"] = reads[0]
        result["interval_reads_match_delivered"] = (
            reads[0] == burst.expected_rows
            and abs(reads[1] - burst.expected_kwh) <= 1e-9 * burst.expected_kwh
            and reads[2] == len(burst.expected_days)
        )
        poison_ok = []
        for poison in burst.poison:
            errors = landing / "failed" / poison.name.removesuffix(".csv") / "errors.csv"
            text = errors.read_text() if errors.exists() else ""
            poison_ok.append(poison.code in text and f"byte offset {poison.offset:,}" in text)
        result["poison_in_failed_with_codes"] = all(poison_ok)
        result["rejects"] = [f"{name}: {code}" for name, code, _ in rejects]
        result["left_in_folder"] = sorted(p.name for p in landing.iterdir() if p.is_file())
        result["peak_rss_mb"] = peak_rss_mb()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
