"""Poison deliveries against the whole dispatch path (receiver -> ops store -> real sensor evaluation ->
``dispatch_job`` -> recording site controller), and the operator's view of it (``vpp dispatch-status``).
Issue 11, "What was measured" items 2 and 4."""

from __future__ import annotations

import json
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from test_dispatch_flow import Stack, meter_note, plain_meters, puts, slot

from assets.dispatch import dispatch_retry_sensor
from vpp_pipeline.cli import main
from vpp_pipeline.leap.client import format_utc
from vpp_pipeline.sandbox.site_controller import SiteControllerServer


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def stack(tmp_path, sandbox, instance, ops_location):
    with SiteControllerServer(token="site-token") as site:
        s = Stack(tmp_path, sandbox, site, instance, ops_location)
        with s.receiver:
            yield s


def raw_post(stack, text: str):
    import httpx

    return httpx.post(
        stack.receiver.url,
        content=text.encode(),
        headers={"x-api-key": "test-webhook-key"},
        timeout=30,
    )


def test_poison_values_are_refused_and_later_deliveries_still_dispatch(stack, sandbox):
    """Infinity / NaN / 1e400 energy, out-of-range values, a 1970 start, a lone-surrogate meter id:
    each refused at the door (422, dead letter); the sensor, the job and the next delivery go on."""
    first, second = plain_meters(sandbox.portfolio, 2)
    poison = []
    for raw in ("Infinity", "NaN", "1e400", "-500", "1e308"):
        text = json.dumps(meter_note((first, [slot(energy_kw=123.0)])))
        poison.append(text.replace('"energy_kw": 123.0', f'"energy_kw": {raw}'))
    poison.append(json.dumps(meter_note((first, [slot(priority=10**30)]))))
    poison.append(json.dumps(meter_note((first, [slot(cap="no-cap-at-all")]))))
    poison.append(json.dumps(meter_note((first, [slot(hours=-1)]))))
    early = {**slot(), "start_time": 12345}
    poison.append(json.dumps(meter_note((first, [early]))))
    poison.append(json.dumps(meter_note((first, [slot()]))).replace(first, "\\ud800" + first[1:]))
    for text in poison:
        response = raw_post(stack, text)
        assert response.status_code == 422, (text[:200], response.text)
    assert len(stack.store.dead_letters()) == len(poison)
    assert stack.tick() == []  # nothing reached the inbox: no run

    good = slot(energy_kw=9.0)
    summary = stack.send_and_run(meter_note((second, [good])))
    assert summary["new_events"] == 1 and summary["delivered"] == 1
    (put,) = puts(stack.site)
    assert put["meter_id"] == second and put["json"]["target_kw"] == 9.0
    # the retry sensor evaluates cleanly: nothing owed, nothing poisoned
    resources = {k: stack.resources[k] for k in ("ops_store", "site_controller")}
    with dg.build_sensor_context(instance=stack.instance, resources=resources) as context:
        result = dispatch_retry_sensor(context)
    assert not getattr(result, "run_requests", None)


def test_valid_delivery_sent_with_a_poison_one_is_dispatched(stack, sandbox):
    """A lone-surrogate delivery and a valid one arrive together, many times over: every valid event
    reaches its site, in one sensor tick."""
    meters = plain_meters(sandbox.portfolio, 4)
    goods = [meter_note((meters[i % 4], [slot(start_h=i)])) for i in range(8)]
    bad = json.dumps(meter_note((meters[0], [slot()]))).replace(meters[0], "\\udc00")
    bodies = [json.dumps(g) for g in goods] + [bad] * 8
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda t: raw_post(stack, t).status_code, bodies))
    assert statuses == [200] * 8 + [422] * 8
    summaries = stack.tick()
    assert sum(s["delivered"] for s in summaries) == 8
    sent = {(p["meter_id"], p["schedule_id"]) for p in puts(stack.site)}
    expected = {
        (g["meter_dispatches"][0]["meter_id"], g["meter_dispatches"][0]["timeslots"][0][key])
        for g in goods
        for key in ("meter_event_id",)
    }
    assert sent == expected


# --- vpp dispatch-status ------------------------------------------------------------------------------


def status_output(stack, capsys, monkeypatch) -> str:
    if stack.db.startswith("postgresql"):
        monkeypatch.setenv("VPP_OPS_DB_URL", stack.db)
    else:
        monkeypatch.delenv("VPP_OPS_DB_URL", raising=False)
        monkeypatch.setenv("VPP_OPS_DB_PATH", stack.db)
    capsys.readouterr()
    assert main(["dispatch-status", "--limit", "50"]) == 0
    return capsys.readouterr().out


def _at(when: datetime) -> str:
    return format_utc(when)


def test_dispatch_status_shows_times_latency_and_ended_events(stack, sandbox, capsys, monkeypatch):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    now = datetime.now(UTC)
    ended = {
        **slot(),
        "start_time": _at(now - timedelta(hours=3)),
        "end_time": _at(now - timedelta(hours=2)),
    }
    running = {
        **slot(),
        "start_time": _at(now - timedelta(minutes=30)),
        "end_time": _at(now + timedelta(hours=1)),
    }
    upcoming = slot(start_h=5)
    for event in (ended, running, upcoming):
        stack.send_and_run(meter_note((meter, [event])))
    out = status_output(stack, capsys, monkeypatch)
    lines = out.splitlines()

    def line_of(event) -> str:
        return next(line for line in lines if event["meter_event_id"] in line and "rev" in line)

    assert line_of(ended).split("  ")[6].startswith("ENDED")
    assert "ACTIVE" in line_of(running) and "ENDED" not in line_of(running)
    assert "SCHEDULED" in line_of(upcoming)
    # per command: received, planned, sent, acknowledged and the latency, in that order
    timing = [line for line in lines if line.strip().startswith("received ")]
    assert len(timing) >= 2
    delivered = [t for t in timing if "latency " in t and "latency -" not in t]
    assert delivered, out
    for text in delivered:
        stamps = [
            datetime.fromisoformat(text.split(label + " ")[1].split()[0].replace("Z", "+00:00"))
            for label in ("received", "planned", "sent", "acknowledged")
        ]
        assert stamps == sorted(stamps)
        latency = float(text.split("latency ")[1].split()[0])
        assert latency == pytest.approx((stamps[3] - stamps[0]).total_seconds(), abs=0.002)
        assert 0 <= latency < 60


def test_dispatch_status_survives_any_row(tmp_path, sandbox, instance, capsys, monkeypatch):
    """Rows an older version stored (non-finite energy as JSON ``Infinity``, a timeslot that is not
    JSON, a timeslot without fields): every other event is still shown."""
    with SiteControllerServer(token="site-token") as site:
        stack = Stack(tmp_path, sandbox, site, instance)
        with stack.receiver:
            meters = plain_meters(sandbox.portfolio, 4)
            events = [slot() for _ in meters]
            for meter, event in zip(meters, events, strict=True):
                stack.send_and_run(meter_note((meter, [event])))
    keys = [f"meter:{e['meter_event_id']}" for e in events]
    with sqlite3.connect(stack.db) as db:
        timeslot = json.loads(
            db.execute(
                "SELECT timeslot FROM dispatch_events WHERE event_key = ?", (keys[0],)
            ).fetchone()[0]
        )
        timeslot["energy_kw"] = float("inf")
        db.execute(
            "UPDATE dispatch_events SET timeslot = ? WHERE event_key = ?",
            (json.dumps(timeslot), keys[0]),
        )
        db.execute(
            "UPDATE dispatch_events SET timeslot = 'not json{' WHERE event_key = ?", (keys[1],)
        )
        db.execute("UPDATE dispatch_events SET timeslot = '{}' WHERE event_key = ?", (keys[2],))
        db.execute(
            "UPDATE dispatch_actions SET received_at = 'garbage' WHERE event_key = ?", (keys[3],)
        )
    out = status_output(stack, capsys, monkeypatch)
    for key in keys:
        assert key in out
    assert "energy_kw=inf" in out
    assert "unreadable" in out and "UNKNOWN (no times)" in out
    assert str(uuid.UUID(events[3]["meter_event_id"])) in out
