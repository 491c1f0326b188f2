"""Benchmark: one refresh of ``dispatch_events`` merged into a year of stored history.

    .venv/bin/python bench/bench_event_history.py --meters 2000 --days 365 --lookback 120

Runs the real models (sql/dispatch_reads.sql, then sql/dispatch_events.sql, through
``vpp_pipeline.measurement.event_history.merge_dispatch_reads``) on a DuckDB file:

1. first run: a backfill read of every event of ``--days`` into no table (the history);
2. a refresh that re-reads the last ``--lookback`` days (plus 7 ahead) unchanged (idempotent:
   no new versions), and one where 1 % of the re-read events are cancelled;
3. reference, measured in the same run: the read model alone (``dispatch_reads``, what the
   old sliding-window table cost: it was that read, written as the table).

Events are generated as search frames (meter-level timeslots, ~2 per meter and month, 1-4 h);
the search itself (HTTP) is not timed. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vpp_pipeline.measurement import event_history  # noqa: E402
from vpp_pipeline.measurement.config import MeasurementConfig  # noqa: E402
from vpp_pipeline.measurement.dispatch_frames import DISPATCH_EVENT_COLUMNS  # noqa: E402
from vpp_pipeline.warehouse import run_models  # noqa: E402

EVENTS_SQL = """
CREATE OR REPLACE TEMP TABLE all_slots AS
SELECT
    'e-' || m || '-' || k AS meter_event_id,
    'meter-' || m AS meter_id,
    ['CCA'] AS programs,
    start_time,
    start_time + to_hours(1 + CAST(hash(m, k, 2) % 4 AS INTEGER)) AS end_time,
    round(50 + hash(m, k, 3) % 500, 2) AS energy_kw,
    round(60 + hash(m, k, 4) % 600, 2) AS nomination_kw,
    CAST(1 AS INTEGER) AS priority,
    false AS is_voluntary,
    'up-to-nomination' AS performance_compensation_cap,
    ['day-ahead'] AS dispatch_event_types,
    hash(m, k, 5) % 50 = 0 AS cancelled,
    false AS is_test,
    CAST(NULL AS INTEGER) AS revision,
    $fetched AS updated_at
FROM (
    SELECT m, k,
        $first + to_days(CAST(hash(m, k) % $days AS INTEGER))
            + to_hours(22 + CAST(hash(m, k, 1) % 4 AS INTEGER)) AS start_time
    FROM range($meters) t(m), range($per_meter) u(k)
)
"""


def stage_read(conn, start: datetime, end: datetime, cancel_share: float, fetched: datetime):
    """Search frames of the events starting in [start, end); ``cancel_share`` of them newly
    cancelled (a later revision)."""
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE stg_meter_dispatch_slots AS
        SELECT * REPLACE (
            cancelled OR hash(meter_event_id, 'cancel') % 10000 < {int(cancel_share * 10000)}
                AS cancelled,
            $fetched AS updated_at)
        FROM all_slots WHERE start_time >= $s AND start_time < $e
        """,
        {"s": start, "e": end, "fetched": fetched},
    )
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE stg_group_dispatch_slots AS SELECT * EXCLUDE "
        "(meter_event_id, meter_id), '' AS market_group_event_id, '' AS market_group_id, "
        "CAST([] AS VARCHAR[]) AS meter_ids FROM all_slots LIMIT 0"
    )
    conn.execute(f"CREATE OR REPLACE TEMP TABLE stg_ops_dispatch_events ({DISPATCH_EVENT_COLUMNS})")


def timed(fn) -> tuple[float, object]:
    began = time.perf_counter()
    out = fn()
    return time.perf_counter() - began, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--lookback", type=int, default=120)
    args = parser.parse_args()

    now = datetime.now(UTC).replace(microsecond=0)
    first = now.replace(hour=0, minute=0, second=0) - timedelta(days=args.days)
    per_meter = max(1, round(args.days / 15))  # ~2 events per meter and month
    config = MeasurementConfig(
        dispatch_lookback_days=args.lookback, dispatch_backfill_days=args.days + 1
    )
    result: dict = {
        "meters": args.meters,
        "days": args.days,
        "lookback_days": args.lookback,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
    }
    with tempfile.TemporaryDirectory() as folder:
        conn = duckdb.connect(str(Path(folder) / "bench.duckdb"))
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(
            "CREATE TABLE nominations (meter_id VARCHAR, program_identifier VARCHAR, "
            "start_time TIMESTAMPTZ, end_time TIMESTAMPTZ, nomination_kw DOUBLE)"
        )
        conn.execute(
            EVENTS_SQL,
            {
                "meters": args.meters,
                "per_meter": per_meter,
                "days": args.days,
                "first": first,
                "fetched": now,
            },
        )

        # 1. first run: backfill into no table
        window = event_history.read_window(config, now - timedelta(hours=2), backfill=True)
        stage_read(conn, window.start, window.end, 0.0, now - timedelta(hours=2))
        seconds, counts = timed(
            lambda: event_history.merge_dispatch_reads(conn, window, now - timedelta(hours=2))
        )
        result["backfill"] = {"seconds": round(seconds, 3), **counts}

        # 2a. refresh, nothing changed
        window = event_history.read_window(config, now - timedelta(hours=1), backfill=False)
        stage_read(conn, window.start, window.end, 0.0, now - timedelta(hours=1))
        seconds, counts = timed(
            lambda: event_history.merge_dispatch_reads(conn, window, now - timedelta(hours=1))
        )
        result["refresh_unchanged"] = {"seconds": round(seconds, 3), **counts}

        # 3. reference: the read model alone on the same staged read
        seconds, _ = timed(
            lambda: run_models(conn, "dispatch_reads", now=now, search_read_via="search")
        )
        result["reference_read_model_only_seconds"] = round(seconds, 3)

        # 2b. refresh, 1 % of the re-read events cancelled
        window = event_history.read_window(config, now, backfill=False)
        stage_read(conn, window.start, window.end, 0.01, now)
        seconds, counts = timed(lambda: event_history.merge_dispatch_reads(conn, window, now))
        result["refresh_1pct_cancelled"] = {"seconds": round(seconds, 3), **counts}
        conn.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
