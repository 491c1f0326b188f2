"""One bad row never stops the others (docs/dispatch-ordering.md): poison rows already in an ops store (as an
older receiver stored them) are quarantined with their reason, the valid deliveries of the same batch reach
the recording site controller, and neither dispatch_job nor the retry sensor fails. Real HTTP, real sensor
evaluations and dispatch_job runs, on both ops-store backends."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from test_dispatch_flow import BASE, meter_note, plain_meters, puts, slot
from test_dispatch_retry import RetryStack

from vpp_pipeline.cli import main
from vpp_pipeline.dispatch.outbox import RetryPolicy
from vpp_pipeline.ops import iso


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def stack(tmp_path, sandbox, site, instance, ops_location):
    s = RetryStack(
        tmp_path,
        sandbox,
        site,
        instance,
        ops_location,
        policy=RetryPolicy(stale_after_s=30, backoff_initial_s=0.01, backoff_max_s=0.05),
    )
    with s.receiver:
        yield s


def store_raw_inbox_row(stack, body: bytes, level: str = "meter") -> int:
    """An inbox row as an older receiver stored it (no validation at the door)."""
    with stack.store.session() as s:
        return s.insert_inbox(
            received_at=datetime.now(UTC), source="webhook", level=level, body=body, headers={}
        )


def infinity_body(meter: str) -> bytes:
    event = slot(energy_kw=8.0)
    text = json.dumps(meter_note((meter, [event])))
    return text.replace('"energy_kw": 8.0', '"energy_kw": Infinity').encode()


def lone_surrogate_body() -> bytes:
    text = json.dumps(meter_note(("METER-PLACEHOLDER", [slot()])))
    return text.replace("METER-PLACEHOLDER", "\\ud800-meter").encode()


def test_poison_inbox_rows_are_quarantined_and_the_batch_goes_on(stack, site, sandbox):
    poison_meter, good_meter = plain_meters(sandbox.portfolio, 2)
    infinity_id = store_raw_inbox_row(stack, infinity_body(poison_meter))
    surrogate_id = store_raw_inbox_row(stack, lone_surrogate_body())
    deep_id = store_raw_inbox_row(stack, b"[" * 100_000 + b"]" * 100_000)
    good = slot(energy_kw=6.0)
    assert stack.post(meter_note((good_meter, [good]))).status_code == 200
    (summary,) = stack.tick()  # one run for the four rows
    assert summary is not None, "dispatch_job failed"
    assert summary["rows"] == 4 and summary["new_events"] == 1 and summary["quarantined"] == 3
    (put,) = puts(site)
    assert (put["meter_id"], put["json"]["target_kw"]) == (good_meter, 6.0)
    entries = {e["inbox_id"]: e for e in stack.store.quarantined()}
    # the receiver's reason codes (docs/dispatch-validation.md), naming the field where there is one
    assert entries[infinity_id]["reason_code"] == "NUMBER_NOT_FINITE"
    assert "energy_kw" in entries[infinity_id]["detail"]
    assert entries[surrogate_id]["reason_code"] == "INVALID_ID"
    assert "meter_id" in entries[surrogate_id]["detail"]
    assert entries[deep_id]["reason_code"] == "JSON_TOO_DEEP"
    assert {entries[i]["kind"] for i in (infinity_id, surrogate_id, deep_id)} == {"inbox"}
    # every row is processed (the sensor moves on) and nothing is left owed
    assert all(r.processed_at for r in stack.store.inbox())
    assert stack.tick() == []
    assert isinstance(stack.evaluate_retry_sensor(), dg.SkipReason)


def test_poison_event_and_command_already_in_the_store(stack, site, sandbox):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    old_id = str(uuid.uuid4())
    at = datetime.now(UTC)
    inf_slot = {**json.loads(json.dumps(slot(old_id))), "energy_kw": float("inf")}
    held_payload = {
        "start_time": inf_slot["start_time"],
        "end_time": inf_slot["end_time"],
        "target_kw": float("inf"),
        "priority": 2,
        "is_voluntary": False,
        "performance_compensation_cap": "up-to-site-load",
        "dry_run": False,
        "revision": 1,
    }
    with stack.store.session() as s:
        inbox_id = s.insert_inbox(
            received_at=at, source="webhook", level="meter", body=b"{}", headers={}
        )
        s.mark_processed([inbox_id], "old-run", at)
        s.save_event(
            {
                "event_key": f"meter:{old_id}",
                "level": "meter",
                "event_id": old_id,
                "recipient_id": meter,
                "meter_ids": json.dumps([meter]),
                "timeslot": json.dumps(
                    {
                        **{k: inf_slot[k] for k in ("start_time", "end_time", "cancelled")},
                        "energy_kw": float("inf"),
                        "nomination_kw": 10.0,
                        "performance_compensation_cap": "up-to-site-load",
                        "priority": 2,
                        "is_voluntary": False,
                        "dispatch_event_types": ["day-ahead"],
                        "programs": ["CCA"],
                    }
                ),
                "content_sha256": "old",
                "revision": 1,
                "integration_test": 0,
                "communication_test": 0,
                "source": "webhook",
                "inbox_id": inbox_id,
                "first_received_at": iso(at),
                "received_at": iso(at),
                "updated_at": iso(at),
            }
        )
        s.set_schedule(meter, old_id, f"meter:{old_id}", held_payload, "h", "active", at)
        action_id = s.add_action(
            {
                "event_key": f"meter:{old_id}",
                "meter_id": meter,
                "schedule_id": old_id,
                "command": "put",
                "payload": held_payload,
                "revision": 1,
                "reason_code": "NEW_SCHEDULE",
                "received_at": iso(at),
                "planned_at": iso(at - timedelta(minutes=5)),
                "status": "failed",
                "run_id": "old-run",
            }
        )
        s.finish_action(action_id, "failed", at - timedelta(minutes=5))

    # the retry sensor reads the poison command without failing and asks for a run; the run succeeds
    request = stack.evaluate_retry_sensor()
    assert isinstance(request, dg.SensorResult) and request.run_requests
    run = stack.run(request.run_requests[0])
    assert run.success
    summary = run.output_for_node("process_dispatch_inbox")
    assert summary["retry_quarantined"] == 1
    (output,) = [e for e in run.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert metadata["quarantined_this_run"].value == 1 and metadata["quarantine_open"].value == 1
    assert metadata["quarantine_latest"].value[0]["reason_code"] == "SEND_FAILED"
    (resend,) = [a for a in stack.store.actions() if a["retry_of"] == action_id]
    assert resend["status"] == "quarantined"
    assert stack.store.undelivered_actions() == []  # never re-sent again
    assert site.requests == []
    assert isinstance(stack.evaluate_retry_sensor(), dg.SkipReason)

    # a valid event for the same meter is planned and sent; the poison event is set aside, and the
    # schedule it holds is neither re-sent nor withdrawn
    good = slot(start_h=2, energy_kw=4.0)
    (summary,) = [stack.send_and_run(meter_note((meter, [good])))]
    assert summary["new_events"] == 1 and summary["delivered"] == 1
    assert [(r["method"], r["schedule_id"]) for r in site.requests] == [
        ("PUT", good["meter_event_id"])
    ]
    kinds = {(e["kind"], e["reason_code"]) for e in stack.store.quarantined()}
    assert kinds == {("action", "SEND_FAILED"), ("event", "NON_FINITE_VALUE")}


def test_operator_lists_and_releases_a_quarantined_row(stack, site, sandbox, monkeypatch, capsys):
    meter = plain_meters(sandbox.portfolio, 1)[0]
    store_raw_inbox_row(stack, b'{"meter_dispatches": "not a list"}')
    (summary,) = stack.tick()
    assert summary["quarantined"] == 1
    key = "VPP_OPS_DB_URL" if stack.db.startswith("postgres") else "VPP_OPS_DB_PATH"
    monkeypatch.delenv("VPP_OPS_DB_URL", raising=False)
    monkeypatch.setenv(key, stack.db)
    monkeypatch.delenv("VPP_OPS_STORE_ID", raising=False)
    assert main(["dispatch-quarantine"]) == 0
    out = capsys.readouterr().out
    assert "1 quarantine entry" in out and "NO_RECIPIENTS" in out
    assert main(["dispatch-status"]) == 0  # the operator's usual view says so too
    status = capsys.readouterr().out
    assert "QUARANTINED: 1 open entry" in status and "inbox row 1: NO_RECIPIENTS" in status
    (entry,) = stack.store.quarantined()
    assert main(["dispatch-quarantine", "--release", str(entry["quarantine_id"])]) == 0
    assert "queued again as inbox row 2" in capsys.readouterr().out
    assert stack.store.quarantined() == []
    # released: the body is applied again by the next run, and (still broken) quarantined again
    (summary,) = stack.tick()
    assert summary["rows"] == 1 and summary["quarantined"] == 1
    (again,) = stack.store.quarantined()
    assert again["inbox_id"] == 2
    assert main(["dispatch-quarantine", "--release", str(entry["quarantine_id"])]) == 2
    assert BASE and meter  # events are in the future: nothing expires while the test runs
