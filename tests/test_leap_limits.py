"""The Leap client's bounds, set as Dagster resource config (issue 13): a page limit against
a server that never stops paging, and the Retry-After cap, through the real interval_reads
asset over real HTTP."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest

from assets import analyze_intervals
from vpp_pipeline.intervals.ingest import local_day_bounds_utc
from vpp_pipeline.leap import LeapClient, LeapResponseError, fetch_meter_intervals
from vpp_pipeline.leap.client import DEFAULT_MAX_PAGES
from vpp_pipeline.resources import IntervalSourceResource, LeapResource, duckdb_resource

TZ = "America/Los_Angeles"
METER = "11111111-1111-4111-8111-111111111111"


class EndlessPages:
    """A real HTTP server on 127.0.0.1 that answers every search with an empty page and a
    fresh ``next_page_token`` (the server of issue 13's case 6)."""

    def __init__(self) -> None:
        self.calls = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.calls += 1
                key = "intervals" if "analytics" in self.path else "meters"
                payload = json.dumps({key: [], "next_page_token": uuid.uuid4().hex}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                assert isinstance(body, dict)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EndlessPages:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endless():
    with EndlessPages() as server:
        yield server


def interval_defs(tmp_path, leap: LeapResource, meter_ids: list[str]) -> dg.Definitions:
    db = tmp_path / "vpp.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("CREATE TABLE meters (meter_id VARCHAR)")
        conn.executemany("INSERT INTO meters VALUES (?)", [[m] for m in meter_ids])
    return dg.Definitions(
        assets=[analyze_intervals.interval_files, analyze_intervals.interval_reads],
        jobs=[analyze_intervals.interval_reads_job],
        resources={
            "leap": leap,
            "duckdb": duckdb_resource(db),
            "interval_source": IntervalSourceResource(
                landing_dir=str(tmp_path / "landing"), market_timezone=TZ
            ),
        },
    )


def step_failure(result: dg.ExecuteInProcessResult) -> str:
    [event] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return event.step_failure_data.error.to_string()


@pytest.mark.timeout(120)
def test_the_page_limit_is_resource_config_and_stops_an_endless_server(tmp_path, endless):
    leap = LeapResource(base_url=endless.base_url, api_key="k", max_pages=25)
    defs = interval_defs(tmp_path, leap, [METER])
    started = time.monotonic()
    result = defs.resolve_job_def("interval_reads_job").execute_in_process(
        partition_key="2026-06-02",
        run_config={"ops": {"interval_reads": {"config": {"meter_ids": [METER]}}}},
        raise_on_error=False,
    )
    assert not result.success
    message = step_failure(result)
    assert "POST /v1.1/analytics/intervals/meter/search" in message
    assert "stopped after 25 pages (max_pages)" in message
    assert endless.calls == 25
    assert time.monotonic() - started < 60


@pytest.mark.timeout(120)
def test_the_default_page_limit_ends_paging_for_every_search(endless):
    with LeapClient(endless.base_url, "k") as client:
        with pytest.raises(LeapResponseError, match=f"stopped after {DEFAULT_MAX_PAGES} pages"):
            client.search_meters()
        assert endless.calls == DEFAULT_MAX_PAGES
    with LeapClient(endless.base_url, "k", max_pages=3) as client:
        day_start, day_end = local_day_bounds_utc(date(2026, 6, 2), date(2026, 6, 2), TZ)
        with pytest.raises(LeapResponseError, match="stopped after 3 pages"):
            fetch_meter_intervals(client, [METER], day_start, day_end)
    assert endless.calls == DEFAULT_MAX_PAGES + 3


def test_the_retry_after_cap_is_settable_from_dagster_run_config(tmp_path, private_sandbox):
    meters = sorted(private_sandbox.portfolio.meters)[:2]
    leap = LeapResource(base_url=private_sandbox.base_url, api_key=private_sandbox.api_key)
    defs = interval_defs(tmp_path, leap, meters)
    day = (private_sandbox.portfolio.anchor - timedelta(days=3)).astimezone(ZoneInfo(TZ)).date()
    # Leap asks for 60 s; the run is configured (launchpad / run config) to wait at most 0.2 s.
    private_sandbox.faults.set(
        "429", count=2, retry_after_seconds=60, path_prefix="/v1.1/analytics"
    )
    private_sandbox.state.clear_requests()
    started = time.monotonic()
    result = defs.resolve_job_def("interval_reads_job").execute_in_process(
        partition_key=day.isoformat(),
        run_config={
            "ops": {"interval_reads": {"config": {"meter_ids": meters}}},
            "resources": {
                "leap": {
                    "config": {
                        "base_url": private_sandbox.base_url,
                        "api_key": private_sandbox.api_key,
                        "retry_after_max_s": 0.2,
                        "max_attempts": 4,
                    }
                }
            },
        },
    )
    elapsed = time.monotonic() - started
    assert result.success
    assert elapsed < 30  # two honoured 60 s waits would take two minutes
    statuses = [
        r["status"]
        for r in private_sandbox.requests
        if r["path"] == "/v1.1/analytics/intervals/meter/search"
    ]
    assert statuses[:3] == [429, 429, 200]
    [materialization] = result.asset_materializations_for_node("interval_reads")
    assert materialization.metadata["rows"].value == 2 * 96
