"""The sandbox's synthetic interval data, its analytics endpoints and its ground truth, over real HTTP."""

from __future__ import annotations

import csv
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import polars as pl
import pytest

from vpp_pipeline.leap.analytics import METER_INTERVALS_SEARCH, METER_PERFORMANCE_SEARCH
from vpp_pipeline.sandbox import (
    DEFAULT_API_KEY,
    SandboxServer,
    build_portfolio,
    event_truth,
    generate_intervals,
    response_profile,
    write_interval_csvs,
)
from vpp_pipeline.sandbox.intervals import CSV_COLUMNS, event_table

# Before the anchor lie the 2025 fall-back (Nov 2) and the 2026 spring-forward (Mar 8) days.
ANCHOR = datetime(2026, 4, 1, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
LA = ZoneInfo("America/Los_Angeles")


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def utc(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def server():
    with SandboxServer(seed=7, anchor=ANCHOR) as sandbox:
        yield sandbox


@pytest.fixture
def http(server):
    server.faults.clear()
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=60) as client:
        yield client
    server.faults.clear()


@pytest.fixture(scope="module")
def profile(server) -> dict[str, str]:
    return response_profile(server.portfolio)


def fetch_all(http: httpx.Client, body: dict) -> list[dict]:
    """Every interval of a search, following next_page_token."""
    out, token = [], None
    while True:
        response = http.post(
            METER_INTERVALS_SEARCH, json={**body, **({"page_token": token} if token else {})}
        )
        assert response.status_code == 200, response.text
        data = response.json()
        out.extend(data["intervals"])
        token = data["next_page_token"]
        if not token:
            return out


def as_frame(records: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(records, infer_schema_length=None).with_columns(
        pl.col("start_date_time_utc").str.to_datetime(time_zone="UTC").alias("interval_start")
    )


def meters_where(server, profile, category: str, **site) -> list[str]:
    out = []
    for meter_id, s in server.portfolio.sites.items():
        if profile[meter_id] != category:
            continue
        if all(getattr(s, k) == v for k, v in site.items()):
            out.append(meter_id)
    return out


def assert_analytics_envelope(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["title"] and body["status"] == status
    assert isinstance(body["details"], list) and body["details"]
    assert set(body["details"][0]) == {"message", "description"}
    return body


# --- the generator --------------------------------------------------------------------------------------------


def test_overlapping_windows_and_fresh_portfolios_agree(server, http):
    meters = list(server.portfolio.meters)[:6]
    served = as_frame(
        fetch_all(
            http,
            {
                "meter_ids": meters,
                "date_range_start": "2026-01-01T00:00:00Z",
                "date_range_end": "2026-01-20T00:00:00Z",
                "page_size": 100_000,
            },
        )
    )
    # a separately built portfolio, a window that starts mid-interval and overlaps half of it
    other = generate_intervals(
        build_portfolio(seed=7, anchor=ANCHOR),
        datetime(2026, 1, 10, 5, 7, tzinfo=UTC),
        datetime(2026, 2, 5, tzinfo=UTC),
        meters,
    )
    assert other["interval_start"].min() == datetime(2026, 1, 10, 5, 15, tzinfo=UTC)
    joined = served.join(other, on=["meter_id", "interval_start"])
    assert joined.height > 0.45 * served.height
    assert (joined["energy_net_wh"] / 1000 - joined["kwh"]).abs().max() < 1e-6
    assert (joined["energy_generated_wh"] / 1000 - joined["generated_kwh"]).abs().max() < 1e-6
    # and a different seed gives different data
    third = generate_intervals(
        build_portfolio(seed=8, anchor=ANCHOR), utc("2026-01-10"), utc("2026-01-11")
    )
    assert not third["kwh"].head(96).equals(other["kwh"].head(96))


def mean_wh(frame: pl.DataFrame, condition: pl.Expr) -> float:
    return frame.filter(condition)["energy_net_wh"].mean()


def test_office_business_hours_exceed_nights_and_weekends(server, http, profile):
    offices = meters_where(server, profile, "good", archetype="office") + meters_where(
        server, profile, "partial", archetype="office"
    )
    assert offices
    records = fetch_all(
        http,
        {
            "meter_ids": offices,
            "date_range_start": "2026-02-01T00:00:00Z",
            "date_range_end": "2026-03-01T00:00:00Z",
            "page_size": 100_000,
        },
    )
    frame = as_frame(records)
    for meter_id in offices:
        tz = server.portfolio.sites[meter_id].timezone
        local = frame.filter(pl.col("meter_id") == meter_id).with_columns(
            pl.col("interval_start").dt.convert_time_zone(tz).alias("local")
        )
        local = local.with_columns(
            pl.col("local").dt.hour().alias("hour"), (pl.col("local").dt.weekday() >= 6).alias("we")
        )
        business = mean_wh(local, ~pl.col("we") & pl.col("hour").is_between(10, 15))
        night = mean_wh(local, ~pl.col("we") & pl.col("hour").is_between(0, 4))
        weekend = mean_wh(local, pl.col("we") & pl.col("hour").is_between(10, 15))
        assert business > 1.15 * night, meter_id
        assert business > 1.15 * weekend, meter_id


@pytest.mark.parametrize(
    ("day", "expected"), [("2026-03-08", 92), ("2025-11-02", 100), ("2026-03-10", 96)]
)
def test_dst_local_days_have_92_100_or_96_intervals(server, http, profile, day, expected):
    meter_id = meters_where(server, profile, "good", timezone="America/Los_Angeles")[0]
    local_day = datetime.fromisoformat(day).replace(tzinfo=LA)
    start = local_day.astimezone(UTC)
    end = (local_day + timedelta(days=1)).astimezone(UTC)  # wall-clock next midnight
    records = fetch_all(
        http, {"meter_ids": [meter_id], "date_range_start": z(start), "date_range_end": z(end)}
    )
    assert len(records) == expected == round((end - start) / timedelta(minutes=15))
    starts = [r["start_date_time_utc"] for r in records]
    assert len(set(starts)) == expected


def at(local: pl.DataFrame, hour: int, minute: int) -> float:
    """Mean counterfactual kWh of the interval starting at local hour:minute."""
    return local.filter(
        (pl.col("local").dt.hour() == hour) & (pl.col("local").dt.minute() == minute)
    )["counterfactual_kwh"].mean()


def test_battery_site_discharges_in_the_local_evening_peak(server):
    portfolio = server.portfolio
    btm = [
        m for m, s in portfolio.sites.items() if s.battery_power_kw and not s.is_battery_submeter
    ]
    frame = generate_intervals(portfolio, utc("2026-02-01"), utc("2026-03-01"), btm)
    frame = frame.filter(pl.col("event_id").is_null())
    for meter_id in btm:
        site = portfolio.sites[meter_id]
        local = frame.filter(pl.col("meter_id") == meter_id).with_columns(
            pl.col("interval_start").dt.convert_time_zone(site.timezone).alias("local")
        )
        # at 16:00 local the battery starts discharging: a step down of its scheduled kW x 0.25 h
        discharge_kwh = min(site.battery_power_kw, 0.8 * site.battery_energy_kwh / 5) * 0.25
        assert at(local, 15, 45) - at(local, 16, 0) > 0.5 * discharge_kwh, meter_id
        # and at 01:00 it starts charging
        assert at(local, 1, 0) - at(local, 0, 45) > 0.5 * discharge_kwh, meter_id


# --- events and ground truth ----------------------------------------------------------------------------------


def truth_intervals(http: httpx.Client, meter_ids: list[str], start: str, end: str) -> pl.DataFrame:
    response = http.post(
        "/_sandbox/ground_truth/intervals",
        json={"meter_ids": meter_ids, "start": start, "end": end},
    )
    assert response.status_code == 200, response.text
    return pl.DataFrame(response.json()["intervals"], infer_schema_length=None)


def test_responders_follow_their_category_during_events(server, http, profile):
    categories = Counter(profile.values())
    assert categories["good"] > categories["partial"] >= 1
    assert categories["none"] >= 1 and categories["gaps"] >= 1
    truth = pl.DataFrame(
        http.get("/_sandbox/ground_truth/events").json()["events"], infer_schema_length=None
    )
    ratio = truth.filter(pl.col("intervals_present") == pl.col("intervals_expected")).select(
        "meter_id",
        "response",
        (pl.col("true_delivered_kw") / pl.col("committed_kw")).alias("ratio"),
    )
    by_category = dict(ratio.group_by("response").agg(pl.col("ratio").median()).iter_rows())
    assert by_category["good"] > 0.85
    assert 0.2 < by_category["partial"] < 0.75
    assert abs(by_category["none"]) < 0.06

    good = [
        m
        for m in meters_where(server, profile, "good")
        if not server.portfolio.sites[m].is_battery_submeter
    ][:8]
    none = meters_where(server, profile, "none")
    intervals = truth_intervals(http, good + none, "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z")
    in_events = intervals.filter(pl.col("event_id").is_not_null()).with_columns(
        pl.col("meter_id").replace_strict(profile).alias("response")
    )
    assert in_events.filter(pl.col("response") == "good").height > 100
    good_rows = in_events.filter(pl.col("response") == "good")
    below = (good_rows["kwh"] < good_rows["counterfactual_kwh"]).mean()
    assert below > 0.97
    committed = event_table(server.portfolio).select("meter_event_id", "committed_kw")
    none_rows = in_events.filter(pl.col("response") == "none").join(
        committed, left_on="event_id", right_on="meter_event_id"
    )
    assert none_rows.height > 0
    # "none" responders stay at their counterfactual (within 6 % of the committed energy)
    gap = (none_rows["counterfactual_kwh"] - none_rows["kwh"]).abs()
    assert (gap <= 0.06 * none_rows["committed_kw"] * 0.25 + 1e-4).all()
    # the analytics endpoint serves exactly the actual (not the counterfactual) kWh
    served = as_frame(
        fetch_all(
            http,
            {
                "meter_ids": good[:3],
                "date_range_start": "2026-03-01T00:00:00Z",
                "date_range_end": "2026-03-31T00:00:00Z",
                "page_size": 100_000,
            },
        )
    )
    check = served.join(
        intervals.with_columns(pl.col("interval_start").str.to_datetime(time_zone="UTC")),
        on=["meter_id", "interval_start"],
    )
    assert check.height == served.height
    assert (check["energy_net_wh"] / 1000 - check["kwh"]).abs().max() < 1e-6


def test_gap_meters_miss_rows_including_event_windows(server, http, profile):
    gaps = meters_where(server, profile, "gaps")
    assert 1 <= len(gaps) <= 2
    start, end = utc("2026-01-01"), utc("2026-04-01")
    records = []
    for window in range(3):  # three 30-day windows (the endpoint allows at most 31 days)
        records += fetch_all(
            http,
            {
                "meter_ids": gaps,
                "date_range_start": z(start + timedelta(days=30 * window)),
                "date_range_end": z(min(end, start + timedelta(days=30 * (window + 1)))),
                "page_size": 100_000,
            },
        )
    counts = Counter(r["meter_id"] for r in records)
    expected = (end - start) / timedelta(minutes=15)
    for meter_id in gaps:
        assert 0.5 * expected < counts[meter_id] < expected
    truth = event_truth(server.portfolio, gaps)
    assert (truth["intervals_present"] < truth["intervals_expected"]).any()
    assert (truth["intervals_present"] == truth["intervals_expected"]).any()
    # other meters have every interval
    full = meters_where(server, profile, "good")[:3]
    records = fetch_all(
        http,
        {"meter_ids": full, "date_range_start": z(start), "date_range_end": z(utc("2026-01-31"))},
    )
    assert len(records) == 3 * 30 * 96


def test_battery_submeters_export_during_events(server, http, profile):
    portfolio = server.portfolio
    submeters = [m for m, s in portfolio.sites.items() if s.is_battery_submeter]
    truth = event_truth(portfolio, submeters).filter(
        (pl.col("response") == "good") & (pl.col("start") >= utc("2026-01-01"))
    )
    assert truth.height > 0
    event = truth.row(0, named=True)
    records = fetch_all(
        http,
        {
            "meter_ids": [event["meter_id"]],
            "date_range_start": z(event["start"] - timedelta(hours=24)),
            "date_range_end": z(event["end"] + timedelta(hours=2)),
        },
    )
    frame = as_frame(records)
    during = frame.filter(
        (pl.col("interval_start") >= event["start"]) & (pl.col("interval_start") < event["end"])
    )
    assert during.height == event["intervals_expected"]
    assert (during["energy_net_wh"] < 0).all()
    assert (during["energy_generated_wh"] > 0).all() and (during["energy_consumed_wh"] == 0).all()
    assert (during["energy_generated_wh"] == -during["energy_net_wh"]).all()
    # a submeter sees only the battery: its discharge never exceeds the battery's power
    power_wh = portfolio.sites[event["meter_id"]].battery_power_kw * 0.25 * 1000
    assert (during["energy_generated_wh"] <= power_wh + 0.1).all()
    assert event["true_delivered_kwh"] > 0


# --- endpoint limits, pagination, roll-up, errors -------------------------------------------------------------


def test_range_over_31_days_is_a_400_in_the_analytics_envelope(server, http):
    meters = list(server.portfolio.meters)[:2]
    for path in (METER_INTERVALS_SEARCH, METER_PERFORMANCE_SEARCH):
        response = http.post(
            path,
            json={
                "meter_ids": meters,
                "date_range_start": "2026-01-01T00:00:00Z",
                "date_range_end": "2026-02-01T00:15:00Z",
            },
        )
        body = assert_analytics_envelope(response, 400)
        assert "31 days" in body["details"][0]["message"]
        ok = http.post(
            path,
            json={
                "meter_ids": meters,
                "date_range_start": "2026-01-01T00:00:00Z",
                "date_range_end": "2026-02-01T00:00:00Z",
                "page_size": 10,
            },
        )
        assert ok.status_code == 200, ok.text


def test_more_than_a_million_data_points_is_a_400(http):
    ids = [str(uuid.UUID(int=i + 1, version=4)) for i in range(1000)]
    body = {"meter_ids": ids, "date_range_start": "2026-01-01T00:00:00Z"}
    # 1000 meters x 11 days x 96 = 1,056,000 points
    response = http.post(
        METER_INTERVALS_SEARCH, json={**body, "date_range_end": "2026-01-12T00:00:00Z"}
    )
    details = assert_analytics_envelope(response, 400)["details"][0]
    assert "1000000" in details["message"] and "meters" in details["description"]
    # 1000 x 10 days = 960,000 is accepted (these meters are unknown: no data); hourly 11 days too
    response = http.post(
        METER_INTERVALS_SEARCH, json={**body, "date_range_end": "2026-01-11T00:00:00Z"}
    )
    assert response.status_code == 200 and response.json()["intervals"] == []
    response = http.post(
        METER_INTERVALS_SEARCH,
        json={**body, "date_range_end": "2026-01-12T00:00:00Z", "interval": "INTERVAL_1HR"},
    )
    assert response.status_code == 200


def test_bad_requests_and_auth_use_the_analytics_envelope(server, http):
    meter_id = next(iter(server.portfolio.meters))
    base = {
        "meter_ids": [meter_id],
        "date_range_start": "2026-01-01T00:00:00Z",
        "date_range_end": "2026-01-02T00:00:00Z",
    }
    for body in (
        {**base, "meter_ids": []},
        {**base, "meter_ids": ["not-a-uuid"]},
        {k: v for k, v in base.items() if k != "date_range_end"},
        {**base, "date_range_end": "2025-12-31T00:00:00Z"},
        {**base, "interval": "INTERVAL_5MIN"},
        {**base, "page_size": 100_001},
        {**base, "page_token": "nope"},
    ):
        assert_analytics_envelope(http.post(METER_INTERVALS_SEARCH, json=body), 400)
    no_auth = httpx.post(server.base_url + METER_INTERVALS_SEARCH, json=base, timeout=10)
    assert_analytics_envelope(no_auth, 401)
    server.faults.add("500", count=1, path_prefix="/v1.1/analytics")
    assert_analytics_envelope(http.post(METER_INTERVALS_SEARCH, json=base), 500)


def test_pagination_returns_every_interval_exactly_once(server, http):
    meters = list(server.portfolio.meters)[:3]
    body = {
        "meter_ids": meters,
        "date_range_start": "2026-03-07T00:00:00Z",
        "date_range_end": "2026-03-10T00:00:00Z",
    }
    whole = http.post(METER_INTERVALS_SEARCH, json={**body, "page_size": 100_000}).json()
    assert whole["next_page_token"] is None
    pages, token, calls = [], None, 0
    while True:
        response = http.post(
            METER_INTERVALS_SEARCH,
            json={**body, "page_size": 100, **({"page_token": token} if token else {})},
        )
        calls += 1
        data = response.json()
        assert len(data["intervals"]) <= 100
        pages.extend(data["intervals"])
        token = data["next_page_token"]
        if not token:
            break
    keys = [(r["meter_id"], r["start_date_time_utc"]) for r in pages]
    assert len(keys) == len(set(keys)) == len(whole["intervals"])
    assert pages == whole["intervals"]
    assert calls == -(-len(pages) // 100) >= 5


def test_hourly_rollup_averages_four_quarter_hours(server, http, profile):
    meter_id = meters_where(server, profile, "gaps")[0]
    body = {
        "meter_ids": [meter_id],
        "date_range_start": "2026-01-01T00:00:00Z",
        "date_range_end": "2026-02-01T00:00:00Z",
        "page_size": 100_000,
    }
    quarter = as_frame(fetch_all(http, body))
    hourly = as_frame(fetch_all(http, {**body, "interval": "INTERVAL_1HR"}))
    expected = (
        quarter.group_by(pl.col("interval_start").dt.truncate("1h"))
        .agg(pl.col("energy_net_wh").mean(), pl.len().alias("n"))
        .filter(pl.col("n") == 4)
        .sort("interval_start")
    )
    # the gap meter has incomplete hours, which are dropped
    assert quarter.height < 4 * 31 * 24 and hourly.height == expected.height < 31 * 24
    assert hourly["interval_start"].to_list() == expected["interval_start"].to_list()
    assert (hourly["energy_net_wh"] - expected["energy_net_wh"]).abs().max() < 0.2
    first = hourly.row(0, named=True)
    assert first["end_date_time_utc"] == z(first["interval_start"] + timedelta(hours=1))


def test_performance_endpoint_returns_events_with_intervals(server, http):
    meters = list(server.portfolio.meters)
    records, token = [], None
    while True:
        response = http.post(
            METER_PERFORMANCE_SEARCH,
            json={
                "meter_ids": meters,
                "date_range_start": "2026-03-01T00:00:00Z",
                "date_range_end": "2026-03-31T00:00:00Z",
                "page_size": 200,
                **({"page_token": token} if token else {}),
            },
        )
        assert response.status_code == 200, response.text
        data = response.json()
        records.extend(data["performance"])
        token = data["next_page_token"]
        if not token:
            break
    assert len(records) > 200
    truth = event_truth(server.portfolio).filter(
        (pl.col("start") >= utc("2026-03-01")) & (pl.col("start") < utc("2026-03-31"))
    )
    assert {r["meter_event_id"] for r in records} == set(truth["meter_event_id"])
    assert any(":" in r["meter_event_id"] for r in records)
    by_id = {r["meter_event_id"]: r for r in truth.iter_rows(named=True)}
    for record in records:
        expected = by_id[record["meter_event_id"]]
        assert record["meter_id"] == expected["meter_id"]
        assert len(record["intervals"]) == expected["intervals_present"]
        scored = [i for i in record["intervals"] if i["baseline_wh"] is not None]
        for item in scored:
            assert abs(item["baseline_wh"] - item["usage_wh"] - item["performance_wh"]) < 0.2
        if scored:
            assert abs(sum(i["performance_wh"] for i in scored) - record["performance_wh"]) < 1
    # the sandbox's own baseline is close to, but not the same as, the ground truth
    good = [
        r
        for r in records
        if by_id[r["meter_event_id"]]["response"] == "good" and r["performance_wh"] is not None
    ]
    leap = sum(r["performance_wh"] for r in good) / 1000
    true = sum(by_id[r["meter_event_id"]]["true_delivered_kwh"] for r in good)
    assert leap != true and abs(leap - true) < 0.25 * true
    # programs filter
    response = http.post(
        METER_PERFORMANCE_SEARCH,
        json={
            "meter_ids": meters,
            "date_range_start": "2026-03-01T00:00:00Z",
            "date_range_end": "2026-03-31T00:00:00Z",
            "programs": ["ELRP"],
            "page_size": 1000,
        },
    )
    assert all(r["programs"] == ["ELRP"] for r in response.json()["performance"])


def test_ground_truth_endpoints(server, http, profile):
    portfolio = server.portfolio
    meter_id = meters_where(server, profile, "good")[0]
    # no auth needed, not in the request log
    before = len(server.requests)
    events = httpx.get(
        f"{server.base_url}/_sandbox/ground_truth/events", params={"meter_id": meter_id}, timeout=10
    ).json()["events"]
    expected = event_truth(portfolio, [meter_id])
    assert len(events) == expected.height > 0
    assert events[0]["meter_event_id"] == expected["meter_event_id"][0]
    assert events[0]["true_delivered_kwh"] == expected["true_delivered_kwh"][0]
    assert events[0]["start"].endswith("Z")
    assert len(server.requests) == before
    rows = truth_intervals(http, [meter_id], "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z")
    assert rows.height == 96
    local = generate_intervals(portfolio, utc("2026-03-01"), utc("2026-03-02"), [meter_id])
    assert rows["counterfactual_kwh"].to_list() == local["counterfactual_kwh"].to_list()
    categories = http.get("/_sandbox/ground_truth/response_profile").json()["meters"]
    assert categories == profile
    unknown = http.post(
        "/_sandbox/ground_truth/intervals",
        json={"meter_ids": [str(uuid.uuid4())], "start": "2026-03-01", "end": "2026-03-02"},
    )
    assert unknown.status_code == 404


def test_no_data_at_or_after_the_anchor(server, http):
    meters = list(server.portfolio.meters)[:2]
    records = fetch_all(
        http,
        {
            "meter_ids": meters,
            "date_range_start": z(ANCHOR - timedelta(hours=1)),
            "date_range_end": z(ANCHOR + timedelta(days=2)),
        },
    )
    assert len(records) == 2 * 4
    assert max(r["start_date_time_utc"] for r in records) == z(ANCHOR - timedelta(minutes=15))
    assert all(r["final"] is False for r in records)


# --- CSV ---------------------------------------------------------------------------------------------------------


def test_csv_files_have_leap_header_and_the_right_rows(server, profile, tmp_path):
    portfolio = server.portfolio
    meters = meters_where(server, profile, "good")[:3] + meters_where(server, profile, "gaps")[:1]
    start, end = utc("2026-03-07"), utc("2026-03-10")
    paths = write_interval_csvs(portfolio, tmp_path, start, end, meters)
    assert [p.name for p in paths] == [
        "intervals_2026-03-07.csv",
        "intervals_2026-03-08.csv",
        "intervals_2026-03-09.csv",
    ]
    frame = generate_intervals(portfolio, start, end, meters)
    for path in paths:
        lines = path.read_text().splitlines()
        assert (
            lines[0]
            == ",".join(CSV_COLUMNS)
            == (
                "meter_id,interval_start_time_utc,interval_end_time_utc,energy_net_kwh,"
                "energy_consumed_kwh,energy_generated_kwh,final,region"
            )
        )
        day = datetime.fromisoformat(path.stem.removeprefix("intervals_")).replace(tzinfo=UTC)
        expected = frame.filter(
            (pl.col("interval_start") >= day) & (pl.col("interval_start") < day + timedelta(days=1))
        )
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == expected.height == len(lines) - 1
        per_meter = Counter(r["meter_id"] for r in rows)
        for meter_id in meters[:3]:
            assert per_meter[meter_id] == 96
        first = rows[0]
        assert first["interval_start_time_utc"] == z(day)
        assert first["interval_end_time_utc"] == z(day + timedelta(minutes=15))
        assert first["final"] in ("true", "false")
        for row in rows:
            net = float(row["energy_net_kwh"])
            assert (
                abs(net - (float(row["energy_consumed_kwh"]) - float(row["energy_generated_kwh"])))
                < 1e-9
            )
            assert (
                row["region"]
                == portfolio.meters[row["meter_id"]]["customer"]["state_or_province_code"]
            )
    grouped = write_interval_csvs(portfolio, tmp_path / "two", start, end, meters, days_per_file=2)
    assert [p.name for p in grouped] == ["intervals_2026-03-07.csv", "intervals_2026-03-09.csv"]
    total = sum(len(p.read_text().splitlines()) - 1 for p in grouped)
    assert total == frame.height
    assert (
        write_interval_csvs(portfolio, tmp_path / "late", ANCHOR, ANCHOR + timedelta(days=1)) == []
    )


def test_generation_is_fast(server):
    portfolio = build_portfolio(seed=3, n_meters=200, history_days=30, anchor=ANCHOR)
    import time

    generate_intervals(portfolio, ANCHOR - timedelta(days=1), ANCHOR)  # build the model
    began = time.perf_counter()
    frame = generate_intervals(portfolio, ANCHOR - timedelta(days=20), ANCHOR)
    elapsed = time.perf_counter() - began
    assert frame.height > 0.95 * 200 * 20 * 96
    # well above 1M rows/s on a quiet machine; keep a wide margin for a shared CI box
    assert frame.height / elapsed > 300_000
    assert np.isfinite(frame["kwh"].to_numpy()).all()
