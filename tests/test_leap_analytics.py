"""The analytics client (``vpp_pipeline.leap.analytics``) over real HTTP against the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from vpp_pipeline.leap import (
    METER_INTERVALS_SEARCH,
    METER_PERFORMANCE_SEARCH,
    LeapApiError,
    LeapClient,
    LeapResponseError,
    fetch_meter_intervals,
    fetch_meter_performance,
)
from vpp_pipeline.leap.analytics import INTERVAL_COLUMNS, PERFORMANCE_COLUMNS, meters_per_request
from vpp_pipeline.sandbox import SandboxServer, event_truth, generate_intervals, response_profile

ANCHOR = datetime(2026, 4, 1, tzinfo=UTC)


def utc(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def server():
    with SandboxServer(seed=7, anchor=ANCHOR) as sandbox:
        yield sandbox


@pytest.fixture
def client(server):
    server.faults.clear()
    server.state.clear_requests()
    with LeapClient(
        server.base_url, server.api_key, backoff_initial_s=0.01, backoff_max_s=0.05
    ) as leap:
        yield leap
    server.faults.clear()


def calls(server, path: str) -> list[dict]:
    return [r for r in server.requests if r["path"] == path]


def test_meters_per_request_respects_the_million_point_limit():
    assert meters_per_request(timedelta(days=31)) == 1_000_000 // (31 * 96) == 336
    assert meters_per_request(timedelta(days=1)) == 1000
    assert meters_per_request(timedelta(days=10, minutes=1)) * (10 * 96 + 1) <= 1_000_000


def test_fetch_meter_intervals_splits_windows_and_converts_wh_to_kwh(server, client):
    meters = list(server.portfolio.meters)[:3]
    start, end = utc("2026-01-01"), utc("2026-03-12")  # 70 days: windows of 31, 31 and 8 days
    frame = fetch_meter_intervals(client, meters, start, end)
    assert frame.schema == pl.Schema(INTERVAL_COLUMNS)
    sent = calls(server, METER_INTERVALS_SEARCH)
    assert [c["status"] for c in sent] == [200, 200, 200]
    windows = [
        (
            datetime.fromisoformat(c["json"]["date_range_start"]),
            datetime.fromisoformat(c["json"]["date_range_end"]),
        )
        for c in sent
    ]
    assert windows[0][0] == start and windows[-1][1] == end
    assert all(b - a <= timedelta(days=31) for a, b in windows)
    assert all(windows[i][1] == windows[i + 1][0] for i in range(len(windows) - 1))
    # exactly the sandbox's ground truth, in kWh, one row per (meter, interval)
    truth = generate_intervals(server.portfolio, start, end, meters)
    assert frame.height == truth.height == frame.unique(["meter_id", "interval_start"]).height
    joined = frame.join(truth, on=["meter_id", "interval_start"], suffix="_truth")
    assert joined.height == truth.height
    assert (joined["kwh"] - joined["kwh_truth"]).abs().max() < 1e-6
    assert (joined["interval_end"] - joined["interval_start"]).unique().to_list() == [
        timedelta(minutes=15)
    ]
    assert frame["interval_start"].dtype == pl.Datetime("us", "UTC")
    assert frame["meter_id"].to_list() == sorted(frame["meter_id"].to_list())


def test_fetch_meter_intervals_chunks_meters_and_follows_pages(client):
    # 1001 meters over one day: the 1000-meter limit forces two requests
    with SandboxServer(seed=5, n_meters=1001, history_days=20, anchor=ANCHOR) as big:
        with LeapClient(big.base_url, big.api_key, backoff_initial_s=0.01) as leap:
            meters = list(big.portfolio.meters)
            start, end = utc("2026-03-20"), utc("2026-03-21")
            frame = fetch_meter_intervals(leap, meters, start, end, page_size=20_000)
        sent = calls(big, METER_INTERVALS_SEARCH)
        sizes = [len(c["json"]["meter_ids"]) for c in sent if "page_token" not in c["json"]]
        assert sorted(sizes) == [1, 1000]
        assert sum("page_token" in c["json"] for c in sent) >= 4  # ~96k rows in pages of 20k
        truth = generate_intervals(big.portfolio, start, end)
        assert frame.height == truth.height > 0.98 * 1001 * 96
        assert frame["meter_id"].n_unique() == 1001


def test_a_429_then_success(server, client):
    server.faults.add("429", count=1, retry_after_seconds=0, path_prefix="/v1.1/analytics")
    meters = list(server.portfolio.meters)[:2]
    frame = fetch_meter_intervals(client, meters, utc("2026-03-01"), utc("2026-03-02"))
    assert frame.height == 2 * 96
    statuses = [(c["status"], c["fault"]) for c in calls(server, METER_INTERVALS_SEARCH)]
    assert statuses == [(429, "429"), (200, None)]


def test_persistent_errors_and_malformed_bodies_raise(server, client):
    meters = list(server.portfolio.meters)[:1]
    server.faults.add("503", path_prefix="/v1.1/analytics")
    with pytest.raises(LeapApiError) as error:
        fetch_meter_intervals(client, meters, utc("2026-03-01"), utc("2026-03-02"))
    assert error.value.status == 503 and error.value.attempts == client.max_attempts
    assert error.value.envelope.style == "problem-list"
    server.faults.clear()
    for body in ("schema", "truncated", "html"):
        server.faults.add("malformed", count=1, malformed_body=body, path_prefix="/v1.1/analytics")
        with pytest.raises(LeapResponseError):
            fetch_meter_intervals(client, meters, utc("2026-03-01"), utc("2026-03-02"))
        server.faults.add("malformed", count=1, malformed_body=body, path_prefix="/v1.1/analytics")
        with pytest.raises(LeapResponseError):
            fetch_meter_performance(client, meters, utc("2026-03-01"), utc("2026-03-02"))


def test_a_400_names_leaps_analytics_message(server, client):
    meters = list(server.portfolio.meters)[:1]
    with pytest.raises(LeapApiError) as error:
        client.post_json(
            METER_INTERVALS_SEARCH,
            {
                "meter_ids": meters,
                "date_range_start": "2026-01-01T00:00:00Z",
                "date_range_end": "2026-03-01T00:00:00Z",
            },
        )
    assert error.value.status == 400 and error.value.attempts == 1
    assert "31 days" in str(error.value)


def test_fetch_meter_performance_one_row_per_meter_event(server, client):
    meters = list(server.portfolio.meters)
    start, end = utc("2026-02-15"), utc("2026-03-25")  # two windows
    frame = fetch_meter_performance(client, meters, start, end, page_size=100)
    assert frame.schema == pl.Schema(PERFORMANCE_COLUMNS)
    assert len(calls(server, METER_PERFORMANCE_SEARCH)) > 2  # windows x pages
    truth = event_truth(server.portfolio).filter(
        (pl.col("start") >= start) & (pl.col("start") < end)
    )
    assert frame.height == truth.height == frame["meter_event_id"].n_unique()
    assert set(frame["meter_event_id"]) == set(truth["meter_event_id"])
    scored = frame.drop_nulls("delivered_kwh")
    assert scored.height > 0.9 * frame.height
    assert (
        scored["baseline_kwh"] - scored["usage_kwh"] - scored["delivered_kwh"]
    ).abs().max() < 1e-3
    # Leap's figure tracks the ground truth for good responders, without matching it exactly
    profile = response_profile(server.portfolio)
    good = scored.filter(pl.col("meter_id").replace_strict(profile) == "good").join(
        truth.select("meter_event_id", "true_delivered_kwh"), on="meter_event_id"
    )
    leap, true = good["delivered_kwh"].sum(), good["true_delivered_kwh"].sum()
    assert leap != true and abs(leap - true) < 0.25 * true
    # program filter
    elrp = fetch_meter_performance(client, meters, start, end, programs=["ELRP"])
    assert elrp.height > 0 and all(p == ["ELRP"] for p in elrp["programs"].to_list())


def test_empty_inputs_give_typed_empty_frames(server, client):
    assert fetch_meter_intervals(
        client, [], utc("2026-03-01"), utc("2026-03-02")
    ).schema == pl.Schema(INTERVAL_COLUMNS)
    after = fetch_meter_intervals(
        client, list(server.portfolio.meters)[:2], ANCHOR, ANCHOR + timedelta(days=1)
    )
    assert after.height == 0 and after.schema == pl.Schema(INTERVAL_COLUMNS)
    assert fetch_meter_performance(client, [], ANCHOR, ANCHOR + timedelta(days=1)).height == 0
