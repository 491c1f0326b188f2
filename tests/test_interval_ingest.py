"""Interval CSV drops: validation with Leap's codes, archiving, corrections, DST days, the
readings per meter and day kept with every partition (interval_day_counts),
the landing sensor and the partitioned Dagster asset, over real files and DuckDB."""

from __future__ import annotations

import csv
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest

from assets import analyze_intervals
from vpp_pipeline.intervals.codes import CSV_COLUMNS, FILE_CODES, REJECT_CODES
from vpp_pipeline.intervals.ingest import ingest_landing_files, rebuild_interval_reads
from vpp_pipeline.measurement import models
from vpp_pipeline.resources import IntervalSourceResource, duckdb_resource

TZ = "America/Los_Angeles"
M1 = "11111111-1111-4111-8111-111111111111"
M2 = "22222222-2222-4222-8222-222222222222"
UNKNOWN = "99999999-9999-4999-8999-999999999999"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_rows(
    meter: str, day: date, kwh: float = 1.0, final: bool = True, region: str = "CA"
) -> list[list]:
    """Every 15-minute interval of a market-local day, as CSV cells."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(TZ)).astimezone(UTC)
    end = datetime.combine(
        day + timedelta(days=1), datetime.min.time(), tzinfo=ZoneInfo(TZ)
    ).astimezone(UTC)
    rows, t = [], start
    while t < end:
        rows.append(
            [meter, iso(t), iso(t + timedelta(minutes=15)), kwh, "", "", str(final).lower(), region]
        )
        t += timedelta(minutes=15)
    return rows


def write_csv(path: Path, rows: list[list], header=CSV_COLUMNS, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def conn(tmp_path):
    connection = duckdb.connect(str(tmp_path / "vpp.duckdb"))
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(
        f"CREATE TABLE meters AS SELECT * FROM (VALUES ('{M1}'), ('{M2}')) t(meter_id)"
    )
    yield connection
    connection.close()


@pytest.fixture
def landing(tmp_path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path


def rejects(conn) -> list[tuple]:
    return conn.execute(
        "SELECT source_file, source_line, code FROM interval_rejects ORDER BY source_line, code"
    ).fetchall()


def test_clean_file_is_loaded_and_archived_as_accepted(conn, landing):
    write_csv(
        landing / "clean.csv",
        day_rows(M1, date(2026, 6, 2)) + day_rows(M2, date(2026, 6, 2), kwh=2.5),
    )
    report = ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0)
    [outcome] = report.files
    assert (outcome.status, outcome.rows_accepted, outcome.rows_rejected) == ("accepted", 192, 0)
    assert outcome.local_dates == [date(2026, 6, 2)]
    assert (landing / "accepted" / "clean" / "clean.csv").exists()
    assert not (landing / "clean.csv").exists()
    assert not (landing / "accepted" / "clean" / "errors.csv").exists()
    assert rebuild_interval_reads(conn, date(2026, 6, 2), date(2026, 6, 2)) == 192
    totals = conn.execute(
        "SELECT meter_id, sum(kwh), bool_and(final), min(source) FROM interval_reads GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert totals == [(M1, 96.0, True, "csv"), (M2, 240.0, True, "csv")]
    ledger = conn.execute("SELECT file_name, status, rows_accepted FROM interval_files").fetchall()
    assert ledger == [("clean.csv", "accepted", 192)]


def test_mixed_file_keeps_good_rows_and_reports_every_code(conn, landing):
    t = datetime(2026, 6, 2, 17, 0, tzinfo=UTC)
    e = t + timedelta(minutes=15)
    future = datetime.now(UTC) + timedelta(days=2)
    future = future.replace(minute=0, second=0, microsecond=0)
    good = [M1, iso(t), iso(e), 1.25, "", "", "true", "CA"]
    bad_rows = {
        "LIN_0001": [M1, iso(t)],
        "LIN_0002": [M1, iso(t), iso(e), 1, "", "", "true", "CA", "extra"],
        "MTR_0001": ["", iso(t), iso(e), 1, "", "", "true", "CA"],
        "MTR_0002": ["meter-7", iso(t), iso(e), 1, "", "", "true", "CA"],
        "MTR_0003": [UNKNOWN, iso(t), iso(e), 1, "", "", "true", "CA"],
        "STM_0001": [M2, "", iso(e), 1, "", "", "true", "CA"],
        "STM_0002": [M2, "yesterday", iso(e), 1, "", "", "true", "CA"],
        "STM_0003": [
            M2,
            iso(t + timedelta(minutes=5)),
            iso(e + timedelta(minutes=5)),
            1,
            "",
            "",
            "true",
            "CA",
        ],
        "ETM_0001": [M2, iso(t + timedelta(hours=1)), "", 1, "", "", "true", "CA"],
        "ETM_0002": [M2, iso(t + timedelta(hours=1)), "soon", 1, "", "", "true", "CA"],
        "ETM_0003": [M2, iso(future), iso(future + timedelta(minutes=15)), 1, "", "", "true", "CA"],
        "DTR_0003": [
            M2,
            iso(t + timedelta(hours=2)),
            iso(t + timedelta(hours=2, minutes=30)),
            1,
            "",
            "",
            "true",
            "CA",
        ],
        "NET_0002": [
            M2,
            iso(t + timedelta(hours=3)),
            iso(t + timedelta(hours=3, minutes=15)),
            "1,5",
            "",
            "",
            "true",
            "CA",
        ],
        "CON_0002": [
            M2,
            iso(t + timedelta(hours=4)),
            iso(t + timedelta(hours=4, minutes=15)),
            "",
            "lots",
            "0",
            "true",
            "CA",
        ],
        "CON_0003": [
            M2,
            iso(t + timedelta(hours=5)),
            iso(t + timedelta(hours=5, minutes=15)),
            "",
            "-1",
            "0",
            "true",
            "CA",
        ],
        "GEN_0002": [
            M2,
            iso(t + timedelta(hours=6)),
            iso(t + timedelta(hours=6, minutes=15)),
            "",
            "1",
            "n/a",
            "true",
            "CA",
        ],
        "GEN_0003": [
            M2,
            iso(t + timedelta(hours=7)),
            iso(t + timedelta(hours=7, minutes=15)),
            "",
            "1",
            "-0.5",
            "true",
            "CA",
        ],
        "NRG_0001": [
            M2,
            iso(t + timedelta(hours=8)),
            iso(t + timedelta(hours=8, minutes=15)),
            "",
            "1",
            "",
            "true",
            "CA",
        ],
        "NRG_0003": [
            M2,
            iso(t + timedelta(hours=9)),
            iso(t + timedelta(hours=9, minutes=15)),
            "5",
            "1",
            "0.5",
            "true",
            "CA",
        ],
        "REG_0002": [
            M2,
            iso(t + timedelta(hours=10)),
            iso(t + timedelta(hours=10, minutes=15)),
            1,
            "",
            "",
            "true",
            "California",
        ],
        "REG_0003": [
            M2,
            iso(t + timedelta(hours=11)),
            iso(t + timedelta(hours=11, minutes=15)),
            1,
            "",
            "",
            "true",
            "ZZ",
        ],
        "FNL_0002": [
            M2,
            iso(t + timedelta(hours=12)),
            iso(t + timedelta(hours=12, minutes=15)),
            1,
            "",
            "",
            "maybe",
            "CA",
        ],
    }
    also_good = [
        M2,
        iso(t + timedelta(hours=13)),
        iso(t + timedelta(hours=13, minutes=15)),
        "",
        "2",
        "0.5",
        "false",
        "CA",
    ]
    duplicate_first = [
        M1,
        iso(t + timedelta(hours=1)),
        iso(e + timedelta(hours=1)),
        9.0,
        "",
        "",
        "true",
        "CA",
    ]
    duplicate_last = [
        M1,
        iso(t + timedelta(hours=1)),
        iso(e + timedelta(hours=1)),
        3.0,
        "",
        "",
        "true",
        "CA",
    ]
    rows = [good, *bad_rows.values(), duplicate_first, also_good, duplicate_last]
    write_csv(landing / "mixed.csv", rows)

    [outcome] = ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0).files
    assert outcome.status == "failed"
    assert outcome.rows_accepted == 3  # good, also_good, duplicate_last
    assert outcome.rows_rejected == len(bad_rows) + 1
    found = rejects(conn)
    # Line numbers count the header as line 1, as in Leap's error files.
    for line, code in enumerate(bad_rows, start=3):
        assert ("mixed.csv", line, code) in found, code
    dup_line = 3 + len(bad_rows)
    assert ("mixed.csv", dup_line, "DUP_0001") in found
    # Every Leap code of the digest and every project row code is exercised here.
    row_codes = set(REJECT_CODES) - FILE_CODES
    assert row_codes <= {code for _, _, code in found}
    # The good rows are kept, with the energy sets resolved to net kWh.
    rebuild_interval_reads(conn, date(2026, 6, 2), date(2026, 6, 2))
    kept = conn.execute(
        "SELECT meter_id, kwh, consumed_kwh, generated_kwh, final FROM interval_reads ORDER BY interval_start"
    ).fetchall()
    assert kept == [
        (M1, 1.25, None, None, True),
        (M1, 3.0, None, None, True),
        (M2, 1.5, 2.0, 0.5, False),
    ]
    # errors.csv beside the archived file, one line per problem.
    errors_csv = landing / "failed" / "mixed" / "errors.csv"
    with errors_csv.open() as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == len(found)
    assert {"line", "column", "code", "message"} == set(lines[0])
    assert any(r["code"] == "MTR_0003" and UNKNOWN in r["message"] for r in lines)


def test_file_that_is_not_csv_is_rejected_as_a_whole(conn, landing):
    (landing / "report.xlsx").write_bytes(b"PK\x03\x04\x14\x00\x06\x00binary-spreadsheet\x00\x00")
    (landing / "notes.csv").write_text("Dear team,\nplease find the data attached.\n")
    report = ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0)
    statuses = {f.file_name: (f.status, f.problem) for f in report.files}
    assert statuses["report.xlsx"][0] == "failed" and "binary" in statuses["report.xlsx"][1]
    assert statuses["notes.csv"][0] == "failed" and "not a CSV file" in statuses["notes.csv"][1]
    assert (landing / "failed" / "report" / "report.xlsx").exists()
    codes = conn.execute(
        "SELECT source_file, source_line, code FROM interval_rejects ORDER BY 1"
    ).fetchall()
    assert codes == [("notes.csv", None, "FIL_0001"), ("report.xlsx", None, "FIL_0001")]
    assert conn.execute("SELECT count(*) FROM interval_deliveries").fetchall()[0][0] == 0
    assert "FIL_0001" in (landing / "failed" / "notes" / "errors.csv").read_text()


def test_redelivered_corrections_follow_final_and_newer_rules(conn, landing):
    day = date(2026, 6, 3)
    base = time.time() - 3600
    write_csv(landing / "meter.csv", day_rows(M1, day, kwh=1.0, final=False), mtime=base)
    ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0)
    rebuild_interval_reads(conn, day, day)
    assert conn.execute("SELECT sum(kwh), bool_or(final) FROM interval_reads").fetchall() == [
        (96.0, False)
    ]

    # A newer non-final correction (same file name) replaces the older non-final one.
    write_csv(landing / "meter.csv", day_rows(M1, day, kwh=1.5, final=False), mtime=base + 60)
    ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0)
    rebuild_interval_reads(conn, day, day)
    assert conn.execute("SELECT sum(kwh) FROM interval_reads").fetchall() == [(144.0,)]

    # A final read replaces it.
    write_csv(landing / "meter_final.csv", day_rows(M1, day, kwh=2.0, final=True), mtime=base + 120)
    ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0)
    rebuild_interval_reads(conn, day, day)
    assert conn.execute("SELECT sum(kwh), bool_and(final) FROM interval_reads").fetchall() == [
        (192.0, True)
    ]

    # A later non-final delivery never overwrites the final read.
    write_csv(
        landing / "late_estimate.csv", day_rows(M1, day, kwh=9.0, final=False), mtime=base + 180
    )
    ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0)
    rebuild_interval_reads(conn, day, day)
    assert conn.execute("SELECT sum(kwh), bool_and(final) FROM interval_reads").fetchall() == [
        (192.0, True)
    ]
    # ... and nothing was lost: every delivery is kept.
    assert conn.execute("SELECT count(*) FROM interval_deliveries").fetchall()[0][0] == 4 * 96
    # Both deliveries named meter.csv were archived, in separate folders.
    assert len(list((landing / "accepted").glob("meter*/meter.csv"))) == 2

    # Re-running the partition gives the same table.
    before = conn.execute("SELECT * FROM interval_reads ORDER BY ALL").fetchall()
    rebuild_interval_reads(conn, day, day)
    assert conn.execute("SELECT * FROM interval_reads ORDER BY ALL").fetchall() == before


def test_same_file_twice_is_not_loaded_twice(conn, landing):
    rows = day_rows(M1, date(2026, 6, 4))
    write_csv(landing / "a.csv", rows, mtime=time.time() - 100)
    ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0)
    write_csv(landing / "a.csv", rows, mtime=time.time() - 50)
    [outcome] = ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0).files
    assert outcome.status == "already_loaded"
    assert conn.execute("SELECT count(*) FROM interval_deliveries").fetchall()[0][0] == 96


@pytest.mark.parametrize(
    ("day", "expected"), [(date(2026, 3, 8), 92), (date(2026, 11, 1), 100), (date(2026, 6, 5), 96)]
)
def test_dst_days_have_92_or_100_intervals(conn, landing, day, expected):
    write_csv(landing / f"{day}.csv", day_rows(M1, day))
    [outcome] = ingest_landing_files(conn, landing, market_tz=TZ, quiet_seconds=0).files
    assert outcome.rows_accepted == expected and outcome.local_dates == [day]
    assert rebuild_interval_reads(conn, day, day) == expected
    # Fall-back: the repeated 01:xx local hour is two distinct UTC intervals, both kept.
    distinct = conn.execute("SELECT count(DISTINCT interval_start) FROM interval_reads").fetchall()[
        0
    ][0]
    assert distinct == expected


# --- interval_day_counts: kept with every partition, checked before Analyze reads it -------


def counted(conn) -> list[tuple]:
    """interval_reads counted now, per meter and day."""
    return conn.execute(
        "SELECT meter_id, local_date, count(*) FROM interval_reads GROUP BY ALL ORDER BY ALL"
    ).fetchall()


def kept(conn) -> list[tuple]:
    return conn.execute("SELECT * FROM interval_day_counts ORDER BY ALL").fetchall()


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


# --- Dagster: sensor, partitioned asset and checks ------------------------------------------


def resources_for(tmp_path, landing) -> dict:
    db = tmp_path / "vpp.duckdb"
    with duckdb.connect(str(db)) as c:
        c.execute(
            f"CREATE TABLE IF NOT EXISTS meters AS SELECT * FROM (VALUES ('{M1}'), ('{M2}')) t(meter_id)"
        )
    return {
        "duckdb": duckdb_resource(db),
        "interval_source": IntervalSourceResource(
            landing_dir=str(landing), market_timezone=TZ, quiet_seconds=0
        ),
    }


def test_sensor_requests_exactly_the_partitions_a_new_file_touches(tmp_path, landing, instance):
    resources = resources_for(tmp_path, landing)
    cursor = None

    def tick():
        nonlocal cursor
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={"interval_source": resources["interval_source"]},
        )
        result = analyze_intervals.interval_landing_sensor(context)
        cursor = context.cursor
        return result

    # One file spanning two local days (late evening of June 2 to early June 3, local time).
    rows = day_rows(M1, date(2026, 6, 2))[-8:] + day_rows(M1, date(2026, 6, 3))[:4]
    span = write_csv(landing / "span.csv", rows)
    first = tick()  # new: complete once unchanged at the next tick
    assert isinstance(first, dg.SkipReason) and "not complete yet" in first.skip_message
    [request] = tick()
    assert request.job_name == "interval_reads_job"
    assert request.tags["dagster/asset_partition_range_start"] == "2026-06-02"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-06-03"
    assert request.run_config["ops"]["interval_reads"] == {"config": {"fetch_api": False}}
    key = f"span.csv:{span.stat().st_size}:{span.stat().st_mtime_ns}"
    assert request.run_config["ops"]["interval_files"] == {"config": {"files": [key]}}

    # Same file, next tick: nothing new.
    skip = tick()
    assert isinstance(skip, dg.SkipReason) and "no new files" in skip.skip_message

    # A second file on another day, and one that is not CSV at all: one run for both.
    write_csv(landing / "next.csv", day_rows(M2, date(2026, 6, 10))[:3])
    (landing / "junk.bin").write_bytes(b"\x00\x01\x02")
    assert isinstance(tick(), dg.SkipReason)
    [request] = tick()
    assert (request.job_name, request.partition_key) == ("interval_reads_job", "2026-06-10")
    files = request.run_config["ops"]["interval_files"]["config"]["files"]
    assert sorted(f.split(":")[0] for f in files) == ["junk.bin", "next.csv"]


def test_partition_run_loads_landed_files_and_checks_pass(tmp_path, landing, instance):
    resources = resources_for(tmp_path, landing)
    write_csv(
        landing / "d1.csv", day_rows(M1, date(2026, 3, 8)) + day_rows(M2, date(2026, 3, 8), kwh=0.5)
    )
    defs = dg.Definitions(
        assets=[analyze_intervals.interval_files, analyze_intervals.interval_reads],
        asset_checks=dg.load_asset_checks_from_modules([analyze_intervals]),
        jobs=[analyze_intervals.interval_reads_job],
        resources={**resources, "leap": object()},
    )
    job = defs.resolve_job_def("interval_reads_job")
    result = job.execute_in_process(
        partition_key="2026-03-08",
        run_config=analyze_intervals.CSV_ONLY_RUN_CONFIG,
        instance=instance,
    )
    assert result.success
    evaluations = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {
        "interval_reads_no_duplicates": True,
        "interval_reads_complete_days": True,
        "interval_reads_no_gaps": True,
        "interval_reads_no_negative_consumption": True,
    }
    [materialization] = result.asset_materializations_for_node("interval_reads")
    assert materialization.partition == "2026-03-08"
    assert materialization.metadata["rows"].value == 2 * 92

    # A gap and an incomplete day are caught by the checks of the next partition.
    rows = day_rows(M1, date(2026, 3, 9))
    del rows[10:12]
    write_csv(landing / "d2.csv", rows)
    result = job.execute_in_process(
        partition_key="2026-03-09",
        run_config=analyze_intervals.CSV_ONLY_RUN_CONFIG,
        instance=instance,
    )
    evaluations = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["interval_reads_no_gaps"].passed
    assert evaluations["interval_reads_no_gaps"].metadata["violations"].value == 1
    assert not evaluations["interval_reads_complete_days"].passed
    assert evaluations["interval_reads_no_duplicates"].passed


def test_daily_schedule_materializes_yesterdays_partition_in_market_time(
    tmp_path, landing, instance
):
    from vpp_pipeline.definitions import build_definitions

    defs = build_definitions(resources_for(tmp_path, landing))
    schedule = defs.resolve_schedule_def("interval_reads_daily")
    assert schedule.execution_timezone == TZ
    # 06:00 on 2026-11-02 in Los Angeles (the day after the fall-back day) asks for Nov 1.
    tick = datetime(2026, 11, 2, 6, 0, tzinfo=ZoneInfo(TZ))
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-01"
    assert request.job_name == "interval_reads_job"
