"""Analysts and the pipeline never wait for each other (issue 12).

A stream of real Dagster runs (materialize `tariffs`, then `publish_analytics_job`, as the
publish sensor would) while an analyst process opens a DuckDB file read-only and queries it
`--opens` times. Two modes in the same run: the analyst opens the published copy (what the
project tells analysts to do) or, as the reference, the pipeline's own file (what they did
before). Then: one run + publish while an analyst holds a connection to the published copy,
against the same without the analyst (median of `--repeats`).

    flock /tmp/vpp-bench.lock .venv/bin/python bench/bench_analyst_access.py --opens 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402

from assets.bid import tariffs  # noqa: E402
from assets.publish import publish_analytics_job  # noqa: E402
from vpp_pipeline import settings  # noqa: E402
from vpp_pipeline.resources import duckdb_resource  # noqa: E402

ANALYST = """
import json, sys, time, duckdb
path, opens, deadline_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
failures, done, started, waits = [], 0, time.monotonic(), []
while done < opens and time.monotonic() - started < deadline_s:
    t = time.monotonic()
    try:
        with duckdb.connect(path, read_only=True) as conn:
            conn.execute("SELECT count(*), sum(energy_usd_per_kwh) FROM tariffs").fetchall()
    except Exception as exc:
        failures.append(type(exc).__name__)
    waits.append(time.monotonic() - t)
    done += 1
    time.sleep(0.01)
waits.sort()
print(json.dumps({"opens": done, "failures": len(failures), "kinds": sorted(set(failures)),
                  "p50_ms": 1000 * waits[len(waits) // 2], "p99_ms": 1000 * waits[int(len(waits) * 0.99) - 1],
                  "seconds": time.monotonic() - started}))
"""

HOLDER = """
import os, sys, time, duckdb
conn = duckdb.connect(sys.argv[1], read_only=True)
conn.execute("SELECT count(*) FROM tariffs").fetchall()
print("open", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
"""


def run_and_publish(resources, instance) -> float:
    started = time.monotonic()
    ok = dg.materialize([tariffs], resources=resources, instance=instance, raise_on_error=False)
    published = publish_analytics_job.execute_in_process(
        resources=resources, instance=instance, raise_on_error=False
    )
    if not (ok.success and published.success):
        raise RuntimeError("run or publish failed")
    return time.monotonic() - started


def stream(folder: Path, target: str, opens: int, instance) -> dict:
    resources = {"duckdb": duckdb_resource(folder / "vpp.duckdb")}
    run_and_publish(resources, instance)
    path = (
        folder / "vpp.duckdb"
        if target == "pipeline file"
        else settings.published_duckdb_path(folder / "vpp.duckdb")
    )
    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(path), str(opens), "300"],
        stdout=subprocess.PIPE,
        text=True,
    )
    runs = failed_runs = 0
    while analyst.poll() is None:
        try:
            run_and_publish(resources, instance)
            runs += 1
        except Exception:
            failed_runs += 1
    report = json.loads(analyst.communicate()[0])
    return {"target": target, "runs": runs, "failed_runs": failed_runs, **report}


def held(folder: Path, repeats: int, instance) -> dict:
    resources = {"duckdb": duckdb_resource(folder / "vpp.duckdb")}
    run_and_publish(resources, instance)
    alone = [run_and_publish(resources, instance) for _ in range(repeats)]
    stop = folder / "stop"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            str(settings.published_duckdb_path(folder / "vpp.duckdb")),
            str(stop),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "open"
    with_analyst = [run_and_publish(resources, instance) for _ in range(repeats)]
    stop.touch()
    holder.wait(timeout=30)
    return {
        "run_and_publish_s_alone": round(statistics.median(alone), 3),
        "run_and_publish_s_with_analyst_holding_the_copy": round(
            statistics.median(with_analyst), 3
        ),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--opens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}", flush=True)
    with dg.instance_for_test() as instance:
        for target in ("published copy", "pipeline file"):
            with tempfile.TemporaryDirectory() as folder:
                print(json.dumps(stream(Path(folder), target, args.opens, instance)), flush=True)
        with tempfile.TemporaryDirectory() as folder:
            print(json.dumps(held(Path(folder), args.repeats, instance)), flush=True)


if __name__ == "__main__":
    main()
