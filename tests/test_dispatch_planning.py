"""Pure dispatch planning (no I/O): shares, targets, priority overlaps, diffs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vpp_pipeline.dispatch.notifications import NotificationError, parse_notification
from vpp_pipeline.dispatch.planning import diff_schedules, plan_meter, split_event
from vpp_pipeline.ops import SiteInfo

T0 = datetime(2030, 7, 21, tzinfo=UTC)
NOW = T0 - timedelta(days=1)


def event(event_id="e1", *, level="meter", meters=("m1",), start_h=0, hours=1, energy=8.0,
          nomination=10.0, priority=2, voluntary=False, cap="up-to-site-load", cancelled=False,
          test=False, programs=("CCA",)):  # fmt: skip
    return {
        "event_key": f"{level}:{event_id}",
        "level": level,
        "event_id": event_id,
        "meter_ids": list(meters),
        "timeslot": {
            "start_time": (T0 + timedelta(hours=start_h)).isoformat(),
            "end_time": (T0 + timedelta(hours=start_h + hours)).isoformat(),
            "cancelled": cancelled,
            "energy_kw": energy,
            "nomination_kw": nomination,
            "performance_compensation_cap": cap,
            "priority": priority,
            "is_voluntary": voluntary,
            "dispatch_event_types": ["day-ahead"],
            "programs": list(programs),
        },
        "integration_test": test,
        "revision": 1,
    }


def site(meter_id, battery=None, cca=None):
    noms = (("CCA", T0 - timedelta(days=30), None, cca),) if cca else ()
    return SiteInfo(meter_id, battery, noms)


def test_group_split_proportional_and_unknown_reported():
    sites = {"a": site("a", cca=30.0), "b": site("b", cca=10.0)}
    shares, unknown = split_event(event(level="group", meters=("a", "b", "x"), energy=40.0), sites)
    assert unknown == ["x"]
    assert {s.meter_id: s.target_kw for s in shares} == {"a": 30.0, "b": 10.0}
    assert {s.meter_id: s.nomination_kw for s in shares} == {"a": 7.5, "b": 2.5}


def test_group_split_equal_without_nominations():
    shares, _ = split_event(
        event(level="group", meters=("a", "b"), energy=10.0), {"a": site("a"), "b": site("b")}
    )
    assert [s.target_kw for s in shares] == [5.0, 5.0]


@pytest.mark.parametrize(
    ("energy", "nomination", "cap", "battery", "expected"),
    [
        (12.0, 10.0, "up-to-nomination", None, 10.0),
        (12.0, 10.0, "up-to-site-load", None, 12.0),
        (None, 10.0, "grid-exports-allowed", 250.0, 250.0),
        (None, 10.0, "up-to-nomination", 250.0, 10.0),
        (None, 10.0, "up-to-site-load", None, 10.0),
        (None, None, "up-to-site-load", None, None),
    ],
)
def test_targets(energy, nomination, cap, battery, expected):
    (share,), _ = split_event(
        event(energy=energy, nomination=nomination, cap=cap), {"m1": site("m1", battery)}
    )
    assert share.target_kw == expected


def test_overlap_splits_the_loser_and_ignores_cancelled_and_ended():
    sites = {"m1": site("m1")}
    evs = [event("low", start_h=0, hours=4, priority=3), event("high", start_h=1, hours=1, priority=1),
           event("gone", start_h=0, hours=4, priority=1, cancelled=True)]  # fmt: skip
    shares = [s for e in evs for s in split_event(e, sites)[0]]
    plan = {
        s.schedule_id: (s.payload["start_time"], s.payload["end_time"])
        for s in plan_meter(shares, NOW)
    }
    assert plan == {
        "high": ("2030-07-21T01:00:00.000Z", "2030-07-21T02:00:00.000Z"),
        "low": ("2030-07-21T00:00:00.000Z", "2030-07-21T01:00:00.000Z"),
        "low.2": ("2030-07-21T02:00:00.000Z", "2030-07-21T04:00:00.000Z"),
    }
    assert plan_meter(shares, T0 + timedelta(hours=10)) == []


def test_diff_is_idempotent_and_deletes_withdrawn():
    sites = {"m1": site("m1")}
    e = event()
    desired = plan_meter(split_event(e, sites)[0], NOW)
    commands = diff_schedules(desired, [], {e["event_key"]: e}, NOW)
    assert [c.command for c in commands] == ["put"]
    held = [{"meter_id": "m1", "schedule_id": "e1", "event_key": e["event_key"], "state": "active",
             "payload_sha256": desired[0].payload_sha256, "payload": __import__("json").dumps(desired[0].payload)}]  # fmt: skip
    assert diff_schedules(desired, held, {e["event_key"]: e}, NOW) == []
    cancelled = {**e, "timeslot": {**e["timeslot"], "cancelled": True}}
    (delete,) = diff_schedules([], held, {e["event_key"]: cancelled}, NOW)
    assert (delete.command, delete.reason_code) == ("delete", "EVENT_CANCELLED")


def test_parse_notification_rejects_non_notifications():
    with pytest.raises(NotificationError) as info:
        parse_notification({"meter_dispatches": [{"meter_id": "m"}]})
    assert info.value.reason_code == "INVALID_RECIPIENT"
    with pytest.raises(NotificationError):
        parse_notification({"integration_test_notification": "yes", "meter_dispatches": []})


def test_same_event_hashes_equal_across_time_formats():
    base = {"meter_event_id": "E1", "energy_kw": 8, "nomination_kw": 10, "cancelled": False, "programs": ["CCA"],
            "priority": 2, "is_voluntary": False, "performance_compensation_cap": "up-to-site-load",
            "dispatch_event_types": ["day-ahead"]}  # fmt: skip
    a = parse_notification({"meter_dispatches": [{"meter_id": "M", "timeslots": [
        {**base, "start_time": "2023-07-21 00:00:00+00:00", "end_time": "2023-07-21 01:00:00+00:00"}]}]})  # fmt: skip
    b = parse_notification({"meter_dispatches": [{"meter_id": "m", "timeslots": [
        {**base, "start_time": "2023-07-21T00:00:00.000Z", "end_time": "2023-07-21T01:00:00.000Z",
         "communication_test": False}]}]})  # fmt: skip
    assert a[0]["content_sha256"] == b[0]["content_sha256"]
    assert a[0]["event_key"] == "meter:e1"
