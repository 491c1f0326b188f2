"""Out-of-order, replayed and re-posted deliveries over real HTTP (docs/dispatch-ordering.md): sandbox Leap
(its dispatch search is the source of truth) -> receiver -> ops store (SQLite and PostgreSQL) -> real sensor
evaluation -> dispatch_job run -> recording site controller. Every body is a revision Leap published."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime

import dagster as dg
import httpx
import pytest
from conftest import receiver_store_settings
from standardwebhooks.webhooks import Webhook
from test_dispatch_flow import API_KEY, BASE, Stack, plain_meters, puts, slot

from assets.dispatch import dispatch_reconciliation_job
from vpp_pipeline.receiver import ReceiverServer, ReceiverSettings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


class LeapStack(Stack):
    """The dispatch stack against a sandbox of the test's own, which publishes the events (so its
    dispatch search knows every revision), optionally with a signing receiver."""

    def __init__(self, *args, signing_secret: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if signing_secret is not None:
            self.receiver = ReceiverServer(
                ReceiverSettings(
                    api_key=API_KEY,
                    signing_secret=signing_secret,
                    **receiver_store_settings(self.db),
                )
            )

    def publish(self, meter_id: str, timeslot: dict, level: str = "meter", **extra) -> dict:
        """Publish a new event or revision in Leap (not pushed); the webhook body of that revision."""
        response = httpx.post(
            f"{self.leap_server.base_url}/_sandbox/dispatch/publish",
            json={
                "level": level,
                "recipient_id": meter_id,
                "timeslot": timeslot,
                "push": False,
                **extra,
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        published = response.json()["timeslot"]
        published.pop("communication_test", None)
        if level == "meter":
            recipient = {"meter_id": meter_id, "timeslots": [published]}
            key = "meter_dispatches"
        else:
            recipient = {
                "market_group_id": meter_id,
                "meter_ids": extra["meter_ids"],
                "timeslots": [published],
            }
            key = "group_dispatches"
        return {
            "integration_test_notification": False,
            "communication_test": False,
            key: [recipient],
        }

    def deliver(self, body: dict, **headers) -> list[dict]:
        response = self.post(body, **headers)
        assert response.status_code == 200, response.text
        return self.tick()


@pytest.fixture
def leap_stack(tmp_path, private_sandbox, site, instance, ops_location):
    s = LeapStack(tmp_path, private_sandbox, site, instance, ops_location)
    with s.receiver:
        yield s


def revision_sequence(
    stack: LeapStack, meter: str, deliver: bool = False
) -> tuple[str, dict, dict, dict]:
    """Leap publishes an event at 30 kW, updates it to 45 kW, then cancels it: the three bodies (each
    delivered as soon as it is published when ``deliver``)."""
    event_id = str(uuid.uuid4())
    bodies = []
    for timeslot in (
        slot(event_id, energy_kw=30.0, nomination_kw=50.0),
        {"meter_event_id": event_id, "energy_kw": 45.0},
        {"meter_event_id": event_id, "cancelled": True},
    ):
        bodies.append(stack.publish(meter, timeslot))
        if deliver:
            stack.deliver(bodies[-1])
    return event_id, *bodies


def target_kw_sent(site, meter: str) -> list[float]:
    return [r["json"]["target_kw"] for r in puts(site, meter)]


def test_older_body_after_update_does_not_roll_back(leap_stack, site, private_sandbox):
    meter = plain_meters(private_sandbox.portfolio, 1)[0]
    event_id = str(uuid.uuid4())
    first = leap_stack.publish(meter, slot(event_id, energy_kw=30.0, nomination_kw=50.0))
    leap_stack.deliver(first)
    update = leap_stack.publish(meter, {"meter_event_id": event_id, "energy_kw": 45.0})
    (summary,) = leap_stack.deliver(update)
    assert summary["revisions"] == 1
    # Leap's retry of the 30 kW body arrives after the 45 kW update
    (summary,) = leap_stack.deliver(first)
    assert target_kw_sent(site, meter) == [30.0, 45.0]
    assert site.schedules[(meter, event_id)]["target_kw"] == 45.0
    assert summary["stale"] == 1 and summary["revisions"] == 0 and summary["commands"] == 0
    (event,) = leap_stack.store.events()
    assert event["revision"] == 2 and json.loads(event["timeslot"])["energy_kw"] == 45.0


def test_original_body_after_cancellation_stays_cancelled(leap_stack, site, private_sandbox):
    meter = plain_meters(private_sandbox.portfolio, 1)[0]
    event_id, first, _update, cancel = revision_sequence(leap_stack, meter)
    leap_stack.deliver(first)
    leap_stack.deliver(cancel)
    assert site.requests[-1]["method"] == "DELETE"
    requests_before = len(site.requests)
    (summary,) = leap_stack.deliver(first)
    assert len(site.requests) == requests_before
    assert (meter, event_id) not in site.schedules
    assert summary["stale"] == 1 and summary["commands"] == 0
    assert json.loads(leap_stack.store.events()[0]["timeslot"])["cancelled"] is True


def test_body_never_seen_that_arrives_after_a_newer_one_is_decided_by_leap(
    leap_stack, site, private_sandbox
):
    # the 30 kW delivery is delayed past the 45 kW one: this store never saw 30 kW, Leap holds 45 kW
    meter = plain_meters(private_sandbox.portfolio, 1)[0]
    event_id = str(uuid.uuid4())
    first = leap_stack.publish(meter, slot(event_id, energy_kw=30.0, nomination_kw=50.0))
    update = leap_stack.publish(meter, {"meter_event_id": event_id, "energy_kw": 45.0})
    leap_stack.deliver(update)
    (summary,) = leap_stack.deliver(first)
    assert target_kw_sent(site, meter) == [45.0]
    assert summary["stale"] == 1 and summary["commands"] == 0


def test_genuine_update_back_to_an_earlier_value_is_applied(leap_stack, site, private_sandbox):
    meter = plain_meters(private_sandbox.portfolio, 1)[0]
    event_id = str(uuid.uuid4())
    first = leap_stack.publish(meter, slot(event_id, energy_kw=30.0, nomination_kw=50.0))
    leap_stack.deliver(first)
    leap_stack.deliver(leap_stack.publish(meter, {"meter_event_id": event_id, "energy_kw": 45.0}))
    # Leap really goes back to 30 kW (revision 3): the same content as revision 1, confirmed by Leap
    back = leap_stack.publish(meter, {"meter_event_id": event_id, "energy_kw": 30.0})
    assert back == first
    (summary,) = leap_stack.deliver(back)
    assert summary["revisions"] == 1
    assert target_kw_sent(site, meter) == [30.0, 45.0, 30.0]
    assert site.schedules[(meter, event_id)]["revision"] == 3


def test_reposted_whole_sequence_sends_nothing(leap_stack, site, private_sandbox):
    meter = plain_meters(private_sandbox.portfolio, 1)[0]
    _, first, update, cancel = revision_sequence(leap_stack, meter, deliver=True)
    sent = copy.deepcopy(site.requests)
    assert [r["method"] for r in sent] == ["PUT", "PUT", "DELETE"]
    # the whole sequence again, one delivery per run, then all three in one run
    for body in (first, update, cancel):
        (summary,) = leap_stack.deliver(body)
        assert summary["commands"] == 0
    for body in (first, update, cancel):
        assert leap_stack.post(body).status_code == 200
    (summary,) = leap_stack.tick()
    assert summary["commands"] == 0 and summary["rows"] == 3
    assert len(site.requests) == len(sent)


def test_leap_unreachable_the_held_state_stands(leap_stack, site, private_sandbox):
    meter = plain_meters(private_sandbox.portfolio, 1)[0]
    event_id = str(uuid.uuid4())
    first = leap_stack.publish(meter, slot(event_id, energy_kw=30.0, nomination_kw=50.0))
    update = leap_stack.publish(meter, {"meter_event_id": event_id, "energy_kw": 45.0})
    leap_stack.deliver(update)
    # two 503s: the ordering search gives up after its 2 attempts (the resource would try 5 times)
    private_sandbox.faults.set("503", count=2, path_prefix="/v2/dispatch/meter/search")
    try:
        (summary,) = leap_stack.deliver(first)  # never seen here, and Leap cannot say
    finally:
        private_sandbox.faults.clear()
    assert target_kw_sent(site, meter) == [45.0]
    assert summary["held"] == 1 and summary["commands"] == 0
    # Leap back: the reconciliation finds Leap's 45 kW = the held content, and changes nothing
    run = dispatch_reconciliation_job.execute_in_process(
        resources=leap_stack.resources, instance=leap_stack.instance
    )
    assert run.success
    assert target_kw_sent(site, meter) == [45.0]


def sign(body: dict, msg_id: str, at: datetime | None = None) -> dict:
    at = at or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, at, json.dumps(body)),
    }


def test_replayed_older_signed_delivery_changes_nothing(
    tmp_path, private_sandbox, site, instance, ops_location
):
    stack = LeapStack(
        tmp_path, private_sandbox, site, instance, ops_location, signing_secret=SECRET
    )
    with stack.receiver:
        meter = plain_meters(private_sandbox.portfolio, 1)[0]
        event_id = str(uuid.uuid4())
        first = stack.publish(meter, slot(event_id, energy_kw=30.0, nomination_kw=50.0))
        first_headers = sign(first, "msg_first")
        stack.deliver(first, **first_headers)
        update = stack.publish(meter, {"meter_event_id": event_id, "energy_kw": 45.0})
        stack.deliver(update, **sign(update, "msg_update"))
        # the first signed delivery replayed byte for byte, inside the signature tolerance
        (summary,) = stack.deliver(first, **first_headers)
        assert target_kw_sent(site, meter) == [30.0, 45.0]
        assert summary["replays"] == 1 and summary["commands"] == 0
        # and a replay of the current one, which changes nothing either
        (summary,) = stack.deliver(update, **sign(update, "msg_update"))
        assert summary["replays"] == 1
        assert target_kw_sent(site, meter) == [30.0, 45.0]
        inbox = stack.store.inbox()
        assert [r.headers.get("x-vpp-signature") for r in inbox] == ["verified"] * 4


def test_client_cannot_claim_a_verified_signature(leap_stack, private_sandbox):
    # without a signing secret nothing is verified: a client's own x-vpp-* header is not stored
    meter = plain_meters(private_sandbox.portfolio, 1)[0]
    body = leap_stack.publish(meter, slot(energy_kw=5.0))
    response = leap_stack.post(body, **{"x-vpp-signature": "verified", "webhook-id": "msg_x"})
    assert response.status_code == 200
    (row,) = leap_stack.store.inbox()
    assert "x-vpp-signature" not in row.headers and row.headers["webhook-id"] == "msg_x"


def test_reconciliation_takes_a_group_events_members_from_leap(leap_stack, site, private_sandbox):
    portfolio = private_sandbox.portfolio
    a, b, c = plain_meters(portfolio, 3)
    group_id = str(uuid.uuid4())
    body = leap_stack.publish(
        group_id,
        slot(level="group", energy_kw=30.0, nomination_kw=60.0),
        level="group",
        meter_ids=[a, b, c],
    )
    # the webhook names two of the three members Leap lists for the event
    body["group_dispatches"][0]["meter_ids"] = [a, b]
    leap_stack.deliver(body)
    assert {r["meter_id"] for r in puts(site)} == {a, b}
    run = dispatch_reconciliation_job.execute_in_process(
        resources=leap_stack.resources, instance=leap_stack.instance
    )
    assert run.success
    (event,) = [e for e in leap_stack.store.events() if e["level"] == "group"]
    assert sorted(json.loads(event["meter_ids"])) == sorted([a, b, c])
    assert event["revision"] == 2 and event["source"] == "reconciliation"
    assert c in {r["meter_id"] for r in puts(site)}
    assert BASE  # the events start in the future: nothing expires during the test


def test_group_body_never_seen_after_a_newer_one_is_decided_by_leaps_group_search(
    leap_stack, site, private_sandbox
):
    # Leap's group dispatch search (market_group_event_ids) decides: it holds 50 kW
    members = plain_meters(private_sandbox.portfolio, 2)
    group_id = str(uuid.uuid4())
    first = leap_stack.publish(
        group_id,
        slot(level="group", energy_kw=30.0, nomination_kw=60.0),
        level="group",
        meter_ids=members,
    )
    event_id = first["group_dispatches"][0]["timeslots"][0]["market_group_event_id"]
    update = leap_stack.publish(
        group_id,
        {"market_group_event_id": event_id, "energy_kw": 50.0},
        level="group",
        meter_ids=members,
    )
    leap_stack.deliver(update)
    sent = len(site.requests)
    (summary,) = leap_stack.deliver(first)  # the delayed 30 kW body, never seen here
    assert len(site.requests) == sent
    assert sum(site.schedules[(m, event_id)]["target_kw"] for m in members) == pytest.approx(50.0)
    assert summary["stale"] == 1
