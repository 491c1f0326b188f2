"""The accumulated event history: how far a refresh of ``dispatch_events`` reads, and the
merge of that read into the stored table (sql/dispatch_reads.sql, sql/dispatch_events.sql).

``dispatch_events`` never forgets an event: the first run reads ``dispatch_backfill_days``
of history (``VPP_DISPATCH_BACKFILL_DAYS``, default 400); every later refresh re-reads only
``dispatch_lookback_days`` back (``VPP_DISPATCH_LOOKBACK_DAYS``, default 120) and
``dispatch_lookahead_days`` ahead, and merges what it read into the stored rows. Times UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from vpp_pipeline.measurement.config import MeasurementConfig
from vpp_pipeline.warehouse import run_models

#: How a row was first read (``dispatch_events.first_seen_via``).
SEEN_VIA = ("backfill", "search", "ops_store")


@dataclass(frozen=True)
class ReadWindow:
    """The search window of one refresh: event starts in ``[start, end)`` (UTC)."""

    start: datetime
    end: datetime
    #: True on the first run (no history yet): the window reaches back the backfill days.
    backfill: bool

    @property
    def search_read_via(self) -> str:
        return "backfill" if self.backfill else "search"


def has_history(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``dispatch_events`` exists with its history columns. A table from before
    they existed held only a sliding window, so it counts as no history (backfill)."""
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'main' "
            "AND table_name = 'dispatch_events' AND column_name = 'first_seen_at'"
        ).fetchall()[0][0]
    )


def read_window(config: MeasurementConfig, now: datetime, backfill: bool) -> ReadWindow:
    """From UTC midnight ``lookback`` days (``backfill`` days on a first run, never fewer
    than the lookback) before ``now`` to ``lookahead`` days after it."""
    days = config.dispatch_lookback_days
    if backfill:
        days = max(days, config.dispatch_backfill_days)
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return ReadWindow(
        start=midnight - timedelta(days=days),
        end=now + timedelta(days=config.dispatch_lookahead_days),
        backfill=backfill,
    )


def merge_dispatch_reads(
    conn: duckdb.DuckDBPyConnection, window: ReadWindow, now: datetime
) -> dict[str, int]:
    """Build this refresh's read from the staged search frames and ops mirror, merge it into
    ``dispatch_events`` (one transaction), and count what changed: ``read`` (events in the
    read), ``new`` (first seen now), ``new_versions`` (revision_count went up, new events
    included) and ``total`` rows."""
    versions_before = (
        conn.execute("SELECT coalesce(sum(revision_count), 0) FROM dispatch_events").fetchall()[0][
            0
        ]
        if has_history(conn)
        else 0
    )
    run_models(
        conn,
        "dispatch_reads",
        "dispatch_events",
        now=now.astimezone(UTC),
        search_read_via=window.search_read_via,
    )
    read, new, versions_after, total = conn.execute(
        """
        SELECT
            count(*) FILTER (WHERE last_seen_at = getvariable('now')),
            count(*) FILTER (WHERE first_seen_at = getvariable('now')),
            coalesce(sum(revision_count), 0),
            count(*)
        FROM dispatch_events
        """
    ).fetchall()[0]
    return {
        "read": int(read),
        "new": int(new),
        "new_versions": int(versions_after - versions_before),
        "total": int(total),
    }
