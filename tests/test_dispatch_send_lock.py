"""One sender per schedule: two runs delivering different revisions of one schedule never cross.

Real parts: the ops store (a SQLite file, and a PostgreSQL schema), the sandbox site controller over HTTP
on 127.0.0.1, and the outbox's delivery code. The two "runs" are two threads calling the outbox, each with
its own client and its own database connections (as two run processes, or hosts, would have).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from vpp_pipeline.dispatch.delivery import SiteControllerClient
from vpp_pipeline.dispatch.outbox import DELIVERED, SUPERSEDED, deliver_actions
from vpp_pipeline.ops import OpsStore, iso
from vpp_pipeline.sandbox.site_controller import SiteControllerServer

METER, SCHEDULE = "meter-1", "event-1"


def plan_put(store: OpsStore, revision: int) -> dict:
    """A planned PUT of ``revision`` for the schedule, as the dispatch job commits it before sending."""
    payload = {
        "start_time": "2030-07-21T00:00:00Z",
        "end_time": "2030-07-21T01:00:00Z",
        "target_kw": 10.0 * revision,
        "priority": 1,
        "is_voluntary": False,
        "performance_compensation_cap": "up-to-nomination",
        "dry_run": False,
        "revision": revision,
    }
    now = iso(datetime.now(UTC))
    action = {
        "event_key": f"meter:{SCHEDULE}",
        "meter_id": METER,
        "schedule_id": SCHEDULE,
        "command": "put",
        "payload": payload,
        "revision": revision,
        "reason_code": "EVENT_UPDATED",
        "received_at": now,
        "planned_at": now,
        "status": "planned",
        "run_id": f"run-{revision}",
    }
    with store.session() as s:
        action["action_id"] = s.add_action(action)
    return action


def client_for(site: SiteControllerServer) -> SiteControllerClient:
    return SiteControllerClient(site.base_url, site.token, backoff_initial_s=0.01, timeout_s=5.0)


def lock_holder(store: OpsStore) -> int | None:
    with store.session(write=False) as s:
        rows = s.rows("SELECT action_id FROM schedule_send_locks")
    return rows[0]["action_id"] if rows else None


def test_newer_revision_waits_for_the_older_ones_retries(ops_store, site):
    store = ops_store
    older = plan_put(store, revision=1)
    # the site answers the older PUT's first attempt late and with a 500: its retry follows
    site.fail_next(1, "timeout", delay_s=1.0)
    statuses: dict[str, list[str]] = {}

    def run(name: str, action: dict) -> None:
        with client_for(site) as client:
            statuses[name] = deliver_actions(store, client, [action])

    first = threading.Thread(target=run, args=("older", older))
    first.start()
    # wait until the older PUT has reached the site (it took the injected fault): that run is past
    # its superseded check, its first attempt on the wire and answered late
    deadline = time.monotonic() + 10
    while site.state.fail_count > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert site.state.fail_count == 0
    assert lock_holder(store) == older["action_id"]
    newer = plan_put(store, revision=2)
    second = threading.Thread(target=run, args=("newer", newer))
    second.start()
    first.join(30)
    second.join(30)

    assert statuses == {"older": [DELIVERED], "newer": [DELIVERED]}
    # on the wire: the older PUT (late 500), its retry, and only then the newer PUT
    assert [r["status"] for r in site.requests] == [500, 200, 200]
    assert [r["json"]["revision"] for r in site.requests[1:]] == [1, 2]
    assert site.schedules[(METER, SCHEDULE)]["revision"] == 2
    assert lock_holder(store) is None  # released


def test_a_command_replaced_while_it_waited_is_not_sent(ops_store, site):
    store = ops_store
    older = plan_put(store, revision=1)
    newer = plan_put(store, revision=2)
    with client_for(site) as client:
        assert deliver_actions(store, client, [older, newer]) == [SUPERSEDED, DELIVERED]
    assert [r["json"]["revision"] for r in site.requests] == [2]


def test_a_dead_senders_lock_is_taken_over_once_stale(ops_store, site):
    store = ops_store
    action = plan_put(store, revision=1)
    long_ago = datetime.now(UTC) - timedelta(seconds=120)
    with store.session() as s:  # a run that died while sending another command to this schedule
        assert s.take_send_lock(METER, SCHEDULE, 999, long_ago, long_ago - timedelta(seconds=1))
        # a fresh lock of a live sender is not taken
        assert not s.take_send_lock(
            METER, SCHEDULE, action["action_id"], datetime.now(UTC), long_ago - timedelta(seconds=1)
        )
    started = time.monotonic()
    with client_for(site) as client:
        assert deliver_actions(store, client, [action], lock_stale_after_s=60.0) == [DELIVERED]
    assert time.monotonic() - started < 5  # taken over at once, not waited for
    assert site.schedules[(METER, SCHEDULE)]["revision"] == 1
    assert lock_holder(store) is None
