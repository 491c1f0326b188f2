"""Plain-text tables and JSON for a ``BacktestResult`` (the CLI and the benchmark print these).

All money in USD over the whole backtest window and every CAISO battery; "net" is the value
against the same sites with their batteries idle (see ``backtest``).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from vpp_pipeline.bidding.backtest import POLICIES, BacktestResult

_TOTAL_COLUMNS = (
    ("market_revenue_usd", "market $"),
    ("energy_savings_usd", "TOU savings $"),
    ("demand_charge_usd", "demand charge $"),
    ("bill_savings_usd", "bill savings $"),
    ("degradation_usd", "degradation $"),
    ("soc_change_usd", "stored energy $"),
    ("total_value_usd", "net value $"),
    ("value_capture", "capture"),
    ("sum_month_peak_kw", "month peaks kW"),
    ("days_awards_raised_peak", "award-raised peaks"),
    ("shortfall_kwh", "undelivered kWh"),
)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> str:
    cells = [header, *[[_fmt(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def totals_table(result: BacktestResult) -> str:
    """One row per policy: money, capture, the months' billed peaks, award-raised peaks."""
    rows = [
        [r["policy"], *[r[c] for c, _ in _TOTAL_COLUMNS]]
        for r in result.totals.iter_rows(named=True)
    ]
    return _table(["policy", *[label for _, label in _TOTAL_COLUMNS]], rows)


def per_day_table(result: BacktestResult) -> str:
    """One row per trading day: each policy's net value (summed over batteries)."""
    wide = result.per_day().pivot(on="policy", index="trading_day", values="net_value_usd")
    policies = [p for p in POLICIES if p in wide.columns]
    rows = [
        [r["trading_day"].isoformat(), *[r[p] for p in policies]]
        for r in wide.sort("trading_day").iter_rows(named=True)
    ]
    return _table(["trading day", *[f"{p} net $" for p in policies]], rows)


def report_text(result: BacktestResult) -> str:
    days = result.days
    head = (
        f"bid backtest: seed {result.seed}, {len(days)} trading days "
        f"{days[0].isoformat()}..{days[-1].isoformat()}, "
        f"{result.timings['batteries']} CAISO batteries, {result.timings['total_s']} s"
    )
    return f"{head}\n\n{per_day_table(result)}\n\n{totals_table(result)}\n"


def report_json(result: BacktestResult) -> dict:
    """Totals per policy, per-day net value per policy, the months' peaks and timings."""
    per_day = result.per_day().with_columns(pl.col("trading_day").cast(pl.String))
    return {
        "seed": result.seed,
        "first_day": result.days[0].isoformat(),
        "last_day": result.days[-1].isoformat(),
        "timings": result.timings,
        "totals": result.totals.to_dicts(),
        "per_day": per_day.to_dicts(),
        "months": result.months.to_dicts(),
    }


def write_outputs(result: BacktestResult, json_path: Path | None, csv_path: Path | None) -> None:
    """The JSON report and/or every (policy, battery, day) row as CSV."""
    if json_path is not None:
        json_path.write_text(json.dumps(report_json(result), indent=2, default=str))
    if csv_path is not None:
        result.rows.write_csv(csv_path)
