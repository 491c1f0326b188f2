"""What the ordering check costs a dispatch run: an update of a known event (Leap's dispatch search by event
id decides its order) next to the same update decided without asking Leap, and a new event (never asks).

    .venv/bin/python bench/bench_dispatch_ordering.py [--runs 100]

Real parts on 127.0.0.1: the sandbox (Leap; events published there so its search knows them), a recording
site controller, a SQLite ops store in a temporary folder. Each measured run is one :func:`process_inbox`
call over one stored delivery (plan + one PUT); the Leap search goes over HTTP through ``LeapClient``.
Prints JSON (milliseconds per run: p50, p95, mean).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vpp_pipeline.dispatch.delivery import SiteControllerClient
from vpp_pipeline.dispatch.ordering import leap_event_lookup
from vpp_pipeline.dispatch.processing import process_inbox
from vpp_pipeline.leap import LeapClient
from vpp_pipeline.leap.client import format_utc
from vpp_pipeline.ops import OpsStore
from vpp_pipeline.sandbox import SandboxServer
from vpp_pipeline.sandbox.site_controller import SiteControllerServer


def stats(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "runs": len(values),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-ordering-"))
    store = OpsStore.initialize(folder / "ops.sqlite")
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    with (
        SandboxServer(seed=7, port=0) as leap_server,
        SiteControllerServer(token="t") as site,
        SiteControllerClient(site.base_url, "t", max_attempts=1) as client,
        LeapClient(base_url=leap_server.base_url, api_key=leap_server.api_key) as leap,
    ):
        meter = next(
            m for m, s in leap_server.portfolio.sites.items() if s.battery_power_kw is None
        )
        lookup = leap_event_lookup(leap)
        with store.session() as s:  # the site is known: every run plans and sends one PUT
            s.upsert_sites([{"meter_id": meter, "battery_power_kw": None}], [], datetime.now(UTC))

        def publish(timeslot: dict) -> bytes:
            answer = httpx.post(
                f"{leap_server.base_url}/_sandbox/dispatch/publish",
                json={"level": "meter", "recipient_id": meter, "timeslot": timeslot, "push": False},
                timeout=10,
            ).json()["timeslot"]
            answer.pop("communication_test", None)
            return json.dumps(
                {"meter_dispatches": [{"meter_id": meter, "timeslots": [answer]}]}
            ).encode()

        def run(body: bytes, with_leap: bool) -> float:
            with store.session() as s:
                after = s.max_inbox_id()
                s.insert_inbox(
                    received_at=datetime.now(UTC),
                    source="webhook",
                    level="meter",
                    body=body,
                    headers={},
                )
            t0 = time.perf_counter()
            process_inbox(
                store,
                client,
                after=after,
                leap_lookup=lookup if with_leap else None,
                retry_policy=None,
                log_fn=lambda _m: None,
            )
            return (time.perf_counter() - t0) * 1000

        figures: dict[str, list[float]] = {"new_event": [], "update_leap": [], "update_no_leap": []}
        for i in range(args.runs + 5):
            slot_start = start + timedelta(minutes=i)
            event_id = str(uuid.uuid4())
            base = {
                "meter_event_id": event_id,
                "start_time": format_utc(slot_start),
                "end_time": format_utc(slot_start + timedelta(minutes=30)),
                "energy_kw": 10.0,
                "nomination_kw": None,
                "programs": ["CCA"],
                "priority": 2,
                "is_voluntary": False,
                "performance_compensation_cap": "up-to-site-load",
                "dispatch_event_types": ["day-ahead"],
            }
            new = run(publish(base), True)
            update_leap = run(publish({"meter_event_id": event_id, "energy_kw": 12.0}), True)
            update_plain = run(publish({"meter_event_id": event_id, "energy_kw": 14.0}), False)
            if i >= 5:  # warm-up
                figures["new_event"].append(new)
                figures["update_leap"].append(update_leap)
                figures["update_no_leap"].append(update_plain)
        puts = sum(1 for r in site.requests if r["method"] == "PUT")
    print(json.dumps({k: stats(v) for k, v in figures.items()} | {"site_puts": puts}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
