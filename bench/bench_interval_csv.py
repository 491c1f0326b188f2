"""Benchmark: load N meters x D days of Leap-format interval CSV drops (issue 3).

Writes the sandbox's synthetic data as one CSV file per UTC day, then, in the same run:

1. reference: DuckDB's own bare ``read_csv`` of the same files (count and sum; no checks);
2. ``ingest_landing_files``: each file read once and checked on its own (sha256, NUL,
   UTF-8; also timed alone), every row validated with Leap's codes, good rows into
   ``interval_deliveries``, files archived with their ledger rows;
3. ``rebuild_interval_reads`` for every local day (the partition rebuild, as one range).

Prints one JSON object (rows/s of each step, ratios, peak memory) for BENCHMARKS.md.

    .venv/bin/python bench/bench_interval_csv.py --meters 1000 --days 365
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
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp_pipeline.intervals.ingest import ingest_landing_files, rebuild_interval_reads  # noqa: E402
from vpp_pipeline.intervals.landing import read_landed_file, text_problem  # noqa: E402
from vpp_pipeline.sandbox import build_portfolio  # noqa: E402
from vpp_pipeline.sandbox.intervals import write_interval_csvs_for_bench  # noqa: E402

TZ = "America/Los_Angeles"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vpp_bench_csv_"))
    csv_dir, landing = work / "csv", work / "landing"
    csv_dir.mkdir(parents=True, exist_ok=True)
    landing.mkdir(parents=True, exist_ok=True)
    result: dict = {"meters": args.meters, "days": args.days, "cores": os.cpu_count()}
    try:
        started = time.perf_counter()
        written = write_interval_csvs_for_bench(args.meters, args.days, csv_dir)
        result["generate_seconds"] = round(time.perf_counter() - started, 2)
        result["rows"] = written["rows"]
        result["csv_bytes"] = written["bytes"]
        result["files"] = written["files"]

        db_path = work / "bench.duckdb"
        conn = duckdb.connect(str(db_path))
        conn.execute("SET TimeZone = 'UTC'")
        portfolio = build_portfolio(seed=7, n_meters=args.meters, history_days=args.days)
        conn.execute("CREATE TABLE meters (meter_id VARCHAR)")
        conn.executemany("INSERT INTO meters VALUES (?)", [[m] for m in portfolio.meters])

        # (1) The reference: DuckDB reading the same files with no validation at all.
        started = time.perf_counter()
        count, total = conn.execute(
            f"SELECT count(*), sum(energy_net_kwh) FROM read_csv('{csv_dir}/*.csv', header = true)"
        ).fetchall()[0]
        read_seconds = time.perf_counter() - started
        result["duckdb_read_csv_seconds"] = round(read_seconds, 2)
        result["duckdb_read_csv_rows_per_s"] = round(count / read_seconds)

        # (2) The pipeline's ingestion (hard links: the landing copy costs no disk). Files
        # are complete (quiet_seconds=0): the bench measures loading, not waiting.
        for path in csv_dir.glob("*.csv"):
            os.link(path, landing / path.name)
        # Of which: reading each file once and checking it on its own (sha256, NUL, UTF-8),
        # measured alone on the same files.
        started = time.perf_counter()
        for path in sorted(landing.glob("*.csv")):
            landed = read_landed_file(landing, path.name)
            assert text_problem(landed.data) is None
        result["per_file_read_and_check_seconds"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        report = ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0)
        ingest_seconds = time.perf_counter() - started
        result["ingest_seconds"] = round(ingest_seconds, 2)
        result["ingest_rows_per_s"] = round(report.rows_accepted / ingest_seconds)
        result["rows_accepted"] = report.rows_accepted
        result["rows_rejected"] = report.rows_rejected
        result["ingest_vs_read_csv"] = round(ingest_seconds / read_seconds, 2)

        # (3) The partition rebuild over every local day, as one range.
        days = conn.execute(
            "SELECT min(local_date), max(local_date) FROM interval_deliveries"
        ).fetchall()[0]
        started = time.perf_counter()
        rows = rebuild_interval_reads(conn, days[0], days[1])
        rebuild_seconds = time.perf_counter() - started
        result["rebuild_seconds"] = round(rebuild_seconds, 2)
        result["rebuild_rows_per_s"] = round(rows / rebuild_seconds)
        result["interval_reads_rows"] = rows
        check_total = conn.execute("SELECT sum(kwh) FROM interval_reads").fetchall()[0][0]
        result["sum_kwh_matches_read_csv"] = abs(check_total - total) < 1e-6 * abs(total)
        result["end_to_end_rows_per_s"] = round(rows / (ingest_seconds + rebuild_seconds))
        result["end_to_end_vs_read_csv"] = round(
            (ingest_seconds + rebuild_seconds) / read_seconds, 2
        )
        result["peak_rss_mb"] = round(peak_rss_mb())
        result["duckdb_file_mb"] = round(db_path.stat().st_size / 1e6)
        conn.close()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
