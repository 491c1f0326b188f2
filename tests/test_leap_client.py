"""The Leap client over real HTTP against the sandbox server: pagination, retries, errors."""

from __future__ import annotations

import socket
from datetime import timedelta

import httpx
import pytest

from vpp_pipeline.leap import (
    LeapApiError,
    LeapClient,
    LeapConnectionError,
    LeapResponseError,
)


class SleepRecorder:
    """Records the waits the retry policy asks for, without waiting (keeps tests fast)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client_for(server, **kwargs) -> LeapClient:
    kwargs.setdefault("backoff_initial_s", 0.01)
    kwargs.setdefault("backoff_max_s", 0.05)
    return LeapClient(server.base_url, server.api_key, **kwargs)


def calls_to(server, path: str) -> list[dict]:
    return [r for r in server.requests if r["path"] == path]


def test_pagination_follows_next_page_token_across_several_pages(sandbox):
    before = len(calls_to(sandbox, "/v2/meters/search"))
    with client_for(sandbox) as client:
        meters = client.search_meters(page_size=10)
    ids = [m.meter_id for m in meters]
    assert len(ids) == len(set(ids)) == len(sandbox.portfolio.meters)
    pages = len(calls_to(sandbox, "/v2/meters/search")) - before
    assert pages == -(-len(ids) // 10) >= 7
    # Every page after the first carried the previous page's token.
    page_calls = calls_to(sandbox, "/v2/meters/search")[before:]
    assert "page_token" not in (page_calls[0]["json"] or {})
    assert all((c["json"] or {}).get("page_token") for c in page_calls[1:])


def test_enrollments_and_nominations_paginate(sandbox):
    with client_for(sandbox) as client:
        enrollments = client.search_enrollments(page_size=25)
        nominations = client.search_nominations(page_size=50)
    assert len(enrollments) == len(sandbox.portfolio.meters)
    assert nominations and all(n.nomination_kw >= 0 for n in nominations)


def test_429_then_success_honours_retry_after(sandbox):
    sandbox.faults.set("429", count=2, retry_after_seconds=7)
    sleep = SleepRecorder()
    with client_for(sandbox, sleep=sleep) as client:
        meters = client.search_meters()
    assert len(meters) == len(sandbox.portfolio.meters)
    assert sleep.waits == [7.0, 7.0]


def test_500s_until_attempts_run_out_raise_a_clear_error(sandbox):
    sandbox.faults.set("500", count=100)
    sleep = SleepRecorder()
    before = len(calls_to(sandbox, "/v2/meters/search"))
    with (
        client_for(sandbox, max_attempts=4, sleep=sleep) as client,
        pytest.raises(LeapApiError) as info,
    ):
        client.search_meters()
    err = info.value
    assert err.status == 500
    assert err.attempts == 4
    assert len(calls_to(sandbox, "/v2/meters/search")) - before == 4
    assert len(sleep.waits) == 3
    # Exponential backoff with jitter, capped.
    assert all(0 < w <= 0.05 for w in sleep.waits)
    message = str(err)
    assert "POST /v2/meters/search" in message
    assert "HTTP 500" in message and "after 4 attempts" in message
    assert "An error happened whilst processing your request" in message


def test_dispatch_500_carries_the_dispatch_envelope(sandbox):
    sandbox.faults.set("500", count=100, path_prefix="/v2/dispatch")
    end = sandbox.portfolio.anchor
    with (
        client_for(sandbox, max_attempts=2, sleep=SleepRecorder()) as client,
        pytest.raises(LeapApiError) as info,
    ):
        client.search_meter_dispatches(end - timedelta(days=3), end)
    assert info.value.envelope.style == "dispatch"
    assert info.value.envelope.code == "INTERNAL_SERVER_ERROR"


def test_wrong_key_is_403_and_not_retried(sandbox):
    before = len(calls_to(sandbox, "/v2/meters/search"))
    with (
        LeapClient(sandbox.base_url, "not-the-key", sleep=SleepRecorder()) as client,
        pytest.raises(LeapApiError) as info,
    ):
        client.search_meters()
    assert info.value.status == 403
    assert info.value.attempts == 1
    assert len(calls_to(sandbox, "/v2/meters/search")) - before == 1
    assert "HTTP 403" in str(info.value)


def test_missing_key_is_401(sandbox):
    response = httpx.post(f"{sandbox.base_url}/v2/meters/search", json={})
    assert response.status_code == 401


@pytest.mark.parametrize("body", ["truncated", "html", "schema"])
def test_malformed_response_raises_response_error(sandbox, body):
    sandbox.faults.set("malformed", count=1, malformed_body=body)
    with client_for(sandbox) as client, pytest.raises(LeapResponseError) as info:
        client.search_meters()
    assert "POST /v2/meters/search returned a malformed response" in str(info.value)


def test_400_from_leap_names_the_problem(sandbox):
    with client_for(sandbox) as client, pytest.raises(LeapApiError) as info:
        client.search_meters(page_size=501)
    assert info.value.status == 400
    assert info.value.attempts == 1
    assert "page_size" in str(info.value)


def test_forty_day_dispatch_search_is_split_into_two_calls(sandbox):
    end = sandbox.portfolio.anchor
    start = end - timedelta(days=40)
    before = len(calls_to(sandbox, "/v2/dispatch/meter/search"))
    with client_for(sandbox) as client:
        results = client.search_meter_dispatches(start, end)
    calls = calls_to(sandbox, "/v2/dispatch/meter/search")[before:]
    middle = start + timedelta(days=31)
    stamp = lambda d: f"{d:%Y-%m-%d}T00:00:00.000Z"  # noqa: E731
    assert [(c["json"]["start_date"], c["json"]["end_date"]) for c in calls] == [
        (stamp(start), stamp(middle)),
        (stamp(middle), stamp(end)),
    ]
    slots = [t for r in results for t in r.timeslots]
    assert slots, "the sandbox has dispatch history in the last 40 days"
    assert all(start <= t.start_time < end for t in slots)
    expected = {
        e.event_id
        for e in sandbox.portfolio.meter_events
        if start <= e.start_time < end and "5m" not in e.latest["dispatch_event_types"]
    }
    assert {t.meter_event_id for t in slots} == expected


def test_group_dispatch_search(sandbox):
    end = sandbox.portfolio.anchor
    with client_for(sandbox) as client:
        groups = client.search_group_dispatches(end - timedelta(days=60), end)
    assert groups and all(g.meter_ids for g in groups)


def test_timeout_is_retried_then_succeeds(sandbox):
    sandbox.faults.set("slow", count=1, delay_seconds=1.5)
    with client_for(sandbox, timeout_s=0.5) as client:
        meters = client.search_meters()
    assert len(meters) == len(sandbox.portfolio.meters)


def test_connection_refused_raises_after_bounded_attempts():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleep = SleepRecorder()
    with (
        LeapClient(f"http://127.0.0.1:{port}", "k", max_attempts=3, sleep=sleep) as client,
        pytest.raises(LeapConnectionError) as info,
    ):
        client.search_meters()
    assert info.value.attempts == 3 and len(sleep.waits) == 2
    assert "POST /v2/meters/search got no response after 3 attempts" in str(info.value)
    # names where it tried and the variable to fix
    assert f"from http://127.0.0.1:{port}" in str(info.value)
    assert info.value.reason_code == "LEAP_UNREACHABLE"
    assert "check LEAP_API_BASE_URL" in str(info.value)


def test_dispatch_pages_split_inside_a_meter_are_merged(sandbox):
    end = sandbox.portfolio.anchor
    start = end - timedelta(days=20)
    with client_for(sandbox) as client:
        single = client.search_meter_dispatches(start, end)
    sandbox.state.dispatch_page_limit = 5
    try:
        before = len(calls_to(sandbox, "/v2/dispatch/meter/search"))
        with client_for(sandbox) as client:
            paged = client.search_meter_dispatches(start, end)
        pages = len(calls_to(sandbox, "/v2/dispatch/meter/search")) - before
    finally:
        sandbox.state.dispatch_page_limit = 500
    assert pages > 3
    as_map = lambda rs: {r.meter_id: sorted(t.meter_event_id for t in r.timeslots) for r in rs}  # noqa: E731
    assert len({r.meter_id for r in paged}) == len(paged)  # one record per meter
    assert as_map(paged) == as_map(single)
