"""Integration tests of the Leap sandbox over real HTTP (httpx against a running SandboxServer)."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from vpp_pipeline.sandbox import DEFAULT_API_KEY, TARIFF_CODES, SandboxServer, build_portfolio
from vpp_pipeline.sandbox.catalog import LOAD_TYPES, PROGRAMS

ANCHOR = datetime(2025, 8, 1, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts).astimezone(UTC)


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer(seed=7, anchor=ANCHOR) as server:
        yield server


@pytest.fixture
def client(sandbox):
    sandbox.faults.clear()
    sandbox.state.dispatch_page_limit = 500
    with httpx.Client(base_url=sandbox.base_url, headers=AUTH, timeout=10) as c:
        yield c
    sandbox.faults.clear()
    sandbox.state.dispatch_page_limit = 500


def all_meters(client: httpx.Client, path: str = "/v2/meters/search", **body) -> list[dict]:
    out, token = [], None
    while True:
        response = client.post(path, json={**body, **({"page_token": token} if token else {})})
        assert response.status_code == 200, response.text
        data = response.json()
        out.extend(data["meters"])
        token = data.get("next_page_token")
        if not token:
            return out


def all_dispatch(
    client: httpx.Client, level: str, start: datetime, end: datetime, **extra
) -> list[tuple[dict, dict]]:
    """(result without timeslots, timeslot) pairs over all pages of one window."""
    pairs, token = [], None
    while True:
        body = {"start_date": z(start), "end_date": z(end), **extra}
        if token:
            body["page_token"] = token
        response = client.post(f"/v2/dispatch/{level}/search", json=body)
        assert response.status_code == 200, response.text
        data = response.json()
        for result in data["results"]:
            head = {k: v for k, v in result.items() if k != "timeslots"}
            pairs.extend((head, ts) for ts in result["timeslots"])
        token = data["next_page_token"]
        if token is None:
            return pairs


def history(client: httpx.Client, level: str, **extra) -> list[tuple[dict, dict]]:
    """The whole dispatch history in 30-day windows."""
    start, end = ANCHOR - timedelta(days=95), ANCHOR + timedelta(days=5)
    pairs = []
    while start < end:
        stop = min(start + timedelta(days=30), end)
        pairs.extend(all_dispatch(client, level, start, stop, **extra))
        start = stop
    return pairs


# --- determinism ---------------------------------------------------------------------------------------------


def _dump(p) -> str:
    events = [
        (e.level, e.event_id, [(r.published_at.isoformat(), r.timeslot) for r in e.revisions])
        for e in p.meter_events + p.group_events
    ]
    return json.dumps(
        [p.meters, p.enrollments, p.nominations, p.market_groups, events], sort_keys=True
    )


def test_same_seed_same_portfolio_different_seed_different(client):
    assert _dump(build_portfolio(7, anchor=ANCHOR)) == _dump(build_portfolio(7, anchor=ANCHOR))
    assert _dump(build_portfolio(7, anchor=ANCHOR)) != _dump(build_portfolio(8, anchor=ANCHOR))
    served = all_meters(client)
    with (
        SandboxServer(seed=7, anchor=ANCHOR) as twin,
        httpx.Client(base_url=twin.base_url, headers=AUTH) as c2,
    ):
        assert all_meters(c2) == served
    with (
        SandboxServer(seed=8, anchor=ANCHOR) as other,
        httpx.Client(base_url=other.base_url, headers=AUTH) as c3,
    ):
        other_meters = all_meters(c3)
        assert {m["meter_id"] for m in other_meters}.isdisjoint({m["meter_id"] for m in served})


# --- portfolio content ---------------------------------------------------------------------------------------


def test_portfolio_mix(client):
    meters = all_meters(client)
    assert len(meters) >= 60
    regions = Counter(m["transmission_region"] for m in meters)
    assert 0.6 <= regions["CAISO"] / len(meters) <= 0.8
    assert regions["NYISO"] > 0 and regions["ERCOT"] > 0
    batteries = [m for m in meters if "BATTERY_STORAGE" in m["load_types"]]
    assert 0.25 <= len(batteries) / len(meters) <= 0.42
    for m in batteries:
        assert m["device"]["device_type"] == "BATTERY"
        assert m["device"]["battery_power_capacity_kw"] > 0
        assert (
            m["device"]["battery_energy_capacity_kwh"]
            > m["device"]["battery_power_capacity_kw"] * 0.99
        )
        device = m["site"]["site_devices"][0]
        assert device["device_type"] == "BATTERY"
        assert (
            0
            <= device["battery_min_state_of_charge_percentage"]
            < device["battery_max_state_of_charge_percentage"]
        )
    assert any(m["meter_type"] == "SUBMETER" for m in batteries)
    assert Counter(m["meter_type"] for m in meters).most_common(1)[0][0] == "UTILITY_METER"
    zones = {
        "CAISO": {"DLAP_PGAE-APND", "DLAP_SCE-APND", "DLAP_SDGE-APND"},
        "NYISO": {"N.Y.C."},
        "ERCOT": {"LZ_HOUSTON", "LZ_NORTH"},
    }
    states = {"CAISO": "CA", "NYISO": "NY", "ERCOT": "TX"}
    for m in meters:
        assert m["customer_classification"] == "COMMERCIAL"
        assert set(m["load_types"]) <= set(LOAD_TYPES)
        assert m["utility"]["tariff"] in TARIFF_CODES
        assert m["site"]["load_zone"] in zones[m["transmission_region"]]
        assert m["customer"]["state_or_province_code"] == states[m["transmission_region"]]
        assert m["customer"]["end_customer_company_name"]
        assert m["audit"]["updated_at"].endswith("+00:00")
    assert len({m["partner_reference"] for m in meters}) == len(meters)


def test_enrollments_and_nominations(client, sandbox):
    enrollments = all_meters(client, "/v2/meters/enrollments/search")
    assert len(enrollments) == len(sandbox.portfolio.meters)
    statuses = Counter(e["global_enrollment_status"] for e in enrollments)
    assert statuses["ACTIVE"] > 0.8 * len(enrollments)
    assert statuses["PENDING"] and statuses["ELIGIBLE"]
    prefs = {
        p["participation_preference"] for e in enrollments for p in e["participation_preferences"]
    }
    assert {"PARTICIPATE", "IDLE", "DISENROLL"} <= prefs
    for e in enrollments:
        for entry in e["program_enrollment"]:
            assert (
                PROGRAMS[entry["program_identifier"]].transmission_region
                == e["transmission_region"]
            )
            if entry["enrollment_status"] == "ACTIVE":
                assert entry["market_group_id"] and entry["market_group_name"]

    response = client.post(
        "/v2/meters/nominations/search",
        json={"start_time": z(ANCHOR - timedelta(days=90)), "end_time": z(ANCHOR), "page_size": 50},
    )
    assert response.status_code == 200
    first = response.json()
    assert len(first["nominations"]) == 50 and first["next_page_token"]
    nominations, token = list(first["nominations"]), first["next_page_token"]
    while token:
        page = client.post("/v2/meters/nominations/search", json={"page_token": token}).json()
        nominations.extend(page["nominations"])
        token = page["next_page_token"]
    assert {n["source"] for n in nominations} == {"LEAP", "PARTNER"}
    assert any(n["end_time"] is None for n in nominations) and any(
        n["end_time"] for n in nominations
    )
    assert all(n["nomination_kw"] == round(n["nomination_kw"], 2) > 0 for n in nominations)


# --- auth and validation -------------------------------------------------------------------------------------


def test_auth(sandbox):
    url = sandbox.base_url
    r = httpx.post(f"{url}/v2/meters/search", json={})
    assert r.status_code == 401 and r.json() == {
        "title": "Unauthorized",
        "status": 401,
        "details": {},
    }
    r = httpx.post(f"{url}/v2/meters/search", json={}, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    r = httpx.post(f"{url}/v2/meters/search", json={}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403 and r.json()["status"] == 403
    body = {"start_date": z(ANCHOR - timedelta(days=1)), "end_date": z(ANCHOR)}
    r = httpx.post(f"{url}/v2/dispatch/meter/search", json=body)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    r = httpx.post(
        f"{url}/v2/dispatch/group/search", json=body, headers={"Authorization": "Bearer wrong"}
    )
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"


def test_meters_validation_envelope(client):
    r = client.post("/v2/meters/search", json={"page_size": 501})
    assert r.status_code == 400
    body = r.json()
    assert body["title"] == "Bad Request" and body["status"] == 400
    assert "page_size" in body["details"]["error"] and "501" in body["details"]["error"]
    assert client.post("/v2/meters/search", json={"page_size": 0}).status_code == 400
    r = client.post("/v2/meters/search", json={"meter_ids": ["abcdef"]})
    assert r.status_code == 400 and r.json() == {
        "title": "Meter id is not a UUID",
        "status": 400,
        "details": {"meter_id": "abcdef"},
    }
    r = client.post(
        "/v2/meters/search", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "JSON" in r.json()["details"]["error"]
    r = client.post("/v2/meters/search", json={"page_token": "nope"})
    assert r.status_code == 400 and "page_token" in r.json()["details"]["error"]
    r = client.post("/v2/meters/nominations/search", json={"program_identifier": "NOPE"})
    assert r.status_code == 400 and "program_identifier" in r.json()["details"]["error"]


def test_dispatch_validation_envelope(client):
    r = client.post(
        "/v2/dispatch/meter/search",
        json={"start_date": z(ANCHOR - timedelta(days=32)), "end_date": z(ANCHOR)},
    )
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "BAD_REQUEST" and body["error_code"] == "DISPATCH_INVALID_INPUT"
    assert "31 days" in body["message"]
    r = client.post("/v2/dispatch/group/search", json={"end_date": z(ANCHOR)})
    assert r.status_code == 400 and "start_date" in r.json()["message"]
    r = client.post(
        "/v2/dispatch/meter/search", json={"start_date": z(ANCHOR), "end_date": z(ANCHOR)}
    )
    assert r.status_code == 400 and "after start_date" in r.json()["message"]
    window = {"start_date": z(ANCHOR - timedelta(days=3)), "end_date": z(ANCHOR)}
    r = client.post("/v2/dispatch/meter/search", json={**window, "page_token": "not-a-uuid"})
    assert r.status_code == 400 and "page_token" in r.json()["message"]
    r = client.post(
        "/v2/dispatch/meter/search",
        json={**window, "page_token": "3fa85f64-5717-4562-b3fc-2c963f66afa6"},
    )
    assert r.status_code == 400 and "unknown" in r.json()["message"]
    r = client.post("/v2/dispatch/meter/search", json={**window, "meter_ids": ["x"]})
    assert r.status_code == 400 and "meter_ids" in r.json()["message"]


# --- pagination ----------------------------------------------------------------------------------------------


def test_meter_pagination_returns_each_meter_once(client, sandbox):
    pages, token, seen = 0, None, []
    while True:
        body = {"page_size": 10, **({"page_token": token} if token else {})}
        data = client.post("/v2/meters/search", json=body).json()
        assert len(data["meters"]) <= 10
        seen.extend(m["meter_id"] for m in data["meters"])
        pages += 1
        token = data.get("next_page_token")
        if not token:
            break
    assert pages == -(-len(sandbox.portfolio.meters) // 10)
    assert len(seen) == len(set(seen)) == len(sandbox.portfolio.meters)


def test_dispatch_pagination_by_timeslot(client, sandbox):
    start, end = ANCHOR - timedelta(days=30), ANCHOR
    one_page = all_dispatch(client, "meter", start, end)
    assert len(one_page) > 25
    sandbox.state.dispatch_page_limit = 7
    first = client.post(
        "/v2/dispatch/meter/search", json={"start_date": z(start), "end_date": z(end)}
    ).json()
    assert sum(len(r["timeslots"]) for r in first["results"]) == 7 and first["next_page_token"]
    paged = all_dispatch(client, "meter", start, end)
    ids = [ts["meter_event_id"] for _, ts in paged]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(ts["meter_event_id"] for _, ts in one_page)


# --- faults --------------------------------------------------------------------------------------------------


def test_fault_next_two_requests_429_then_success(client, sandbox):
    r = httpx.put(
        f"{sandbox.base_url}/_sandbox/faults",
        json={"mode": "429", "count": 2, "retry_after_seconds": 3},
    )
    assert r.status_code == 200 and r.json()["rules"][0]["count"] == 2
    for _ in range(2):
        r = client.post("/v2/meters/search", json={"page_size": 1})
        assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert client.post("/v2/meters/search", json={"page_size": 1}).status_code == 200
    statuses = [
        e["status"] for e in httpx.get(f"{sandbox.base_url}/_sandbox/requests").json()["requests"]
    ][-3:]
    assert statuses == [429, 429, 200]
    assert httpx.delete(f"{sandbox.base_url}/_sandbox/faults").json()["rules"] == []


def test_fault_modes_in_process(client, sandbox):
    window = {"start_date": z(ANCHOR - timedelta(days=2)), "end_date": z(ANCHOR)}
    sandbox.faults.set("500", count=1)
    r = client.post("/v2/meters/search", json={})
    assert r.status_code == 500 and r.text == "An error happened whilst processing your request"
    sandbox.faults.set("503", count=1, path_prefix="/v2/dispatch")
    assert client.post("/v2/meters/search", json={"page_size": 1}).status_code == 200
    r = client.post("/v2/dispatch/meter/search", json=window)
    assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE"
    sandbox.faults.set("malformed", count=1)
    r = client.post("/v2/dispatch/meter/search", json=window)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    sandbox.faults.set("slow", count=1, delay_seconds=0.3)
    t0 = time.monotonic()
    assert client.post("/v2/dispatch/meter/search", json=window).status_code == 200
    assert time.monotonic() - t0 >= 0.3
    # probability: reproducible by seed
    outcomes = []
    for _ in range(2):
        sandbox.faults.set("500", probability=0.5, seed=42)
        outcomes.append(
            [client.post("/v2/meters/search", json={"page_size": 1}).status_code for _ in range(12)]
        )
    assert outcomes[0] == outcomes[1] and {200, 500} == set(outcomes[0])
    r = httpx.put(f"{sandbox.base_url}/_sandbox/faults", json={"mode": "teapot"})
    assert r.status_code == 400 and "mode" in r.json()["error"]


# --- admin ---------------------------------------------------------------------------------------------------


def test_health(sandbox):
    assert httpx.get(f"{sandbox.base_url}/_sandbox/health").json() == {
        "status": "ok",
        "seed": 7,
        "meters": 72,
    }


def test_patch_meter_bumps_updated_at(client, sandbox):
    meter = client.post("/v2/meters/search", json={"page_size": 1}).json()["meters"][0]
    before = parse(meter["audit"]["updated_at"])
    r = httpx.patch(
        f"{sandbox.base_url}/_sandbox/meters/{meter['meter_id']}",
        json={"utility": {"tariff": "PGE-B20"}, "load_types": ["HVAC", "EV_CHARGING"]},
    )
    assert r.status_code == 200
    after = client.post("/v2/meters/search", json={"meter_ids": [meter["meter_id"]]}).json()[
        "meters"
    ][0]
    assert after["utility"]["tariff"] == "PGE-B20"
    assert (
        after["utility"]["utility_name"] == meter["utility"]["utility_name"]
    )  # deep merge keeps siblings
    assert after["load_types"] == ["HVAC", "EV_CHARGING"]
    assert parse(after["audit"]["updated_at"]) > before
    changed = client.post(
        "/v2/meters/search", json={"last_modified_date_time": after["audit"]["updated_at"]}
    )
    assert [m["meter_id"] for m in changed.json()["meters"]] == [meter["meter_id"]]
    enrollment = client.post(
        "/v2/meters/enrollments/search", json={"meter_ids": [meter["meter_id"]]}
    ).json()
    assert enrollment["meters"][0]["load_types"] == ["HVAC", "EV_CHARGING"]
    assert (
        httpx.patch(
            f"{sandbox.base_url}/_sandbox/meters/{'0' * 8}-0000-4000-8000-{'0' * 12}", json={}
        ).status_code
        == 404
    )


# --- dispatch history ----------------------------------------------------------------------------------------


def test_dispatch_history(client, sandbox):
    meter_pairs = history(client, "meter")
    group_pairs = history(client, "group")
    starts = [parse(ts["start_time"]) for _, ts in meter_pairs]
    assert max(starts) - min(starts) >= timedelta(days=60)
    assert min(starts) <= ANCHOR - timedelta(days=60) and max(starts) >= ANCHOR
    timeslots = [ts for _, ts in meter_pairs]
    assert any(ts["cancelled"] for ts in timeslots)
    assert any(ts["energy_kw"] is None for ts in timeslots)
    assert any(ts["dispatch_event_types"] == ["day-ahead", "capacity-test"] for ts in timeslots)
    assert any(ts["dispatch_event_types"] == ["hour-ahead"] for ts in timeslots)
    assert not any("5m" in ts["dispatch_event_types"] for ts in timeslots)
    assert all(ts["dispatch_event_types"] for ts in timeslots) and all(
        "communication_test" in ts for ts in timeslots
    )
    assert all(ts["start_time"].endswith(".000Z") for ts in timeslots)
    assert group_pairs and all(
        head["meter_ids"] and "market_group_event_id" in ts for head, ts in group_pairs
    )

    # updates: the search serves the latest of several revisions
    served = {ts["meter_event_id"]: ts for ts in timeslots}
    updated = [
        e
        for e in sandbox.portfolio.meter_events
        if len(e.revisions) > 1 and not e.latest["cancelled"]
    ]
    assert updated
    for event in updated:
        if event.event_id in served:
            assert served[event.event_id] == event.latest != event.revisions[0].timeslot

    # several events per meter, only for meters enrolled (ACTIVE) in the program
    enrolled = {
        (m["meter_id"], pe["program_identifier"])
        for m in all_meters(client, "/v2/meters/enrollments/search")
        for pe in m["program_enrollment"]
        if pe["enrollment_status"] == "ACTIVE"
    }
    for head, ts in meter_pairs:
        assert (head["meter_id"], ts["programs"][0]) in enrolled
    per_meter = Counter(head["meter_id"] for head, _ in meter_pairs)
    assert sum(1 for n in per_meter.values() if n >= 3) >= 30

    # real-time events only on request; voluntary filter
    rt = history(client, "meter", exclude_real_time_events=False)
    assert len(rt) > len(meter_pairs) and any("5m" in ts["dispatch_event_types"] for _, ts in rt)
    no_vol = history(client, "meter", exclude_voluntary_events=True)
    assert no_vol and not any(ts["is_voluntary"] for _, ts in no_vol)
