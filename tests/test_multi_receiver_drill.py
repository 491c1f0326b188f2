"""Several at once, on one PostgreSQL ops store: two ``vpp receiver`` processes and two processes running
dispatch_job; 1,000 deliveries (30% duplicates, updates and cancellations) over both receivers, one
receiver SIGKILLed mid-burst. Every acknowledged delivery is stored and applied, and the site controller
gets exactly one command per event revision, in revision order per schedule (see
``vpp_pipeline.sandbox.drill`` for the plan and the checks; ``bench/bench_drill.py`` runs bigger ones)."""

from __future__ import annotations

import pytest

from vpp_pipeline.sandbox.drill import run_drill

pytestmark = pytest.mark.postgres


def test_two_receivers_two_workers_one_killed_mid_burst(postgres_location):
    result = run_drill(postgres_location, deliveries=1000, duplicate_share=0.3, seed=14)
    assert result["problems"] == []
    assert result["deliveries_planned"] == 1000 and result["duplicates_planned"] == 300
    assert result["acked"] >= 1000 and result["lost"] == 0
    # the kill happened mid-burst, and deliveries to the dead receiver failed over to the live one
    assert 0 < result["killed_receiver"]["after_acks"] < 1000 and result["failovers"] > 0
    assert result["site_commands"] == result["revisions"] == 700
    assert result["duplicates_suppressed"] >= 300
    assert sum(w["rows"] for w in result["workers"]) == result["inbox_rows"]
    assert all(w["rows"] > 0 for w in result["workers"])  # both workers applied rows
