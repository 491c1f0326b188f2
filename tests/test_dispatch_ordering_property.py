"""Property: whatever the order of deliveries, duplicates, signed replays, cancellations and Leap outages,
each site ends in Leap's final state and never goes through an older revision (docs/dispatch-ordering.md).

Hypothesis draws sequences of steps over a few events (one meter each): Leap publishes a revision (a new
``energy_kw``, or a cancellation), a delivery of any revision published so far is stored (unsigned, or
signed with that revision's ``webhook-id``: a second delivery of it is a replay), a dispatch run applies
what is stored, Leap's dispatch search goes down or comes back. At the end Leap is up and re-delivers each
event's latest revision (as its retries and the reconciliation would) and a last run applies it.

The path: inbox rows written straight into a real SQLite ops store (the receiver's HTTP layer is covered by
tests/test_dispatch_ordering.py), :func:`process_inbox` with Leap's answers from this test's model of
Leap (the same records its dispatch search returns), and delivery over real HTTP to a recording site
controller. ``VPP_PROPERTY_EXAMPLES`` raises the number of sequences (BENCHMARKS.md has a longer run)."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vpp_pipeline.dispatch.delivery import SiteControllerClient
from vpp_pipeline.dispatch.ordering import SIGNATURE_MARK
from vpp_pipeline.dispatch.processing import process_inbox
from vpp_pipeline.leap.client import format_utc
from vpp_pipeline.ops import OpsStore
from vpp_pipeline.sandbox.site_controller import SiteControllerServer

EXAMPLES = int(os.environ.get("VPP_PROPERTY_EXAMPLES", "500"))
N_EVENTS = 2

# steps: ("publish", event, cancel?), ("deliver", event, pick, signed?, run after?), ("run",),
# ("leap", up?); a pick counts back from the latest revision (0 = the latest, 1 = the one before, ...)
step = st.one_of(
    st.tuples(st.just("publish"), st.integers(0, N_EVENTS - 1), st.booleans()),
    st.tuples(
        st.just("deliver"),
        st.integers(0, N_EVENTS - 1),
        st.integers(0, 3),
        st.booleans(),
        st.booleans(),
    ),
    st.tuples(st.just("run")),
    st.tuples(st.just("leap"), st.booleans()),
)
#: sequences run every time: an older body after an update, the original after a cancellation (signed),
#: a body never seen while Leap is down, signed replays in one batch
KNOWN = [
    [("publish", 0, False), ("deliver", 0, 0, False, True), ("publish", 0, False),
     ("deliver", 0, 0, False, True), ("deliver", 0, 1, False, True)],
    [("publish", 0, False), ("deliver", 0, 0, True, True), ("publish", 0, True),
     ("deliver", 0, 0, True, True), ("deliver", 0, 1, True, True)],
    [("publish", 0, False), ("publish", 0, False), ("deliver", 0, 0, False, True),
     ("leap", False), ("deliver", 0, 1, False, True)],
    [("publish", 1, False), ("deliver", 1, 0, True, False), ("publish", 1, False),
     ("deliver", 1, 0, True, False), ("run",), ("deliver", 1, 1, True, True)],
]  # fmt: skip


@dataclass
class LeapModel:
    """Leap's side: every published revision of each event (its search returns the latest)."""

    start: datetime
    event_ids: list[str]
    meters: list[str]
    revisions: list[list[dict]] = field(default_factory=list)
    up: bool = True
    next_kw: float = 10.0

    def publish(self, index: int, cancel: bool) -> None:
        history = self.revisions[index]
        if history and history[-1]["cancelled"]:
            return  # a cancelled event stays cancelled
        self.next_kw += 1.0  # every revision has its own energy_kw: a PUT names its revision
        timeslot = {
            "meter_event_id": self.event_ids[index],
            "start_time": format_utc(self.start),
            "end_time": format_utc(self.start + timedelta(hours=1)),
            "energy_kw": history[-1]["energy_kw"] if cancel and history else self.next_kw,
            "nomination_kw": None,
            "cancelled": cancel and bool(history),
            "programs": ["CCA"],
            "priority": 2,
            "is_voluntary": False,
            "performance_compensation_cap": "up-to-site-load",
            "dispatch_event_types": ["day-ahead"],
        }
        history.append(timeslot)

    def body(self, index: int, revision: int) -> bytes:
        record = {"meter_id": self.meters[index], "timeslots": [self.revisions[index][revision]]}
        return json.dumps(
            {
                "integration_test_notification": False,
                "communication_test": False,
                "meter_dispatches": [record],
            }
        ).encode()

    def lookup(self, candidates: list[dict]) -> dict:
        """The ``LeapLookup`` of this model: the latest revision of each asked event."""
        if not self.up:
            raise ConnectionError("Leap's dispatch search is down")
        found = {}
        for candidate in candidates:
            index = self.event_ids.index(candidate["event_id"])
            latest = self.revisions[index][-1]
            found[candidate["event_key"]] = (
                "meter",
                {"meter_id": self.meters[index], "timeslots": [latest]},
            )
        return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    store = OpsStore.initialize(tmp_path_factory.mktemp("prop") / "ops.sqlite")
    with (
        SiteControllerServer(token="t") as site,
        SiteControllerClient(site.base_url, "t", max_attempts=1) as client,
    ):
        yield store, site, client


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=14))
@example(steps=KNOWN[0])
@example(steps=KNOWN[1])
@example(steps=KNOWN[2])
@example(steps=KNOWN[3])
def test_each_site_ends_in_leaps_state_and_never_goes_back(world, steps):
    store, site, client = world
    site.clear()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    leap = LeapModel(
        start=start,
        event_ids=[str(uuid.uuid4()) for _ in range(N_EVENTS)],
        meters=[f"m-{uuid.uuid4().hex[:12]}" for _ in range(N_EVENTS)],
        revisions=[[] for _ in range(N_EVENTS)],
    )
    at = datetime.now(UTC)
    with store.session() as s:
        s.upsert_sites([{"meter_id": m, "battery_power_kw": None} for m in leap.meters], [], at)
        after = s.max_inbox_id()

    def store_delivery(index: int, revision: int, signed: bool) -> None:
        headers = {}
        if signed:
            headers = {
                "webhook-id": f"msg_{leap.event_ids[index]}_{revision}",
                SIGNATURE_MARK: "verified",
            }
        with store.session() as s:
            s.insert_inbox(
                received_at=datetime.now(UTC),
                source="webhook",
                level="meter",
                body=leap.body(index, revision),
                headers=headers,
            )

    def run() -> None:
        process_inbox(
            store,
            client,
            after=after,
            leap_lookup=leap.lookup,
            retry_policy=None,
            log_fn=lambda _msg: None,
        )

    for action in steps:
        if action[0] == "publish":
            leap.publish(action[1], action[2])
        elif action[0] == "deliver":
            history = leap.revisions[action[1]]
            if history:
                revision = max(len(history) - 1 - action[2], 0)
                store_delivery(action[1], revision, action[3])
                if action[4]:
                    run()
        elif action[0] == "run":
            run()
        else:
            leap.up = action[1]
    # Leap comes back and its retries bring each event's latest revision; a last run applies it
    leap.up = True
    for index, history in enumerate(leap.revisions):
        if history:
            store_delivery(index, len(history) - 1, False)
    run()

    for index, history in enumerate(leap.revisions):
        meter, event_id = leap.meters[index], leap.event_ids[index]
        sent = [r for r in site.requests if r["meter_id"] == meter]
        # which Leap revision each PUT carried (energy_kw is unique per revision)
        order = {h["energy_kw"]: n for n, h in enumerate(history) if not h["cancelled"]}
        put_revisions = [order[r["json"]["target_kw"]] for r in sent if r["method"] == "PUT"]
        assert put_revisions == sorted(put_revisions), f"went back: {put_revisions} {history}"
        methods = [r["method"] for r in sent]
        if "DELETE" in methods:
            assert "PUT" not in methods[methods.index("DELETE") :], methods  # no re-schedule
        held = site.schedules.get((meter, event_id))
        if not history:
            assert sent == []
        elif history[-1]["cancelled"]:
            assert held is None, (history, methods)
        else:
            assert held is not None and held["target_kw"] == history[-1]["energy_kw"], (
                held,
                history,
            )
            assert put_revisions[-1] == len(history) - 1
