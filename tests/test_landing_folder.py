"""The landing folder as partners use it (issue 13), through the real landing sensor and the
real interval jobs: poison files, files still being written, names that look like glob
patterns, links out of the folder, a year in one file, bursts."""

from __future__ import annotations

import csv
import io
import os
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tests.test_interval_ingest import M1, M2, TZ, day_rows, write_csv
from vpp_pipeline.definitions import build_definitions
from vpp_pipeline.intervals.codes import CSV_COLUMNS
from vpp_pipeline.intervals.ingest import complete_entries
from vpp_pipeline.resources import IntervalSourceResource, duckdb_resource
from vpp_pipeline.sandbox.landing_drops import write_burst

D1, D2, D3 = date(2026, 6, 2), date(2026, 6, 9), date(2026, 7, 14)
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


class Landing:
    """One landing folder and DuckDB file behind the project's definitions.

    ``tick()`` evaluates ``interval_landing_sensor`` keeping its cursor between ticks, as the
    daemon does; ``run()`` executes a run request in process: its job, run config and tags
    (a partition or a partition range), like the run the daemon would launch.
    """

    def __init__(self, tmp_path: Path, instance, **source_options) -> None:
        self.dir = tmp_path / "landing"
        self.dir.mkdir(exist_ok=True)
        self.db = tmp_path / "vpp.duckdb"
        with duckdb.connect(str(self.db)) as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS meters AS "
                f"SELECT * FROM (VALUES ('{M1}'), ('{M2}')) t(meter_id)"
            )
        self.instance = instance
        self.source = IntervalSourceResource(
            landing_dir=str(self.dir), market_timezone=TZ, **source_options
        )
        self.defs = build_definitions(
            {"duckdb": duckdb_resource(self.db), "interval_source": self.source}
        )
        self.cursor: str | None = None
        self.results: list[dg.ExecuteInProcessResult] = []

    def tick(self) -> tuple[list[dg.RunRequest], str | None]:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            definitions=self.defs,
            sensor_name="interval_landing_sensor",
            resources={"interval_source": self.source},
        )
        data = self.defs.resolve_sensor_def("interval_landing_sensor").evaluate_tick(context)
        self.cursor = data.cursor if data.cursor is not None else self.cursor
        return list(data.run_requests or []), data.skip_message

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def(request.job_name)
        result = job.execute_in_process(
            run_config=request.run_config,
            tags=request.tags,
            partition_key=request.partition_key,
            instance=self.instance,
            raise_on_error=False,
        )
        self.results.append(result)
        return result

    def tick_and_run(self, ticks: int = 2) -> list[dg.RunRequest]:
        """``ticks`` sensor ticks, running whatever each requests; returns the requests."""
        requests = []
        for _ in range(ticks):
            new, _ = self.tick()
            for request in new:
                assert self.run(request).success
            requests += new
        return requests

    def query(self, sql: str, params: dict | None = None) -> list[tuple]:
        with duckdb.connect(str(self.db), read_only=True) as conn:
            return conn.execute(sql, params or {}).fetchall()


@pytest.fixture
def memory_instance():
    """A real Dagster instance with in-memory storage: a 320-partition run writes ~1,000
    events, which the on-disk SQLite event log of a test instance makes 4x slower."""
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def landing(tmp_path, memory_instance) -> Landing:
    return Landing(tmp_path, memory_instance)


def csv_bytes(rows: list[list]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue().encode()


# --- 1. one poison file must not stop the drop ------------------------------------------------


def test_a_file_with_a_latin1_byte_after_64_kib_is_rejected_whole_and_the_rest_load(landing):
    write_csv(landing.dir / "good.csv", day_rows(M1, D1))
    clean = csv_bytes([r for d in range(8) for r in day_rows(M2, D2 + timedelta(days=d))])
    assert len(clean) > 70_000
    poison_line = f"{M2},2026-06-01T07:00:00Z,2026-06-01T07:15:00Z,1.0,,,true,".encode()
    offset = len(clean) + len(poison_line) + len(b"Caf")
    (landing.dir / "poison.csv").write_bytes(clean + poison_line + b"Caf\xe9\n")

    requests = landing.tick_and_run()
    assert len(requests) == 1 and len(landing.results) == 1
    assert landing.results[0].success

    assert (landing.dir / "accepted" / "good" / "good.csv").exists()
    assert (landing.dir / "failed" / "poison" / "poison.csv").exists()
    assert not (landing.dir / "poison.csv").exists()
    [(code, message)] = landing.query(
        "SELECT code, message FROM interval_rejects WHERE source_file = 'poison.csv'"
    )
    assert code == "ENC_0001"
    assert f"byte offset {offset:,}" in message and "0xE9" in message
    errors = (landing.dir / "failed" / "poison" / "errors.csv").read_text()
    assert "ENC_0001" in errors and f"{offset:,}" in errors
    # Rejected whole: none of its 768 good-looking rows is loaded; the other file is.
    assert landing.query("SELECT source_file, count(*) FROM interval_deliveries GROUP BY 1") == [
        ("good.csv", 96)
    ]
    assert landing.query(
        "SELECT count(*) FROM interval_reads WHERE local_date = $d", {"d": D1}
    ) == [(96,)]
    [(status, problem)] = landing.query(
        "SELECT status, problem FROM interval_files WHERE file_name = 'poison.csv'"
    )
    assert status == "failed" and problem.startswith("ENC_0001")

    # The next drop loads: nothing was left behind to fail every later run.
    write_csv(landing.dir / "later.csv", day_rows(M1, D3))
    assert len(landing.tick_and_run()) == 1
    assert landing.query(
        "SELECT count(*) FROM interval_reads WHERE local_date = $d", {"d": D3}
    ) == [(96,)]


def test_nul_bytes_and_broken_utf8_are_rejected_whole_with_their_offsets(landing):
    body = csv_bytes(day_rows(M1, D1))
    (landing.dir / "nul.csv").write_bytes(body + b"x\x00y\n")
    (landing.dir / "cut.csv").write_bytes(body + "€".encode()[:2] + b"\n")
    (landing.dir / "bom.csv").write_bytes(
        b"\xef\xbb\xbf" + csv_bytes(day_rows(M2, D1)).replace(b"\n", b"\r\n")
    )
    landing.tick_and_run()
    codes = dict(
        landing.query("SELECT source_file, code || ' ' || message FROM interval_rejects ORDER BY 1")
    )
    assert (
        codes["nul.csv"].startswith("FIL_0001") and f"offset {len(body) + 1:,}" in codes["nul.csv"]
    )
    assert codes["cut.csv"].startswith("ENC_0001") and f"offset {len(body):,}" in codes["cut.csv"]
    assert "bom.csv" not in codes  # a BOM and CRLF are UTF-8 CSV: loaded
    assert landing.query("SELECT source_file, count(*) FROM interval_deliveries GROUP BY 1") == [
        ("bom.csv", 96)
    ]


def test_a_batch_duckdb_still_refuses_is_split_so_only_the_bad_file_fails(
    tmp_path, landing, monkeypatch
):
    """Defence in depth: should the per-file check ever pass bytes DuckDB refuses (here the
    check is switched off), the batch is retried file by file and only that file fails."""
    monkeypatch.setattr("vpp_pipeline.intervals.ingest.text_problem", lambda data: None)
    write_csv(landing.dir / "a.csv", day_rows(M1, D1))
    (landing.dir / "latin1.csv").write_bytes(csv_bytes(day_rows(M2, D1)) + b"x,Caf\xe9\n")
    write_csv(landing.dir / "b.csv", day_rows(M2, D2))
    landing.tick_and_run()
    assert landing.query(
        "SELECT file_name, status, left(problem, 8) FROM interval_files ORDER BY 1"
    ) == [
        ("a.csv", "accepted", None),
        ("b.csv", "accepted", None),
        ("latin1.csv", "failed", "FIL_0004"),
    ]
    assert landing.query("SELECT count(*) FROM interval_deliveries") == [(192,)]


# --- 2. a file still being written is waited for -----------------------------------------------


def test_a_growing_file_is_loaded_once_complete_and_only_then(landing):
    rows = (
        day_rows(M1, D1)
        + day_rows(M1, D1 + timedelta(days=1))
        + day_rows(M1, D1 + timedelta(days=2))
    )
    assert len(rows) == 288
    lines = csv_bytes(rows).splitlines(keepends=True)
    path = landing.dir / "meter_reads.csv"
    with path.open("wb") as upload:  # an SFTP server keeps its handle open while writing
        upload.writelines(lines[:100])  # header + 99 rows
        upload.flush()
        for request in landing.tick()[0]:
            landing.run(request)
        upload.writelines(lines[100:200])
        upload.flush()
        for request in landing.tick()[0]:
            landing.run(request)
        upload.writelines(lines[200:])
    requests = landing.tick_and_run(ticks=3)

    # Every row, exactly once, by one run after the upload finished.
    assert landing.query(
        "SELECT count(*), count(DISTINCT interval_start) FROM interval_deliveries"
    ) == [(288, 288)]
    assert len(requests) == 1 and len(landing.results) == 1
    assert landing.query("SELECT count(*) FROM interval_reads") == [(288,)]
    assert (landing.dir / "accepted" / "meter_reads" / "meter_reads.csv").stat().st_size == sum(
        len(line) for line in lines
    )
    assert landing.query("SELECT status, rows_accepted FROM interval_files") == [("accepted", 288)]


def test_temporary_names_are_invisible_and_a_done_marker_completes_a_file_at_once(landing):
    write_csv(landing.dir / "upload.csv.part", day_rows(M1, D1))
    write_csv(landing.dir / ".upload2.csv.x1y2", day_rows(M1, D2))
    requests, skip = landing.tick()
    assert not requests and "no new files" in skip
    assert landing.tick() == ([], skip)

    (landing.dir / "upload.csv.part").rename(landing.dir / "upload.csv")
    (landing.dir / "upload.csv.done").touch()
    [request] = landing.tick()[0]  # the marker: no second tick needed
    assert request.partition_key == D1.isoformat()
    assert landing.run(request).success
    assert (landing.dir / "accepted" / "upload" / "upload.csv.done").exists()
    assert landing.query("SELECT count(*) FROM interval_deliveries") == [(96,)]


def test_with_markers_required_a_quiet_unmarked_file_waits_and_holds_nothing(
    tmp_path, memory_instance
):
    landing = Landing(tmp_path, memory_instance, require_done_marker=True)
    write_csv(landing.dir / "unmarked.csv", day_rows(M1, D1))
    assert landing.tick()[0] == []
    requests, skip = landing.tick()
    assert requests == [] and "no unmarked.csv.done marker yet" in skip
    write_csv(landing.dir / "marked.csv", day_rows(M1, D2))
    (landing.dir / "marked.csv.done").touch()
    [request] = landing.tick()[0]
    assert request.partition_key == D2.isoformat()
    assert landing.run(request).success
    assert (landing.dir / "unmarked.csv").exists()
    assert landing.query("SELECT DISTINCT source_file FROM interval_deliveries") == [
        ("marked.csv",)
    ]


def test_runs_not_started_by_the_sensor_load_only_quiet_or_marked_files(tmp_path):
    folder = tmp_path / "landing"
    old = write_csv(folder / "old.csv", day_rows(M1, D1))
    os.utime(old, (old.stat().st_mtime - 120, old.stat().st_mtime - 120))
    write_csv(folder / "fresh.csv", day_rows(M1, D2))
    write_csv(folder / "marked.csv", day_rows(M1, D3))
    (folder / "marked.csv.done").touch()
    os.symlink("/etc/passwd", folder / "passwd.csv")
    chosen, waiting = complete_entries(folder, quiet_seconds=60)
    assert sorted(name for name, _ in chosen) == ["marked.csv", "old.csv", "passwd.csv"]
    assert dict(chosen)["passwd.csv"] is None  # refused, never read
    assert waiting == ["fresh.csv"]
    chosen, waiting = complete_entries(folder, quiet_seconds=60, require_done_marker=True)
    assert sorted(name for name, _ in chosen) == ["marked.csv", "passwd.csv"]
    assert sorted(waiting) == ["fresh.csv", "old.csv"]


# --- 3. names are names ----------------------------------------------------------------------


def test_names_that_look_like_glob_patterns_are_read_as_names(landing):
    write_csv(landing.dir / "g1.csv", day_rows(M1, D1))
    write_csv(landing.dir / "g?.csv", day_rows(M2, D1))
    write_csv(landing.dir / "reads[1].csv", day_rows(M1, D2))
    write_csv(landing.dir / "all*.csv", day_rows(M2, D3))

    requests = landing.tick_and_run()
    assert landing.query(
        "SELECT source_file, count(*), count(DISTINCT source_line) FROM interval_deliveries "
        "GROUP BY 1 ORDER BY 1"
    ) == [("all*.csv", 96, 96), ("g1.csv", 96, 96), ("g?.csv", 96, 96), ("reads[1].csv", 96, 96)]
    by_day = landing.query("SELECT local_date, count(*) FROM interval_reads GROUP BY 1 ORDER BY 1")
    assert by_day == [(D1, 192), (D2, 96), (D3, 96)]  # reads[1].csv's day was rebuilt too
    [request] = requests
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (D1.isoformat(), D3.isoformat())
    for name in ("g1", "g?", "reads[1]", "all*"):
        assert (landing.dir / "accepted" / name / f"{name}.csv").exists()


# --- 4. nothing outside the folder is read ------------------------------------------------------


def test_links_and_folders_are_refused_with_a_code_and_left_in_place(landing, tmp_path):
    outside = tmp_path / "outside"
    secret = outside / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("TOPSECRET:x:0:0:do not read\n")
    outside_csv = write_csv(outside / "other.csv", day_rows(M2, D2))
    os.symlink("/etc/passwd", landing.dir / "passwd.csv")
    os.symlink(secret, landing.dir / "secret.csv")
    os.symlink(outside_csv, landing.dir / "linked.csv")
    os.symlink(outside, landing.dir / "outside_dir")
    (landing.dir / "batch").mkdir()
    write_csv(landing.dir / "batch" / "inner.csv", day_rows(M2, D3))
    write_csv(landing.dir / "good.csv", day_rows(M1, D1))

    requests = landing.tick_and_run()
    # Nothing behind a link reached a table or an error file.
    messages = " ".join(m for (m,) in landing.query("SELECT message FROM interval_rejects"))
    assert "root:" not in messages and "TOPSECRET" not in messages
    for errors in landing.dir.rglob("errors.csv"):
        assert "root:" not in errors.read_text() and "TOPSECRET" not in errors.read_text()
    assert landing.query("SELECT source_file, count(*) FROM interval_deliveries GROUP BY 1") == [
        ("good.csv", 96)
    ]
    assert len(requests) == 1

    refused = landing.query(
        "SELECT file_name, status, problem FROM interval_files WHERE status = 'refused' ORDER BY 1"
    )
    assert [(n, p[:8]) for n, _, p in refused] == [
        ("batch", "FIL_0006"),
        ("linked.csv", "FIL_0005"),
        ("outside_dir", "FIL_0005"),
        ("passwd.csv", "FIL_0005"),
        ("secret.csv", "FIL_0005"),
    ]
    for name in ("passwd.csv", "secret.csv", "linked.csv", "outside_dir"):
        assert (landing.dir / name).is_symlink()  # left in place
    assert (landing.dir / "batch" / "inner.csv").exists()
    # Refused once: later ticks neither request them again nor record them twice.
    requests, skip = landing.tick()
    assert not requests and "no new files" in skip
    landing.run(dg.RunRequest(job_name="interval_files_job"))
    assert landing.query("SELECT count(*) FROM interval_files WHERE status = 'refused'") == [(5,)]


# --- 5. one drop, one run --------------------------------------------------------------------


def test_a_year_in_one_file_is_one_run(landing):
    first = date(2025, 6, 1)
    days = [first + timedelta(days=i) for i in range(320)]
    rows = [r for d in days for r in day_rows(M1, d)]
    write_csv(landing.dir / "year.csv", rows)

    requests = landing.tick_and_run()
    assert len(requests) == 1 and len(landing.results) == 1
    [request] = requests
    assert request.job_name == "interval_reads_job"
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (
        days[0].isoformat(),
        days[-1].isoformat(),
    )
    materialized = {
        m.partition for m in landing.results[0].asset_materializations_for_node("interval_reads")
    }
    assert materialized == {d.isoformat() for d in days}
    assert landing.query("SELECT count(*), count(DISTINCT local_date) FROM interval_reads") == [
        (len(rows), 320)
    ]


def test_a_burst_over_several_ticks_is_one_run(landing):
    write_csv(landing.dir / "a.csv", day_rows(M1, D1))
    write_csv(landing.dir / "b.csv", day_rows(M2, D1))
    assert landing.tick()[0] == []  # new: complete at the next tick
    write_csv(landing.dir / "c.csv", day_rows(M1, D2))
    requests, skip = landing.tick()  # a, b complete; c new: held for the rest of the drop
    assert requests == [] and "held" in skip
    write_csv(landing.dir / "d.csv", day_rows(M1, D3))
    assert landing.tick()[0] == []
    requests = landing.tick_and_run(ticks=2)
    assert len(requests) == 1
    [request] = requests
    assert request.run_config["ops"]["interval_files"]["config"]["files"] == sorted(
        f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in (landing.dir / "accepted").glob("*/*.csv")
    )
    assert landing.query("SELECT count(*) FROM interval_deliveries") == [(4 * 96,)]


def test_a_hold_ends_after_max_hold_seconds(tmp_path, memory_instance):
    landing = Landing(tmp_path, memory_instance, max_hold_seconds=0)
    write_csv(landing.dir / "a.csv", day_rows(M1, D1))
    landing.tick()
    write_csv(landing.dir / "late.csv", day_rows(M1, D2))
    [request] = landing.tick()[0]  # not held: a.csv goes now, late.csv later
    assert request.partition_key == D1.isoformat()
    assert landing.run(request).success
    [request] = landing.tick()[0]
    assert request.partition_key == D2.isoformat()


# --- a burst: 20 files over 90 days, 3 poison, 2 still being written ---------------------------
# (bench/bench_landing_burst.py runs the same scenario with 50 files over 365 days)


def test_a_burst_with_poison_and_growing_files_loads_every_good_row_once(landing):
    burst = write_burst(
        landing.dir,
        [M1, M2],
        date(2026, 6, 30),
        n_days=90,
        n_files=20,
        n_poison=3,
        n_growing=2,
        growing_chunks=4,
        release_groups=2,
    )
    for _ in range(12):
        burst.release()
        for upload in burst.growing:
            upload.advance()
        landing.tick_and_run(ticks=1)
        if not any(p.is_file() for p in landing.dir.iterdir()):
            break

    assert len(landing.results) <= 2  # one drop: one run, at most one more for a straggler
    assert all(r.success for r in landing.results)
    loaded = dict(
        landing.query(
            "SELECT source_file, count(*) FROM interval_deliveries GROUP BY 1 HAVING "
            "count(*) = count(DISTINCT source_line)"
        )
    )
    assert loaded == {f.name: f.rows for f in burst.good}  # growing files whole, once
    reads = landing.query(
        "SELECT count(*), sum(kwh), count(DISTINCT local_date) FROM interval_reads"
    )
    assert reads[0][0] == burst.expected_rows
    assert reads[0][1] == pytest.approx(burst.expected_kwh, rel=1e-9)
    assert reads[0][2] == len(burst.expected_days)
    for poison in burst.poison:
        stem = poison.name.removesuffix(".csv")
        errors = (landing.dir / "failed" / stem / "errors.csv").read_text()
        assert poison.code in errors and f"byte offset {poison.offset:,}" in errors
    assert sorted(p.name for p in landing.dir.iterdir()) == ["accepted", "failed"]
