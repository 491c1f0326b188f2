"""Submitting bids to Leap: validate everything first, then post in batches of at most 100
meters per call (``LeapClient.post_json`` retries 429/5xx/timeouts).

Re-submitting the same meter/hour replaces the curve (Leap's modify); an empty curve cancels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vpp_pipeline.bidding.endpoints import BIDS_PATH
from vpp_pipeline.bidding.validation import (
    MAX_METERS_PER_CALL,
    BidValidationError,
    validate_bids,
)
from vpp_pipeline.leap import LeapClient


@dataclass
class SubmissionReport:
    """What was sent and what Leap answered. ``statuses`` counts the per-bid statuses of the
    responses (e.g. PLACED, REPLACED, CANCELLED)."""

    calls: int = 0
    bids_sent: int = 0
    meters: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    results: list[dict] = field(default_factory=list)


def meter_batches(bids: Sequence[dict], max_meters: int = MAX_METERS_PER_CALL) -> list[list[dict]]:
    """Split ``bids`` into calls of at most ``max_meters`` distinct meters (all of a meter's
    hours stay in one call), keeping input order within a meter."""
    by_meter: dict[str, list[dict]] = {}
    for bid in bids:
        by_meter.setdefault(bid["meter_id"], []).append(bid)
    meters = list(by_meter)
    return [
        [bid for meter in meters[i : i + max_meters] for bid in by_meter[meter]]
        for i in range(0, len(meters), max_meters)
    ]


def submit_bids(
    client: LeapClient,
    bids: Sequence[dict],
    *,
    now: datetime | None = None,
    max_meters: int = MAX_METERS_PER_CALL,
) -> SubmissionReport:
    """Validate ``bids`` against Leap's rules (raises :class:`BidValidationError` listing
    every problem, sending nothing) and post them in batches."""
    now = now or datetime.now(UTC)
    bids = list(bids)
    report = SubmissionReport(meters=len({b["meter_id"] for b in bids}))
    if not bids:
        return report
    batches = meter_batches(bids, max_meters)
    problems = [
        p for batch in batches for p in validate_bids(batch, now=now, max_meters=max_meters)
    ]
    if problems:
        raise BidValidationError(problems)
    for batch in batches:
        answer = client.post_json(BIDS_PATH, {"bids": batch})
        report.calls += 1
        report.bids_sent += len(batch)
        for result in answer.get("bids", []) if isinstance(answer, dict) else []:
            report.results.append(result)
            status = str(result.get("status"))
            report.statuses[status] = report.statuses.get(status, 0) + 1
    return report
