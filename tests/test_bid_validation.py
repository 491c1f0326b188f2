"""Every Leap bid rule broken on purpose: pure validation and the sandbox over real HTTP."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from vpp_pipeline.bidding import validation as v
from vpp_pipeline.bidding.endpoints import BIDS_PATH
from vpp_pipeline.bidding.market import (
    bid_deadline,
    next_biddable_day,
    trading_day_hours,
    trading_day_of,
)
from vpp_pipeline.bidding.submission import meter_batches, submit_bids
from vpp_pipeline.leap import LeapApiError, LeapClient

NOW = datetime(2026, 12, 1, 14, tzinfo=UTC)
DAY = date(2026, 12, 3)
START, END = trading_day_hours(DAY)[17]
METER = "00000000-0000-4000-8000-000000000001"


def bid(**changes) -> dict:
    base = {
        "meter_id": METER,
        "start_time": v.format_utc(START),
        "end_time": v.format_utc(END),
        "curve": [{"quantity_in_kw": 40, "price": 0.18}, {"quantity_in_kw": 80, "price": 0.24}],
    }
    return {**base, **changes}


BROKEN = {
    v.BID_CURVE_NOT_ASCENDING: [
        bid(curve=[{"quantity_in_kw": 80, "price": 0.18}, {"quantity_in_kw": 40, "price": 0.24}])
    ],
    v.BID_PRICE_OUT_OF_RANGE: [bid(curve=[{"quantity_in_kw": 40, "price": 1.5}])],
    v.BID_QUANTITY_NOT_POSITIVE: [bid(curve=[{"quantity_in_kw": 0, "price": 0.2}])],
    v.BID_NOT_HOURLY: [bid(end_time=v.format_utc(START + timedelta(minutes=30)))],
    v.BID_TIME_NOT_UTC: [bid(start_time="2026-12-03T09:00:00-08:00")],
    v.BID_DUPLICATE_TIMESLOT: [bid(), bid()],
    v.BID_INVALID_FIELD: [bid(curve=None)],
    v.BID_TOO_MANY_METERS: [bid(meter_id=f"00000000-0000-4000-8000-{i:012d}") for i in range(101)],
}


@pytest.mark.parametrize("code", sorted(BROKEN))
def test_each_rule_has_its_reason_code(code):
    problems = v.validate_bids(BROKEN[code], now=NOW)
    assert code in {p.reason_code for p in problems}


def test_valid_bids_and_cancels_pass():
    assert v.validate_bids([bid(), bid(start_time=v.format_utc(END),
                            end_time=v.format_utc(END + timedelta(hours=1)), curve=[])], now=NOW) == []  # fmt: skip


def test_too_late_after_the_24_hour_deadline():
    deadline = bid_deadline(DAY)
    assert v.validate_bids([bid()], now=deadline) == []
    late = v.validate_bids([bid()], now=deadline + timedelta(seconds=1))
    assert [p.reason_code for p in late] == [v.BID_TOO_LATE]


def test_pipeline_rules_against_bid_inputs():
    key = (METER, v.format_utc(START))
    problems = v.check_against_inputs(
        [bid()], {key: {"available_kw": 60.0, "opportunity_cost_usd_per_kwh": 0.2}}
    )
    assert {p.reason_code for p in problems} == {
        v.BID_QUANTITY_ABOVE_AVAILABLE,
        v.BID_PRICE_BELOW_OPPORTUNITY_COST,
    }


def test_batches_hold_at_most_100_meters_and_keep_a_meter_together():
    bids = [bid(meter_id=f"m{i}", start_time=f"h{h}") for i in range(250) for h in range(3)]
    batches = meter_batches(bids)
    assert [len({b["meter_id"] for b in batch}) for batch in batches] == [100, 100, 50]
    assert sum(len(b) for b in batches) == 750


# --- over real HTTP -----------------------------------------------------------------------------


def _sandbox_bid(sandbox, **changes) -> dict:
    meter_id = sorted(sandbox.portfolio.meters)[0]
    day = next_biddable_day(datetime.now(UTC))
    start, end = trading_day_hours(day)[17]
    return (
        bid(meter_id=meter_id, start_time=v.format_utc(start), end_time=v.format_utc(end)) | changes
    )


@pytest.mark.parametrize("code", sorted(BROKEN))
def test_sandbox_rejects_each_broken_rule(sandbox, code):
    good = _sandbox_bid(sandbox)
    bids = [
        {**b, "meter_id": b["meter_id"] if code == v.BID_TOO_MANY_METERS else good["meter_id"],
         "start_time": good["start_time"] if b["start_time"] == bid()["start_time"] else b["start_time"],
         "end_time": good["end_time"] if b["end_time"] == bid()["end_time"] else b["end_time"]}
        for b in BROKEN[code]
    ]  # fmt: skip
    if code == v.BID_NOT_HOURLY:
        bids[0]["end_time"] = v.format_utc(v.parse_utc(good["start_time"]) + timedelta(minutes=30))
    response = httpx.post(
        sandbox.base_url + BIDS_PATH,
        json={"bids": bids},
        headers={"Authorization": f"Bearer {sandbox.api_key}"},
    )
    assert response.status_code == 400
    details = response.json()["details"]
    assert code in details["reason_codes"]
    assert all({"reason_code", "message"} <= set(e) for e in details["errors"])


def test_sandbox_rejects_late_bids_and_unknown_meters(sandbox):
    # The trading day that holds "now" has already started, so any of its hours is late
    # whatever the time of day (tomorrow's UTC date is still biddable before 08:00 UTC).
    start, end = trading_day_hours(trading_day_of(datetime.now(UTC)))[5]
    late = _sandbox_bid(sandbox, start_time=v.format_utc(start), end_time=v.format_utc(end))
    unknown = _sandbox_bid(sandbox, meter_id="00000000-0000-4000-8000-00000000beef")
    with LeapClient(sandbox.base_url, sandbox.api_key) as client:
        for body, code in ((late, v.BID_TOO_LATE), (unknown, v.BID_UNKNOWN_METER)):
            with pytest.raises(LeapApiError) as caught:
                client.post_json(BIDS_PATH, {"bids": [body]})
            assert caught.value.status == 400
            assert code in caught.value.envelope.details["reason_codes"]


def test_sandbox_stores_replaces_and_cancels(private_sandbox):
    server = private_sandbox
    first = _sandbox_bid(server)
    admin = server.base_url + "/_sandbox/bids"
    with LeapClient(server.base_url, server.api_key) as client:
        report = submit_bids(client, [first])
        assert report.statuses == {"PLACED": 1}
        stored = httpx.get(admin, params={"meter_id": first["meter_id"]}).json()["bids"]
        assert [b["curve"] for b in stored] == [first["curve"]]
        newer = first | {"curve": [{"quantity_in_kw": 10, "price": 0.5}]}
        assert submit_bids(client, [newer]).statuses == {"REPLACED": 1}
        stored = httpx.get(admin, params={"meter_id": first["meter_id"]}).json()["bids"]
        assert [(b["curve"], b["revision"]) for b in stored] == [(newer["curve"], 2)]
        assert submit_bids(client, [first | {"curve": []}]).statuses == {"CANCELLED": 1}
        assert httpx.get(admin).json()["bids"] == []


def test_client_refuses_to_send_invalid_bids(private_sandbox):
    with (
        LeapClient(private_sandbox.base_url, private_sandbox.api_key) as client,
        pytest.raises(v.BidValidationError) as caught,
    ):
        submit_bids(
            client, [_sandbox_bid(private_sandbox, curve=[{"quantity_in_kw": 5, "price": 2}])]
        )
    assert caught.value.reason_codes == {v.BID_PRICE_OUT_OF_RANGE}
    assert not [r for r in private_sandbox.requests if r["path"] == BIDS_PATH]


def test_submission_batches_over_http_and_retries(private_sandbox):
    server = private_sandbox
    meters = sorted(server.portfolio.meters)
    day = next_biddable_day(datetime.now(UTC))
    bids = [
        bid(meter_id=m, start_time=v.format_utc(s), end_time=v.format_utc(e))
        for m in meters for s, e in trading_day_hours(day)[:2]
    ]  # fmt: skip
    server.faults.configure({"mode": "503", "count": 1, "path_prefix": BIDS_PATH})
    with LeapClient(server.base_url, server.api_key, backoff_initial_s=0.01) as client:
        report = submit_bids(client, bids, max_meters=30)
    calls = [r for r in server.requests if r["path"] == BIDS_PATH]
    assert report.calls == -(-len(meters) // 30)
    assert len(calls) == report.calls + 1  # one retried 503
    assert all(len({b["meter_id"] for b in c["json"]["bids"]}) <= 30 for c in calls)
    assert report.statuses == {"PLACED": len(bids)}
