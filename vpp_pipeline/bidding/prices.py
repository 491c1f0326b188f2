"""Day-ahead prices: CAISO OASIS ``PRC_LMP`` CSV drops, the sandbox's synthetic endpoint, and
the staged frame that ``sql/day_ahead_prices.sql`` turns into the ``day_ahead_prices`` table.

OASIS layout (one row per interval, node and LMP component; the price in $/MWh is in the
column named ``MW``)::

    INTERVALSTARTTIME_GMT,INTERVALENDTIME_GMT,OPR_DT,OPR_HR,OPR_INTERVAL,NODE_ID_XML,NODE_ID,
    NODE,MARKET_RUN_ID,LMP_TYPE,XML_DATA_ITEM,PNODE_RESMRID,GRP_TYPE,POS,MW,GROUP
    2024-07-01T07:00:00-00:00,2024-07-01T08:00:00-00:00,2024-07-01,1,0,DLAP_PGAE-APND,...,DAM,LMP,LMP_PRC,...,41.2,1

Only ``MARKET_RUN_ID = DAM`` rows of ``LMP_TYPE = LMP`` (the total, not its energy /
congestion / loss / GHG components) are kept. ``OPR_DT`` is the trading day (Pacific);
``OPR_HR`` its hour ending (1-25).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path

import polars as pl

from vpp_pipeline.bidding.endpoints import DAY_AHEAD_PRICES_PATH
from vpp_pipeline.leap import LeapApiError, LeapClient

SOURCE_OASIS_CSV = "oasis_csv"
SOURCE_SANDBOX = "sandbox_synthetic"
SOURCE_FORECAST = "forecast"
CAISO_LOAD_ZONES = ("DLAP_PGAE-APND", "DLAP_SCE-APND", "DLAP_SDGE-APND")
DEFAULT_LANDING_DIR = "data/landing/prices"

OASIS_COLUMNS = (
    "INTERVALSTARTTIME_GMT",
    "INTERVALENDTIME_GMT",
    "OPR_DT",
    "OPR_HR",
    "OPR_INTERVAL",
    "NODE_ID_XML",
    "NODE_ID",
    "NODE",
    "MARKET_RUN_ID",
    "LMP_TYPE",
    "XML_DATA_ITEM",
    "PNODE_RESMRID",
    "GRP_TYPE",
    "POS",
    "MW",
    "GROUP",
)

#: The staged actual-price frame (``stg_price_actuals``): one row per zone and UTC hour.
ACTUALS_SCHEMA = {
    "load_zone": pl.String,
    "trading_day": pl.Date,
    "opr_hr": pl.Int32,
    "hour_start": pl.Datetime("us", "UTC"),
    "hour_end": pl.Datetime("us", "UTC"),
    "lmp_usd_per_mwh": pl.Float64,
    "source": pl.String,
    "source_file": pl.String,
}


def landing_dir() -> Path:
    """``VPP_PRICES_LANDING_DIR`` (default ``data/landing/prices``)."""
    value = os.environ.get("VPP_PRICES_LANDING_DIR", "").strip()
    return Path(value or DEFAULT_LANDING_DIR)


def empty_actuals() -> pl.DataFrame:
    return pl.DataFrame(schema=ACTUALS_SCHEMA)


def read_oasis_csvs(paths: Iterable[Path], zones: Sequence[str] | None = None) -> pl.DataFrame:
    """Day-ahead LMPs from OASIS ``PRC_LMP`` CSV files (``zones``: keep only these nodes).

    Raises ValueError naming the file when a required column is missing.
    """
    frames = []
    for path in sorted(Path(p) for p in paths):
        raw = pl.read_csv(path, infer_schema=False)
        missing = {
            "INTERVALSTARTTIME_GMT",
            "INTERVALENDTIME_GMT",
            "OPR_DT",
            "OPR_HR",
            "NODE",
            "MARKET_RUN_ID",
            "LMP_TYPE",
            "MW",
        } - set(raw.columns)
        if missing:
            raise ValueError(f"{path}: not an OASIS PRC_LMP file; missing {sorted(missing)}")
        frames.append(
            raw.filter((pl.col("MARKET_RUN_ID") == "DAM") & (pl.col("LMP_TYPE") == "LMP")).select(
                pl.col("NODE").alias("load_zone"),
                pl.col("OPR_DT").str.to_date("%Y-%m-%d").alias("trading_day"),
                pl.col("OPR_HR").cast(pl.Int32).alias("opr_hr"),
                _gmt("INTERVALSTARTTIME_GMT").alias("hour_start"),
                _gmt("INTERVALENDTIME_GMT").alias("hour_end"),
                pl.col("MW").cast(pl.Float64).alias("lmp_usd_per_mwh"),
                pl.lit(SOURCE_OASIS_CSV).alias("source"),
                pl.lit(path.name).alias("source_file"),
            )
        )
    if not frames:
        return empty_actuals()
    out = pl.concat(frames)
    if zones is not None:
        out = out.filter(pl.col("load_zone").is_in(list(zones)))
    # the same hour in two drops: the later file (by name) wins
    return out.unique(["load_zone", "hour_start"], keep="last", maintain_order=True).cast(
        ACTUALS_SCHEMA
    )


def _gmt(column: str) -> pl.Expr:
    # OASIS writes "-00:00" for UTC, which strptime's %z rejects
    return (
        pl.col(column)
        .str.replace(r"-00:00$", "+00:00")
        .str.replace(r"Z$", "+00:00")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%:z", time_unit="us")
        .dt.convert_time_zone("UTC")
    )


def fetch_api_prices(
    client: LeapClient, start: date, end: date, zones: Sequence[str]
) -> tuple[pl.DataFrame, list[str], str | None]:
    """Prices for trading days ``[start, end]`` from the prices endpoint.

    Returns ``(actuals, unpublished_days, notice)``. A 404 (real Leap has no prices
    endpoint) returns an empty frame and every day as unpublished.
    """
    try:
        answer = client.post_json(
            DAY_AHEAD_PRICES_PATH,
            {
                "start_date": start.isoformat(),
                "end_date": end.isoformat(),
                "load_zones": list(zones),
            },
        )
    except LeapApiError as exc:
        if exc.status == 404:
            return empty_actuals(), [], None
        raise
    rows = answer.get("prices") or []
    source = SOURCE_SANDBOX if answer.get("synthetic") else "api"
    frame = pl.DataFrame(
        {
            "load_zone": [r["load_zone"] for r in rows],
            "trading_day": [date.fromisoformat(r["trading_day"]) for r in rows],
            "opr_hr": [int(r["opr_hr"]) for r in rows],
            "hour_start": [_utc(r["interval_start_time"]) for r in rows],
            "hour_end": [_utc(r["interval_end_time"]) for r in rows],
            "lmp_usd_per_mwh": [float(r["lmp_usd_per_mwh"]) for r in rows],
            "source": [source] * len(rows),
            "source_file": [None] * len(rows),
        },
        schema=ACTUALS_SCHEMA,
    )
    return frame, list(answer.get("unpublished_days") or []), answer.get("notice")


def _utc(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
