"""Site commands that were not delivered (failed after retries, or stranded by a crashed run) are re-sent
without waiting for the next event, over real HTTP: receiver -> ops store (SQLite and PostgreSQL) -> real
sensor evaluations -> real dispatch_job / reconciliation runs (in process) -> the sandbox site
controller."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from test_dispatch_flow import Stack, meter_note, plain_meters, slot

from assets.dispatch import dispatch_job, dispatch_reconciliation_job, dispatch_retry_sensor
from vpp_pipeline.cli import main
from vpp_pipeline.dispatch.outbox import RetryPolicy, classify
from vpp_pipeline.dispatch.processing import apply_inbox, leap_site_fetcher
from vpp_pipeline.dispatch.resources import SiteControllerResource, ops_store_resource
from vpp_pipeline.leap.client import format_utc
from vpp_pipeline.ops import OpsStore, is_postgres, iso
from vpp_pipeline.resources import LeapResource
from vpp_pipeline.sandbox import SandboxServer

RETRY_ONLY = {"ops": {"process_dispatch_inbox": {"config": {"apply_inbox": False}}}}


class RetryStack(Stack):
    """The dispatch stack with the retry policy under test and the retry sensor's cursor."""

    def __init__(self, *args, policy: RetryPolicy, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy = policy
        self.retry_cursor: str | None = None

    @property
    def resources(self) -> dict:
        resources = super().resources
        site = resources["site_controller"]
        resources["site_controller"] = SiteControllerResource(
            **{
                **site.model_dump(),
                "retry_stale_after_s": self.policy.stale_after_s,
                "retry_backoff_initial_s": self.policy.backoff_initial_s,
                "retry_backoff_max_s": self.policy.backoff_max_s,
            }
        )
        return resources

    def evaluate_retry_sensor(self):
        """One evaluation of dispatch_retry_sensor; keeps its cursor like the daemon does."""
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.retry_cursor,
            resources={
                "ops_store": self.resources["ops_store"],
                "site_controller": self.resources["site_controller"],
            },
        )
        result = dispatch_retry_sensor(context)
        if isinstance(result, dg.SensorResult):
            self.retry_cursor = result.cursor
        return result

    def run(self, request: dg.RunRequest | None = None):
        run_config = request.run_config if request is not None else RETRY_ONLY
        tags = {"dagster/run_key": request.run_key} if request is not None else {}
        return dispatch_job.execute_in_process(
            run_config=run_config,
            resources=self.resources,
            instance=self.instance,
            tags=tags,
            raise_on_error=False,
        )

    def plan_only(self) -> dict:
        """Plan the pending inbox rows and commit the commands without delivering them: what a run that
        crashes between planning and delivery leaves behind."""
        with self.resources["leap"].client() as leap:
            summary, actions = apply_inbox(
                self.store, fetch_sites=leap_site_fetcher(leap), run_id="crashed-run"
            )
        assert actions and all(a["status"] == "planned" for a in actions)
        return summary


FAST = RetryPolicy(stale_after_s=60.0, backoff_initial_s=0.0, backoff_max_s=0.0)


@pytest.fixture(scope="module")
def instance():
    """One Dagster instance for this module's tests (each test's runs use their own ops store and
    sensor cursor, and nothing here reads the instance's run history): saves ~0.5 s per test."""
    with dg.instance_for_test() as inst:
        yield inst


def make_stack(tmp_path, sandbox, site, instance, location, policy=FAST) -> RetryStack:
    return RetryStack(tmp_path, sandbox, site, instance, location, policy=policy)


@pytest.fixture
def stack(tmp_path, sandbox, site, instance, ops_location):
    s = make_stack(tmp_path, sandbox, site, instance, ops_location)
    with s.receiver:
        yield s


def ok_puts(site, meter_id: str, schedule_id: str) -> list[dict]:
    return [
        r
        for r in site.requests
        if r["method"] == "PUT"
        and r["status"] == 200
        and (r["meter_id"], r["schedule_id"]) == (meter_id, schedule_id)
    ]


def fail_first_delivery(stack, site, meter: str, event: dict) -> dict:
    """Send ``event`` while the site controller fails every attempt; return the failed action."""
    site.fail_next(5, "500")  # the resource's max_attempts
    assert stack.post(meter_note((meter, [event]))).status_code == 200
    assert stack.tick() == [None]  # the run fails
    (action,) = [a for a in stack.store.actions() if a["meter_id"] == meter]
    assert action["status"] == "failed" and action["attempts"] == 5
    return action


# --- failed after all retries -----------------------------------------------------------------------------


def test_failed_command_is_resent_by_a_retry_run_once(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    event = slot(energy_kw=6.5)
    failed = fail_first_delivery(stack, site, meter, event)
    assert ok_puts(site, meter, event["meter_event_id"]) == []

    request = stack.evaluate_retry_sensor()
    assert isinstance(request, dg.SensorResult)
    (run_request,) = request.run_requests
    assert run_request.run_key.startswith("dispatch-retry-")
    # evaluated again before the run happened: the same outstanding set, no second request
    again = stack.evaluate_retry_sensor()
    assert isinstance(again, dg.SkipReason) and "already requested" in again.skip_message

    run = stack.run(run_request)
    assert run.success
    summary = run.output_for_node("process_dispatch_inbox")
    assert summary["retried"] == 1 and summary["redelivered"] == 1 and summary["rows"] == 0

    (put,) = ok_puts(site, meter, event["meter_event_id"])
    assert put["json"]["revision"] == failed["revision"] == 1
    assert put["json"]["target_kw"] == 6.5
    first, retry = stack.store.actions()
    assert first["status"] == "failed" and first["action_id"] == failed["action_id"]
    assert retry["status"] == "delivered" and retry["reason_code"] == "RETRY_FAILED"
    assert retry["retry_of"] == first["action_id"] and retry["retry_round"] == 1
    assert retry["payload"] == first["payload"] and retry["revision"] == first["revision"]
    outcomes = [(a["action_id"], a["outcome"]) for a in stack.store.attempts()]
    assert outcomes == [(first["action_id"], "retryable")] * 5 + [(retry["action_id"], "ok")]

    done = stack.evaluate_retry_sensor()
    assert isinstance(done, dg.SkipReason) and "no outstanding" in done.skip_message
    assert stack.run().output_for_node("process_dispatch_inbox")["retried"] == 0
    assert len(ok_puts(site, meter, event["meter_event_id"])) == 1


def test_failed_rounds_back_off_and_the_sensor_does_not_spin(
    tmp_path, sandbox, site, instance, ops_location
):
    policy = RetryPolicy(stale_after_s=60.0, backoff_initial_s=30.0, backoff_max_s=120.0)
    stack = make_stack(tmp_path, sandbox, site, instance, ops_location, policy)
    with stack.receiver:
        meter = plain_meters(sandbox.portfolio, 1)[0]
        fail_first_delivery(stack, site, meter, slot())
        first = stack.evaluate_retry_sensor()  # round 0 failed: due at once
        assert isinstance(first, dg.SensorResult)
        site.fail_next(5, "500")  # still down
        run = stack.run(first.run_requests[0])
        assert not run.success  # the re-send failed too: visible as a failed run
        waiting = stack.evaluate_retry_sensor()
        assert isinstance(waiting, dg.SkipReason)
        due_in = int(re.search(r"due in (\d+) s", waiting.skip_message).group(1))
        assert 25 <= due_in <= 30
        # the inbox sensor's runs skip it too while it waits
        assert stack.run().output_for_node("process_dispatch_inbox")["not_due"] == 1
        assert [a["status"] for a in stack.store.actions()] == ["failed", "failed"]
        assert [a["retry_round"] for a in stack.store.actions()] == [0, 1]


def test_reconciliation_resends_a_failed_command(tmp_path, site, instance, ops_location):
    with SandboxServer(seed=5, n_meters=12, history_days=3) as leap_server:
        stack = make_stack(tmp_path, leap_server, site, instance, ops_location)
        with stack.receiver:
            resources = stack.resources
            assert dispatch_reconciliation_job.execute_in_process(
                resources=resources, instance=instance
            ).success
            meter = plain_meters(leap_server.portfolio, 1)[0]
            event = slot(energy_kw=4.0)
            failed = fail_first_delivery(stack, site, meter, event)
            before = len(site.requests)

            run = dispatch_reconciliation_job.execute_in_process(
                resources=resources, instance=instance
            )
            assert run.success
            summary = run.output_for_node("reconcile_dispatch_events")
            assert summary["changed_events"] == 0 and summary["redelivered"] == 1
            new = site.requests[before:]
            assert [(r["method"], r["meter_id"], r["schedule_id"], r["status"]) for r in new] == [
                ("PUT", meter, event["meter_event_id"], 200)
            ]
            assert new[0]["json"]["revision"] == failed["revision"]
            # the next reconciliation sends nothing more
            assert (
                dispatch_reconciliation_job.execute_in_process(
                    resources=resources, instance=instance
                ).output_for_node("reconcile_dispatch_events")["retried"]
                == 0
            )
            assert len(site.requests) == before + 1


# --- stranded between planning and delivery ---------------------------------------------------------------


def test_stranded_planned_command_is_delivered(tmp_path, sandbox, site, instance, ops_location):
    policy = RetryPolicy(stale_after_s=0.5, backoff_initial_s=0.0, backoff_max_s=0.0)
    stack = make_stack(tmp_path, sandbox, site, instance, ops_location, policy)
    with stack.receiver:
        meter = plain_meters(sandbox.portfolio, 1)[0]
        event = slot(energy_kw=3.0)
        assert stack.post(meter_note((meter, [event]))).status_code == 200
        stack.plan_only()  # the run "crashes" after its planning commit
        assert site.requests == []
        assert stack.tick() == []  # its inbox rows are processed: the inbox sensor has nothing
        young = stack.evaluate_retry_sensor()
        assert isinstance(young, dg.SkipReason) and "1 being delivered" in young.skip_message

        time.sleep(0.6)
        request = stack.evaluate_retry_sensor()
        assert isinstance(request, dg.SensorResult)
        run = stack.run(request.run_requests[0])
        assert run.success
        (put,) = site.requests
        assert (put["method"], put["meter_id"], put["schedule_id"], put["status"]) == (
            "PUT",
            meter,
            event["meter_event_id"],
            200,
        )
        assert put["json"]["revision"] == 1 and put["json"]["target_kw"] == 3.0
        stranded, retry = stack.store.actions()
        assert stranded["status"] == "stranded" and stranded["attempts"] == 0
        assert retry["reason_code"] == "RETRY_STRANDED" and retry["status"] == "delivered"
        assert retry["retry_of"] == stranded["action_id"]
        assert isinstance(stack.evaluate_retry_sensor(), dg.SkipReason)


def test_ended_schedules_are_expired_not_sent(tmp_path, sandbox, site, instance, ops_location):
    policy = RetryPolicy(stale_after_s=0.5, backoff_initial_s=0.0, backoff_max_s=0.0)
    stack = make_stack(tmp_path, sandbox, site, instance, ops_location, policy)
    with stack.receiver:
        a, b = plain_meters(sandbox.portfolio, 2)
        end = datetime.now(UTC) + timedelta(seconds=3)
        short = {
            **slot(),
            "start_time": format_utc(end - timedelta(hours=1)),
            "end_time": format_utc(end),
        }
        failed_event = {**short, "meter_event_id": str(uuid.uuid4())}
        fail_first_delivery(stack, site, a, failed_event)
        assert stack.post(meter_note((b, [short]))).status_code == 200
        stack.plan_only()  # stranded
        requests_before = len(site.requests)
        time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 0.2)

        request = stack.evaluate_retry_sensor()
        assert isinstance(request, dg.SensorResult)
        assert request.run_requests[0].tags["vpp/ended_commands"] == "2"
        run = stack.run(request.run_requests[0])
        assert run.success
        summary = run.output_for_node("process_dispatch_inbox")
        assert summary["expired"] == 2 and summary["retried"] == 0
        assert len(site.requests) == requests_before  # nothing sent
        assert sorted((x["meter_id"], x["status"]) for x in stack.store.actions()) == sorted(
            [(a, "expired"), (b, "expired")]
        )
        done = stack.evaluate_retry_sensor()
        assert isinstance(done, dg.SkipReason) and "no outstanding" in done.skip_message


# --- concurrency and superseding --------------------------------------------------------------------------


def _retry_run_in_own_process(urls: dict, barrier, results) -> None:
    """One dispatch_job run (retry only) in a process of its own, as the run launcher would start it
    (Dagster's in-process execution is not thread-safe, and real overlapping runs are processes)."""
    resources = {
        "ops_store": ops_store_resource(urls["db"]),
        "site_controller": SiteControllerResource(
            base_url=urls["site"], token=urls["site_token"], backoff_initial_s=0.01, timeout_s=2.0
        ),
        "leap": LeapResource(base_url=urls["leap"], api_key=urls["leap_key"]),
    }
    with dg.instance_for_test() as instance:
        barrier.wait(30)
        run = dispatch_job.execute_in_process(
            run_config=RETRY_ONLY, resources=resources, instance=instance, raise_on_error=False
        )
        results.put(run.output_for_node("process_dispatch_inbox") if run.success else None)


def test_overlapping_runs_send_one_put(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    event = slot()
    fail_first_delivery(stack, site, meter, event)
    # the site is back but slow to answer its first request: one run's re-send is in flight while
    # the other looks for outstanding commands
    site.fail_next(1, "timeout", delay_s=0.6)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    urls = {
        "db": stack.db,
        "site": site.base_url,
        "site_token": site.token,
        "leap": sandbox.base_url,
        "leap_key": sandbox.api_key,
    }
    procs = [
        ctx.Process(target=_retry_run_in_own_process, args=(urls, barrier, results))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(90)
    assert [p.exitcode for p in procs] == [0, 0]
    summaries = [results.get(timeout=5) for _ in procs]
    assert sorted(s["retried"] for s in summaries) == [0, 1]
    assert len(ok_puts(site, meter, event["meter_event_id"])) == 1
    retries = [a for a in stack.store.actions() if a["retry_of"] is not None]
    assert len(retries) == 1 and retries[0]["status"] == "delivered"
    assert retries[0]["attempts"] == 2  # the slow 500, then 200


def test_cancel_after_a_failed_put_deletes_and_never_resends(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    event = slot()
    fail_first_delivery(stack, site, meter, event)
    # the failed PUT may have reached the site (a timeout): the cancellation deletes it
    summary = stack.send_and_run(meter_note((meter, [{**event, "cancelled": True}])))
    assert summary["delivered"] == 1 and summary["retried"] == 0
    assert site.requests[-1]["method"] == "DELETE" and site.requests[-1]["status"] == 404
    assert ok_puts(site, meter, event["meter_event_id"]) == []
    assert stack.run().output_for_node("process_dispatch_inbox")["retried"] == 0
    assert isinstance(stack.evaluate_retry_sensor(), dg.SkipReason)


def test_failed_delete_is_resent(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    event = slot()
    stack.send_and_run(meter_note((meter, [event])))
    assert (meter, event["meter_event_id"]) in site.schedules
    site.fail_next(5, "500")
    assert stack.post(meter_note((meter, [{**event, "cancelled": True}]))).status_code == 200
    assert stack.tick() == [None]
    assert (meter, event["meter_event_id"]) in site.schedules  # still held: the battery would run

    request = stack.evaluate_retry_sensor()
    assert stack.run(request.run_requests[0]).success
    assert (meter, event["meter_event_id"]) not in site.schedules
    assert site.requests[-1]["method"] == "DELETE" and site.requests[-1]["status"] == 204
    assert [(a["command"], a["status"]) for a in stack.store.actions()] == [
        ("put", "delivered"),
        ("delete", "failed"),
        ("delete", "delivered"),
    ]


# --- operator view, store, policy ---------------------------------------------------------------------------


def test_dispatch_status_shows_outstanding_commands(stack, site, sandbox, monkeypatch, capsys):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    event = slot()
    failed = fail_first_delivery(stack, site, meter, event)
    capsys.readouterr()
    monkeypatch.setenv("VPP_OPS_DB_URL" if is_postgres(stack.db) else "VPP_OPS_DB_PATH", stack.db)
    assert main(["dispatch-status"]) == 0
    out = capsys.readouterr().out
    assert "OUTSTANDING site commands: 1 (1 failed, 0 stranded)" in out
    (line,) = [x for x in out.splitlines() if x.strip().startswith("FAILED")]
    assert f"{meter}/{event['meter_event_id']}" in line and f"action {failed['action_id']}" in line
    assert "5 attempt(s)" in line and "re-send due now" in line

    stack.run(stack.evaluate_retry_sensor().run_requests[0])
    assert main(["dispatch-status"]) == 0
    out = capsys.readouterr().out
    assert "OUTSTANDING site commands: 0 (0 failed, 0 stranded)" in out
    assert f"re-sends action {failed['action_id']}" in out


def test_store_created_before_retries_gains_the_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE dispatch_actions (action_id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " event_key TEXT NOT NULL, meter_id TEXT NOT NULL, schedule_id TEXT NOT NULL,"
        " command TEXT NOT NULL, payload TEXT, revision INTEGER NOT NULL, reason_code TEXT NOT NULL,"
        " received_at TEXT NOT NULL, planned_at TEXT NOT NULL, status TEXT NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0, http_status INTEGER, error TEXT, finished_at TEXT,"
        " run_id TEXT)"
    )
    now = iso(datetime.now(UTC))
    conn.execute(
        "INSERT INTO dispatch_actions (event_key, meter_id, schedule_id, command, payload,"
        " revision, reason_code, received_at, planned_at, status)"
        " VALUES ('meter:e', 'm', 'e', 'put', '{\"end_time\": \"2999-01-01T00:00:00.000Z\"}', 1,"
        " 'NEW_SCHEDULE', ?, ?, 'failed')",
        (now, now),
    )
    conn.commit()
    conn.close()
    store = OpsStore(path)  # adopted: a store from before versioning is upgraded, not refused
    (row,) = store.undelivered_actions()
    assert row["retry_of"] is None and row["retry_round"] == 0
    assert row["schedule_end_time"] == "2999-01-01T00:00:00.000Z"
    assert store.schema_version == 3
    again = OpsStore(path)  # opening again changes nothing
    assert again.store_id == store.store_id and again.schema_version == 3


def _row(action_id: int, status: str, last: datetime, end: datetime, retry_round: int = 0) -> dict:
    return {
        "action_id": action_id,
        "event_key": "meter:e",
        "meter_id": "m",
        "schedule_id": f"e{action_id}",
        "command": "put",
        "payload": None,
        "revision": 1,
        "reason_code": "NEW_SCHEDULE",
        "received_at": iso(last),
        "status": status,
        "attempts": 0,
        "http_status": None,
        "error": None,
        "retry_round": retry_round,
        "last_activity_at": iso(last),
        "schedule_end_time": format_utc(end),
    }


def test_classify_states_due_times_and_expiry():
    now = datetime(2025, 6, 1, 17, 0, tzinfo=UTC)
    policy = RetryPolicy(stale_after_s=60, backoff_initial_s=5, backoff_max_s=60)
    later = now + timedelta(hours=1)
    rows = [
        _row(1, "failed", now - timedelta(seconds=1), later),  # round 0: due at once
        _row(2, "failed", now - timedelta(seconds=1), later, retry_round=2),  # waits 10 s
        _row(3, "planned", now - timedelta(seconds=61), later),  # stranded
        _row(4, "planned", now - timedelta(seconds=30), later),  # in flight
        _row(5, "failed", now - timedelta(seconds=1), now - timedelta(seconds=1)),  # ended
    ]
    by_id = {c.action_id: c for c in classify(rows, now, policy)}
    assert [by_id[i].state for i in range(1, 6)] == [
        "failed",
        "failed",
        "stranded",
        "in_flight",
        "failed",
    ]
    assert [by_id[i].is_due(now) for i in range(1, 6)] == [True, False, True, False, False]
    assert by_id[2].due_at == now + timedelta(seconds=9)
    assert by_id[4].due_at == now + timedelta(seconds=30)
    assert by_id[5].ended and not by_id[5].outstanding
    assert [policy.wait_s(r) for r in range(6)] == [0, 5, 10, 20, 40, 60]
