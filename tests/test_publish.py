"""Analysts open a published read-only copy of the DuckDB file, never the pipeline's own, so
neither waits for the other: measured with real Dagster runs and a real analyst process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import date

import dagster as dg
import duckdb
import pytest

from assets.bid import tariffs
from assets.publish import analytics_publish_sensor, publish_analytics_job
from vpp_pipeline import settings
from vpp_pipeline.publish import PublishError, publish_copy
from vpp_pipeline.resources import duckdb_resource

#: An analyst: opens the copy read-only, queries, closes; `opens` times or until told to stop
#: (a file appears); prints a JSON summary. Bounded by `deadline_s`.
ANALYST = textwrap.dedent(
    """
    import json, sys, time, duckdb, os
    path, opens, stop_file, deadline_s = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    failures, done, rows, started = [], 0, set(), time.monotonic()
    while done < opens and time.monotonic() - started < deadline_s:
        try:
            with duckdb.connect(path, read_only=True) as conn:
                rows.add(conn.execute("SELECT count(*) FROM tariffs").fetchall()[0][0])
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
        done += 1
        time.sleep(0.01)
    print(json.dumps({"opens": done, "failures": failures, "row_counts": sorted(rows)}))
    """
)

#: An analyst who keeps one connection open until told to stop, then reports what it saw.
HOLDER = textwrap.dedent(
    """
    import json, os, sys, time, duckdb
    path, stop_file = sys.argv[1], sys.argv[2]
    conn = duckdb.connect(path, read_only=True)
    before = conn.execute("SELECT count(*) FROM tariffs").fetchall()[0][0]
    print("open", flush=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    after = conn.execute("SELECT count(*) FROM tariffs").fetchall()[0][0]
    conn.close()
    print(json.dumps({"before": before, "after": after}), flush=True)
    """
)


def _run_and_publish(resources, instance) -> float:
    started = time.monotonic()
    assert dg.materialize([tariffs], resources=resources, instance=instance).success
    result = publish_analytics_job.execute_in_process(resources=resources, instance=instance)
    assert result.success
    return time.monotonic() - started


def test_200_analyst_opens_during_a_stream_of_runs_all_succeed(tmp_path, instance):
    resources = {"duckdb": duckdb_resource(tmp_path / "vpp.duckdb")}
    published = settings.published_duckdb_path(tmp_path / "vpp.duckdb")
    _run_and_publish(resources, instance)
    stop = tmp_path / "stop"
    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(published), "200", str(stop), "120"],
        stdout=subprocess.PIPE,
        text=True,
    )
    runs = 0
    deadline = time.monotonic() + 150
    while analyst.poll() is None and time.monotonic() < deadline:
        _run_and_publish(resources, instance)  # the writer never waits for the analyst
        runs += 1
    report = json.loads(analyst.communicate(timeout=60)[0])
    assert report["failures"] == [], report["failures"][:5]
    assert report["opens"] == 200
    assert runs >= 2, "the analyst's opens overlapped real runs and publishes"
    assert report["row_counts"] == [23]


def test_a_run_is_not_held_up_by_an_analyst_connection_left_open(tmp_path, instance):
    resources = {"duckdb": duckdb_resource(tmp_path / "vpp.duckdb")}
    published = settings.published_duckdb_path(tmp_path / "vpp.duckdb")
    _run_and_publish(resources, instance)
    stop = tmp_path / "stop"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(published), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        # with the analyst's connection open: a run that changes the table, and a publish
        with duckdb_resource(tmp_path / "vpp.duckdb").get_connection() as conn:
            conn.execute("DELETE FROM tariffs WHERE period_order > 0")
            changed = conn.execute("SELECT count(*) FROM tariffs").fetchall()[0][0]
        result = publish_analytics_job.execute_in_process(resources=resources, instance=instance)
        assert result.success
        assert holder.poll() is None, "finished while the analyst still held the old copy"
        with duckdb.connect(str(published), read_only=True) as fresh:
            assert fresh.execute("SELECT count(*) FROM tariffs").fetchall()[0][0] == changed
    finally:
        stop.touch()
    seen = json.loads(holder.communicate(timeout=60)[0].strip().splitlines()[-1])
    # the analyst kept a consistent snapshot: the copy it opened, untouched by the replace
    assert seen == {"before": 23, "after": 23} and changed < 23


def test_publish_sensor_requests_one_publish_after_runs_that_changed_analyst_tables(
    tmp_path, instance
):
    resources = {"duckdb": duckdb_resource(tmp_path / "vpp.duckdb")}
    context = dg.build_sensor_context(instance=instance)
    assert isinstance(analytics_publish_sensor(context), dg.SkipReason)

    assert dg.materialize([tariffs], resources=resources, instance=instance).success
    assert dg.materialize([tariffs], resources=resources, instance=instance).success
    context = dg.build_sensor_context(instance=instance, cursor=None)
    result = analytics_publish_sensor(context)
    assert len(result.run_requests) == 1  # two runs, one publish
    assert result.run_requests[0].run_key.startswith("publish-after-")
    cursor = result.cursor

    # nothing new since the cursor; then a run that changes no analyst table
    again = analytics_publish_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(again, dg.SkipReason) and "no run finished" in again.skip_message
    publish_analytics_job.execute_in_process(resources=resources, instance=instance)
    later = analytics_publish_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert not later.run_requests and "changed no analyst table" in str(later.skip_reason)


def test_publish_refuses_a_missing_source_or_itself(tmp_path):
    with pytest.raises(PublishError) as info:
        publish_copy(tmp_path / "none.duckdb", tmp_path / "out.duckdb")
    assert info.value.reason_code == "PUBLISH_NO_SOURCE"
    duckdb.connect(str(tmp_path / "a.duckdb")).close()
    with pytest.raises(PublishError) as info:
        publish_copy(tmp_path / "a.duckdb", tmp_path / "a.duckdb")
    assert info.value.reason_code == "PUBLISH_SAME_FILE"


def test_partitions_start_where_the_demo_data_starts(monkeypatch):
    monkeypatch.delenv("VPP_INTERVAL_PARTITIONS_START", raising=False)
    assert settings.interval_partitions_start(date(2026, 12, 2)) == "2026-09-27"
    monkeypatch.setenv("VPP_INTERVAL_PARTITIONS_START", "2025-01-01")
    assert settings.interval_partitions_start(date(2026, 12, 2)) == "2025-01-01"


def test_leap_resource_says_when_it_uses_the_sandbox(caplog):
    from vpp_pipeline.resources import LeapResource

    with caplog.at_level("WARNING"):
        LeapResource().client().close()
    assert "LEAP_API_BASE_URL is not set: using the local sandbox" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        LeapResource(base_url="https://api.example.invalid", api_key="k").client().close()
    assert "sandbox" not in caplog.text
