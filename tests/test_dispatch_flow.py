"""Dispatch scenarios (LEAP_DOCS_DIGEST section 10) end to end over real HTTP: notification -> receiver ->
ops store (SQLite and PostgreSQL) -> real sensor evaluation -> dispatch_job run (in process) -> sandbox
site controller."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import httpx
import pytest
from conftest import receiver_store_settings

from assets.dispatch import (
    dispatch_history,
    dispatch_inbox_sensor,
    dispatch_job,
    dispatch_reconciliation_job,
)
from vpp_pipeline.dispatch.resources import SiteControllerResource, ops_store_resource
from vpp_pipeline.leap.client import format_utc
from vpp_pipeline.ops import OpsStore
from vpp_pipeline.receiver import ReceiverServer, ReceiverSettings
from vpp_pipeline.resources import LeapResource, duckdb_resource
from vpp_pipeline.sandbox import SandboxServer
from vpp_pipeline.sandbox.timefmt import parse_datetime

API_KEY = "test-webhook-key"


class Stack:
    """Receiver + ops store + site controller + Dagster instance, with the sensor's cursor."""

    def __init__(self, tmp_path, leap_server, site, instance, location: str | None = None):
        #: the ops store's location: a SQLite path or a PostgreSQL URL
        self.db = location or str(tmp_path / "ops.sqlite")
        self.leap_server = leap_server
        self.site = site
        self.instance = instance
        self.store = OpsStore.initialize(self.db)
        self.receiver = ReceiverServer(
            ReceiverSettings(api_key=API_KEY, **receiver_store_settings(self.db))
        )
        self.cursor: str | None = None

    @property
    def resources(self) -> dict:
        return {
            "ops_store": ops_store_resource(self.db),
            "site_controller": SiteControllerResource(
                base_url=self.site.base_url,
                token=self.site.token,
                backoff_initial_s=0.01,
                backoff_max_s=0.05,
                timeout_s=2.0,
            ),
            "leap": LeapResource(
                base_url=self.leap_server.base_url,
                api_key=self.leap_server.api_key,
                backoff_initial_s=0.01,
                backoff_max_s=0.05,
            ),
        }

    def post(self, notification: dict, **headers) -> httpx.Response:
        return httpx.post(
            self.receiver.url,
            content=json.dumps(notification).encode(),
            headers={"x-api-key": API_KEY, "content-type": "application/json", **headers},
            timeout=10,
        )

    def tick(self) -> list[dict]:
        """Evaluate the sensor once and execute what it requests; return the runs' summaries."""
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"ops_store": self.resources["ops_store"]},
        ) as context:
            result = dispatch_inbox_sensor(context)
        self.cursor = result.cursor
        summaries = []
        for request in result.run_requests:
            run = dispatch_job.execute_in_process(
                run_config=request.run_config,
                resources=self.resources,
                instance=self.instance,
                tags={**request.tags, "dagster/run_key": request.run_key},
                raise_on_error=False,
            )
            summaries.append(run.output_for_node("process_dispatch_inbox") if run.success else None)
        return summaries

    def send_and_run(self, notification: dict) -> dict:
        response = self.post(notification)
        assert response.status_code == 200, response.text
        (summary,) = self.tick()
        return summary


@pytest.fixture(scope="module")
def instance():
    """One Dagster instance for this module's tests (each test's runs use their own ops store and
    sensor cursor, and nothing here reads the instance's run history): saves ~0.5 s per test."""
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def stack(tmp_path, sandbox, site, instance, ops_location):
    s = Stack(tmp_path, sandbox, site, instance, ops_location)
    with s.receiver:
        yield s


# --- building notifications ----------------------------------------------------------------------------

BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=3)


def slot(
    event_id: str | None = None,
    *,
    level: str = "meter",
    start_h: float = 0,
    hours: float = 1,
    energy_kw: float | None = 8.0,
    nomination_kw: float | None = 10.0,
    programs=("CCA",),
    priority: int = 2,
    is_voluntary: bool = False,
    cap: str = "up-to-site-load",
    types=("day-ahead",),
    cancelled: bool = False,
) -> dict:
    start = BASE + timedelta(hours=start_h)
    return {
        ("meter_event_id" if level == "meter" else "market_group_event_id"): event_id
        or str(uuid.uuid4()),
        "start_time": format_utc(start),
        "end_time": format_utc(start + timedelta(hours=hours)),
        "energy_kw": energy_kw,
        "nomination_kw": nomination_kw,
        "cancelled": cancelled,
        "programs": list(programs),
        "priority": priority,
        "is_voluntary": is_voluntary,
        "performance_compensation_cap": cap,
        "dispatch_event_types": list(types),
    }


def meter_note(*recipients: tuple[str, list[dict]], test=False, comm=False) -> dict:
    return {
        "integration_test_notification": test,
        "communication_test": comm,
        "meter_dispatches": [{"meter_id": m, "timeslots": slots} for m, slots in recipients],
    }


def group_note(group_id: str, meter_ids: list[str], slots: list[dict]) -> dict:
    return {
        "integration_test_notification": False,
        "communication_test": False,
        "group_dispatches": [
            {"market_group_id": group_id, "meter_ids": meter_ids, "timeslots": slots}
        ],
    }


def puts(site, meter_id=None) -> list[dict]:
    return [r for r in site.requests if r["method"] == "PUT" and meter_id in (None, r["meter_id"])]


def plain_meters(portfolio, n: int) -> list[str]:
    return [m for m, s in portfolio.sites.items() if s.battery_power_kw is None][:n]


def nomination_at(portfolio, meter_id: str, program: str, at: datetime) -> float | None:
    values = [
        n["nomination_kw"]
        for n in portfolio.nominations
        if n["meter_id"] == meter_id
        and n["program_identifier"] == program
        and parse_datetime(n["start_time"]) <= at
        and (n["end_time"] is None or at < parse_datetime(n["end_time"]))
    ]
    return sum(values) if values else None


# --- core event processing ----------------------------------------------------------------------------


def test_new_event_reaches_the_site_controller(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    event = slot(energy_kw=8.0)
    summary = stack.send_and_run(meter_note((meter, [event])))
    assert summary["new_events"] == 1 and summary["delivered"] == 1
    (request,) = site.requests
    assert request["method"] == "PUT"
    assert (request["meter_id"], request["schedule_id"]) == (meter, event["meter_event_id"])
    body = request["json"]
    assert body["target_kw"] == 8.0 and body["dry_run"] is False and body["revision"] == 1
    assert parse_datetime(body["start_time"]) == parse_datetime(event["start_time"])
    assert body["priority"] == 2 and body["performance_compensation_cap"] == "up-to-site-load"
    (action,) = stack.store.actions()
    assert action["status"] == "delivered" and action["attempts"] == 1
    assert stack.tick() == []  # nothing new: the sensor skips


def test_several_events_in_one_notification(stack, site, sandbox):
    a, b = plain_meters(sandbox.portfolio, 2)
    note = meter_note((a, [slot(), slot(start_h=1)]), (b, [slot(energy_kw=3.0)]))
    summary = stack.send_and_run(note)
    assert summary["new_events"] == 3 and summary["delivered"] == 3
    assert len(puts(site, a)) == 2 and len(puts(site, b)) == 1
    assert puts(site, b)[0]["json"]["target_kw"] == 3.0


def test_update_revises_and_cancellation_deletes(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    event_id = str(uuid.uuid4())
    stack.send_and_run(meter_note((meter, [slot(event_id, energy_kw=8.0)])))
    summary = stack.send_and_run(meter_note((meter, [slot(event_id, energy_kw=5.0, hours=2)])))
    assert summary["revisions"] == 1 and summary["new_events"] == 0
    first, second = puts(site)
    assert first["json"]["target_kw"] == 8.0
    assert second["json"]["target_kw"] == 5.0 and second["json"]["revision"] == 2
    assert parse_datetime(second["json"]["end_time"]) == BASE + timedelta(hours=2)
    assert site.schedules[(meter, event_id)]["revision"] == 2
    assert [r["revision"] for r in stack.store.event_revisions(f"meter:{event_id}")] == [1, 2]

    stack.send_and_run(
        meter_note((meter, [slot(event_id, energy_kw=5.0, hours=2, cancelled=True)]))
    )
    assert site.requests[-1]["method"] == "DELETE"
    assert (meter, event_id) not in site.schedules
    reasons = [a["reason_code"] for a in stack.store.actions(f"meter:{event_id}")]
    assert reasons == ["NEW_SCHEDULE", "SCHEDULE_CHANGED", "EVENT_CANCELLED"]


def test_null_energy_dispatches_the_site_maximum(stack, site, sandbox):
    portfolio = sandbox.portfolio
    meter = next(m for m, s in portfolio.sites.items() if s.battery_power_kw)
    start = BASE
    nomination = nomination_at(portfolio, meter, "ELRP", start) or 0.0
    expected = max(portfolio.sites[meter].battery_power_kw, nomination)
    event = slot(
        energy_kw=None,
        programs=("ELRP",),
        priority=3,
        is_voluntary=True,
        cap="grid-exports-allowed",
    )
    stack.send_and_run(meter_note((meter, [event])))
    (request,) = puts(site)
    assert request["json"]["target_kw"] == pytest.approx(expected)


def test_group_event_is_split_by_nomination(stack, site, sandbox):
    portfolio = sandbox.portfolio
    with_noms = [
        m
        for m in portfolio.meters
        if nomination_at(portfolio, m, "CCA", BASE) and portfolio.sites[m].battery_power_kw is None
    ][:3]
    assert len(with_noms) == 3
    group_id = str(uuid.uuid4())
    event = slot(level="group", energy_kw=90.0, nomination_kw=120.0)
    summary = stack.send_and_run(group_note(group_id, with_noms, [event]))
    assert summary["delivered"] == 3
    noms = {m: nomination_at(portfolio, m, "CCA", BASE) for m in with_noms}
    total = sum(noms.values())
    targets = {r["meter_id"]: r["json"]["target_kw"] for r in puts(site)}
    assert set(targets) == set(with_noms)
    for meter_id in with_noms:
        assert targets[meter_id] == pytest.approx(90.0 * noms[meter_id] / total, abs=1e-3)
    assert sum(targets.values()) == pytest.approx(90.0, abs=1e-2)
    assert {r["schedule_id"] for r in puts(site)} == {event["market_group_event_id"]}


def test_day_ahead_then_hour_ahead(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    award = slot(energy_kw=8.0, types=("day-ahead",))
    stack.send_and_run(meter_note((meter, [award])))
    revised = {**award, "energy_kw": 6.0, "dispatch_event_types": ["hour-ahead"]}
    extra = slot(start_h=1, energy_kw=4.0, types=("hour-ahead",))
    summary = stack.send_and_run(meter_note((meter, [revised, extra])))
    assert summary["revisions"] == 1 and summary["new_events"] == 1
    assert site.schedules[(meter, award["meter_event_id"])]["target_kw"] == 6.0
    assert site.schedules[(meter, extra["meter_event_id"])]["target_kw"] == 4.0
    assert len(puts(site)) == 3


def test_duplicate_delivery_changes_nothing(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    note = meter_note((meter, [slot(), slot(start_h=1)]))
    stack.send_and_run(note)
    # Leap retries every minute: the same body again, processed and unprocessed
    assert stack.post(note).status_code == 200
    assert stack.post(note).status_code == 200
    (summary,) = stack.tick()
    assert summary["duplicates"] == 4 and summary["commands"] == 0
    assert len(site.requests) == 2
    assert len(stack.store.inbox()) == 3  # every delivery is kept


def test_test_flags(stack, site, sandbox):
    a, b = plain_meters(sandbox.portfolio, 2)
    integration = slot()
    stack.send_and_run(meter_note((a, [integration]), test=True))
    communication = slot()
    stack.send_and_run(meter_note((b, [communication]), comm=True))
    assert puts(site, a)[0]["json"]["dry_run"] is True
    assert puts(site, b)[0]["json"]["dry_run"] is False
    events = {e["event_id"]: e for e in stack.store.events()}
    assert events[integration["meter_event_id"]]["integration_test"] == 1
    assert events[communication["meter_event_id"]]["communication_test"] == 1


def test_integration_test_does_not_displace_a_real_event(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    real = slot(priority=3, hours=2)
    stack.send_and_run(meter_note((meter, [real])))
    stack.send_and_run(meter_note((meter, [slot(priority=1)]), test=True))
    assert parse_datetime(site.schedules[(meter, real["meter_event_id"])]["end_time"]) == (
        BASE + timedelta(hours=2)
    )


def test_unknown_meter_is_accepted_and_reported(stack, site, sandbox):
    known = plain_meters(sandbox.portfolio, 1)[0]
    unknown = str(uuid.uuid4())
    event = slot()
    response = stack.post(meter_note((unknown, [event]), (known, [slot()])))
    assert response.status_code == 200
    (summary,) = stack.tick()
    assert summary["unknown_meter_ids"] == [unknown]
    assert summary["skipped"] == 1 and summary["delivered"] == 1
    assert [r["meter_id"] for r in site.requests] == [known]
    (skip,) = [a for a in stack.store.actions() if a["meter_id"] == unknown]
    assert skip["status"] == "skipped" and skip["reason_code"] == "UNKNOWN_METER"
    assert stack.store.events()  # recorded, not dropped


# --- dispatch strategy ----------------------------------------------------------------------------------


def test_priority_overlap_lower_number_wins(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    low = slot(priority=4, start_h=0, hours=3, programs=("CEC-DSGS",), energy_kw=5.0)
    high = slot(priority=1, start_h=1, hours=1, programs=("CCA",), energy_kw=9.0)
    stack.send_and_run(meter_note((meter, [low, high])))
    schedules = {sid: body for (m, sid), body in site.schedules.items() if m == meter}
    low_id, high_id = low["meter_event_id"], high["meter_event_id"]
    assert set(schedules) == {low_id, f"{low_id}.2", high_id}
    spans = {
        sid: (parse_datetime(b["start_time"]), parse_datetime(b["end_time"]))
        for sid, b in schedules.items()
    }
    assert spans[high_id] == (BASE + timedelta(hours=1), BASE + timedelta(hours=2))
    assert spans[low_id] == (BASE, BASE + timedelta(hours=1))
    assert spans[f"{low_id}.2"] == (BASE + timedelta(hours=2), BASE + timedelta(hours=3))

    # the winner is cancelled: the loser gets its whole window back
    stack.send_and_run(meter_note((meter, [{**high, "cancelled": True}])))
    schedules = {sid: body for (m, sid), body in site.schedules.items() if m == meter}
    assert set(schedules) == {low_id}
    assert parse_datetime(schedules[low_id]["end_time"]) == BASE + timedelta(hours=3)


def test_combined_capacity_test_and_award_is_one_command(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    combined = slot(priority=1, types=("day-ahead", "capacity-test"), energy_kw=10.0)
    summary = stack.send_and_run(meter_note((meter, [combined])))
    assert summary["new_events"] == 1 and len(site.requests) == 1
    (event,) = stack.store.events()
    assert json.loads(event["timeslot"])["dispatch_event_types"] == ["capacity-test", "day-ahead"]


def test_committed_beats_voluntary_at_equal_priority(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    voluntary = slot(
        priority=4, is_voluntary=True, programs=("CEC-DSGS",), cap="grid-exports-allowed"
    )
    committed = slot(priority=4, programs=("CEC-DSGS-OPTION4",), cap="grid-exports-allowed")
    stack.send_and_run(meter_note((meter, [voluntary, committed])))
    held = {sid for (m, sid) in site.schedules if m == meter}
    assert held == {committed["meter_event_id"]}
    assert site.schedules[(meter, committed["meter_event_id"])]["is_voluntary"] is False


def test_each_compensation_cap(stack, site, sandbox):
    portfolio = sandbox.portfolio
    a, b = plain_meters(portfolio, 2)
    battery = next(m for m, s in portfolio.sites.items() if s.battery_power_kw)
    nomination_cap = slot(energy_kw=12.0, nomination_kw=10.0, cap="up-to-nomination", priority=1)
    site_load = slot(energy_kw=12.0, nomination_kw=10.0, cap="up-to-site-load")
    exports = slot(
        energy_kw=None, nomination_kw=1.0, cap="grid-exports-allowed", programs=("ELRP",)
    )
    stack.send_and_run(meter_note((a, [nomination_cap]), (b, [site_load]), (battery, [exports])))
    by_meter = {r["meter_id"]: r["json"] for r in puts(site)}
    assert by_meter[a]["target_kw"] == 10.0  # no pay beyond the nomination
    assert by_meter[b]["target_kw"] == 12.0
    assert by_meter[battery]["target_kw"] >= portfolio.sites[battery].battery_power_kw
    assert {j["performance_compensation_cap"] for j in by_meter.values()} == {
        "up-to-nomination",
        "up-to-site-load",
        "grid-exports-allowed",
    }


# --- robustness -----------------------------------------------------------------------------------------


def test_fifty_concurrent_copies_give_one_site_command(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    body = json.dumps(meter_note((meter, [slot()]))).encode()
    statuses: list[int] = []

    def send():
        response = httpx.post(
            stack.receiver.url,
            content=body,
            headers={"x-api-key": API_KEY, "content-type": "application/json"},
            timeout=20,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 50
    assert len(stack.store.inbox()) == 50
    stack.tick()
    assert len(site.requests) == 1


def test_site_controller_failing_twice_then_succeeding(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    site.fail_next(2, "500")
    summary = stack.send_and_run(meter_note((meter, [slot()])))
    assert summary["delivered"] == 1 and summary["failed"] == 0
    assert [r["status"] for r in site.requests] == [500, 500, 200]
    (action,) = stack.store.actions()
    assert action["status"] == "delivered" and action["attempts"] == 3
    assert [a["outcome"] for a in stack.store.attempts()] == ["retryable", "retryable", "ok"]


def test_failed_delivery_is_resent_by_the_next_pass(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    site.fail_next(5, "500")  # the resource allows 5 attempts
    response = stack.post(meter_note((meter, [slot()])))
    assert response.status_code == 200
    assert stack.tick() == [None]  # the run fails: the command was not delivered
    (action,) = stack.store.actions()
    assert action["status"] == "failed" and action["attempts"] == 5
    # any later pass over the meter sends it again
    stack.send_and_run(meter_note((meter, [slot(start_h=5)])))
    assert len([r for r in site.requests if r["status"] == 200]) == 2


def test_reconciliation_catches_a_lost_webhook_and_mirror(tmp_path, instance, site, ops_location):
    with SandboxServer(seed=5, n_meters=12, history_days=3) as leap_server:
        stack = Stack(tmp_path, leap_server, site, instance, ops_location)
        resources = stack.resources
        first = dispatch_reconciliation_job.execute_in_process(
            resources=resources, instance=instance
        )
        assert first.success
        baseline = len(site.requests)
        meter = plain_meters(leap_server.portfolio, 1)[0]
        lost = slot(energy_kw=7.5)
        response = httpx.post(
            f"{leap_server.base_url}/_sandbox/dispatch/publish",
            json={"level": "meter", "recipient_id": meter, "timeslot": lost, "push": False},
        )
        assert response.status_code == 200
        second = dispatch_reconciliation_job.execute_in_process(
            resources=resources, instance=instance
        )
        summary = second.output_for_node("reconcile_dispatch_events")
        assert summary["changed_events"] == 1
        new = site.requests[baseline:]
        assert [(r["meter_id"], r["schedule_id"]) for r in new] == [(meter, lost["meter_event_id"])]
        assert new[0]["json"]["target_kw"] == 7.5
        (event,) = [e for e in stack.store.events() if e["event_id"] == lost["meter_event_id"]]
        assert event["source"] == "reconciliation"

        # the mirror: ops store -> DuckDB
        db_path = tmp_path / "vpp.duckdb"
        result = dg.materialize(
            [dispatch_history],
            resources={"ops_store": resources["ops_store"], "duckdb": duckdb_resource(db_path)},
            instance=instance,
        )
        assert result.success
        with duckdb.connect(str(db_path)) as conn:
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = 'ops_dispatch_events' ORDER BY ordinal_position"
            ).fetchall()
            assert [c for c, _ in columns] == [
                "meter_event_id", "market_group_event_id", "market_group_id", "meter_id",
                "programs", "start_time", "end_time", "energy_kw", "nomination_kw",
                "committed_kw", "priority", "is_voluntary", "performance_compensation_cap",
                "dispatch_event_types", "cancelled", "is_test", "revision", "source",
                "updated_at",
            ]  # fmt: skip
            types = dict(columns)
            assert types["programs"] == "VARCHAR[]" and types["start_time"].startswith(
                "TIMESTAMP WITH TIME ZONE"
            )
            rows = conn.execute(
                "SELECT energy_kw, committed_kw, source FROM ops_dispatch_events"
                " WHERE meter_event_id = ?",
                [lost["meter_event_id"]],
            ).fetchall()
            assert rows == [(7.5, 7.5, "reconciliation")]
            groups = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE meter_event_id ="
                " market_group_event_id || ':' || meter_id) FROM ops_dispatch_events"
                " WHERE market_group_event_id IS NOT NULL"
            ).fetchall()[0]
            assert groups[0] == groups[1]
            delivered = conn.execute(
                "SELECT count(*) FROM dispatch_actions WHERE status = 'delivered'"
            ).fetchall()[0][0]
            assert delivered == len(site.requests)
