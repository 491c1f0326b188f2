"""``run_bid_demo``: build and submit the next biddable trading day's bids through Dagster.

Expects the connect and manage stages (meters, enrollments, participation preferences)
and, for load forecasts, ``interval_reads`` to be in the DuckDB file already (``vpp demo``
runs those stages first). Batteries without interval history get empty curves, reported as
``NO_LOAD_HISTORY``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
import duckdb

from vpp_pipeline.bidding import market

BID_ASSETS = ("tariffs", "day_ahead_prices", "load_forecast", "bid_inputs", "bids")


def run_bid_demo(
    resources: dict,
    *,
    instance: dg.DagsterInstance | None = None,
    trading_day: date | None = None,
    now: datetime | None = None,
) -> dict:
    """Materialize the bid assets (and their checks) for ``trading_day`` (default: the next
    trading day still open under the 24-hour rule) as one Dagster run; return a summary:
    ``{"trading_day", "deadline", "success", "failed_checks", "batteries", "hours",
    "bids", "with_curve", "cancels", "offered_kwh", "price_sources", "status_hours",
    "leap_statuses"}``. ``resources`` are the code location's (``leap``, ``duckdb``)."""
    from vpp_pipeline.definitions import STAGE_MODULES

    day = trading_day or market.next_biddable_day(now or datetime.now(UTC))
    result = dg.materialize(
        [
            *dg.load_assets_from_modules(STAGE_MODULES),
            *dg.load_asset_checks_from_modules(STAGE_MODULES),
        ],
        selection=dg.AssetSelection.assets(*BID_ASSETS),
        partition_key=day.isoformat(),
        resources=resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        # Only errors on the console: callers print the summary this returns.
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        tags={"vpp/launched_by": "run_bid_demo"},
    )
    summary: dict = {
        "trading_day": day.isoformat(),
        "deadline": market.bid_deadline(day).isoformat(),
        "success": result.success,
        "failed_checks": [
            e.asset_check_key.name for e in result.get_asset_check_evaluations() if not e.passed
        ],
    }
    database = resources["duckdb"].database
    with duckdb.connect(database, read_only=True) as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        if "bid_inputs" in tables:
            (batteries, hours), *_ = conn.execute(
                "SELECT count(DISTINCT meter_id), count(DISTINCT hour_start) FROM bid_inputs "
                "WHERE trading_day = $d",
                {"d": day},
            ).fetchall()
            summary.update(batteries=batteries, hours=hours)
            summary["status_hours"] = dict(
                conn.execute(
                    "SELECT status, count(*) FROM bid_inputs WHERE trading_day = $d GROUP BY ALL",
                    {"d": day},
                ).fetchall()
            )
        if "day_ahead_prices" in tables:
            summary["price_sources"] = dict(
                conn.execute(
                    "SELECT source, count(*) FROM day_ahead_prices WHERE trading_day = $d "
                    "GROUP BY ALL",
                    {"d": day},
                ).fetchall()
            )
        if "bids" in tables:
            (n, with_curve, offered), *_ = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE points > 0), round(sum(offered_kw), 1) "
                "FROM bids WHERE trading_day = $d",
                {"d": day},
            ).fetchall()
            summary.update(
                bids=n, with_curve=with_curve, cancels=n - with_curve, offered_kwh=offered
            )
            summary["leap_statuses"] = dict(
                conn.execute(
                    "SELECT leap_status, count(*) FROM bids WHERE trading_day = $d GROUP BY ALL",
                    {"d": day},
                ).fetchall()
            )
    return summary
