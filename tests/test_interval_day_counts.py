"""interval_day_counts: the readings per meter and local day that the ingest keeps with every
partition, and that the Analyze stage checks against interval_reads (and rebuilds) before its
completeness check reads them."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest
from test_interval_ingest import M1, M2, TZ, day_rows, write_csv
from test_performance_fixtures import LA, add_event, add_meter, add_reads, connect

from vpp_pipeline.intervals.ingest import ingest_landing_files, rebuild_interval_reads
from vpp_pipeline.measurement import models
from vpp_pipeline.measurement.config import MeasurementConfig


def counted(conn) -> list[tuple]:
    """interval_reads counted now, per meter and day."""
    return conn.execute(
        "SELECT meter_id, local_date, count(*) FROM interval_reads GROUP BY ALL ORDER BY ALL"
    ).fetchall()


def kept(conn) -> list[tuple]:
    return conn.execute("SELECT * FROM interval_day_counts ORDER BY ALL").fetchall()


@pytest.fixture
def conn(tmp_path):
    connection = duckdb.connect(str(tmp_path / "vpp.duckdb"))
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(
        f"CREATE TABLE meters AS SELECT * FROM (VALUES ('{M1}'), ('{M2}')) t(meter_id)"
    )
    yield connection
    connection.close()


def test_ingest_keeps_the_counts_of_every_partition_it_rebuilds(conn, tmp_path):
    landing = tmp_path / "landing"
    d1, d2 = date(2026, 6, 3), date(2026, 6, 4)
    base = time.time() - 3600
    # M1: d1 complete; d2 with its first 40 quarter hours only. M2: d2 complete.
    write_csv(landing / "a.csv", day_rows(M1, d1) + day_rows(M1, d2)[:40], mtime=base)
    write_csv(landing / "b.csv", day_rows(M2, d2), mtime=base)
    ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0)
    rebuild_interval_reads(conn, d1, d2)
    assert kept(conn) == counted(conn) == [(M1, d1, 96), (M1, d2, 40), (M2, d2, 96)]

    # A later delivery completes M1's d2: only that partition is rebuilt, and its count follows.
    write_csv(landing / "c.csv", day_rows(M1, d2, kwh=2.0)[40:], mtime=base + 60)
    ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0)
    rebuild_interval_reads(conn, d2, d2)
    assert kept(conn) == counted(conn) == [(M1, d1, 96), (M1, d2, 96), (M2, d2, 96)]

    # Rebuilding a partition again (same deliveries) changes nothing.
    rebuild_interval_reads(conn, d1, d2)
    assert kept(conn) == counted(conn)


def test_a_count_out_of_step_with_the_reads_is_rebuilt_before_analyze_reads_it(conn, tmp_path):
    landing = tmp_path / "landing"
    d1, d2 = date(2026, 6, 3), date(2026, 6, 4)
    write_csv(landing / "a.csv", day_rows(M1, d1) + day_rows(M1, d2), mtime=time.time() - 60)
    ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0)
    rebuild_interval_reads(conn, d1, d2)

    # Readings removed by hand, outside the ingest: the kept counts no longer add up.
    conn.execute(
        "DELETE FROM interval_reads WHERE local_date = $d AND kwh = 1.0 AND interval_start >= $t",
        {"d": d2, "t": datetime(2026, 6, 4, 19, tzinfo=UTC)},
    )
    assert kept(conn) != counted(conn)
    models.check_interval_day_counts(conn)
    assert kept(conn) == counted(conn)
    assert dict(((m, d), n) for m, d, n in kept(conn))[(M1, d2)] < 96

    # A table from before the counts existed: built from every reading on the first check.
    conn.execute("DROP TABLE interval_day_counts")
    models.check_interval_day_counts(conn)
    assert kept(conn) == counted(conn)


def test_a_baseline_day_emptied_by_hand_stops_being_eligible(tmp_path):
    """End to end through build_baselines: the first run builds the counts from reads written
    without the ingest; readings deleted afterwards make that day incomplete for the next run,
    so the baseline takes the next older weekday instead."""
    conn = connect(tmp_path / "vpp.duckdb")
    add_meter(conn, "m1")
    event_day = date(2024, 7, 17)  # a Wednesday
    add_reads(conn, "m1", event_day - timedelta(days=30), event_day, lambda t: 10.0 + t.hour)
    start = datetime(2024, 7, 17, 16, tzinfo=LA).astimezone(UTC)
    add_event(conn, "e1", "m1", start, start + timedelta(hours=2))
    config = MeasurementConfig()

    def eligible() -> list[date]:
        models.build_baselines(conn, config)
        return conn.execute(
            "SELECT DISTINCT eligible_days FROM baselines WHERE meter_event_id = 'e1'"
        ).fetchall()[0][0]

    # the 10 weekdays before the event, most recent first (4 July is a NERC holiday)
    days = [16, 15, 12, 11, 10, 9, 8, 5, 3, 2]
    assert eligible() == [date(2024, 7, d) for d in days]
    conn.execute(
        "DELETE FROM interval_reads WHERE local_date = DATE '2024-07-16' "
        "AND interval_start = (SELECT min(interval_start) FROM interval_reads "
        "WHERE local_date = DATE '2024-07-16')"
    )
    # 16 July is no longer complete: the next older weekday, 1 July, takes its place
    assert eligible() == [date(2024, 7, d) for d in [*days[1:], 1]]
    conn.close()
