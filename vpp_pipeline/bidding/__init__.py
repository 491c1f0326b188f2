"""Bid & Dispatch for CAISO batteries: prices, tariffs, load forecast, optimisation, bid
curves, validation and submission. Pure domain code here takes and returns plain data
(numpy arrays, dicts); ``pipeline`` runs the steps over DuckDB; ``assets/bid.py`` wires them
into Dagster; ``demo.run_bid_demo`` runs them end to end against the sandbox.
``backtest.run_backtest`` (``vpp backtest-bids``) replays past trading days through the same
steps and settles them (``settlement``) against the sandbox's truth, beside perfect
foresight and a naive policy (docs/bidding.md).
"""

from vpp_pipeline.bidding.curves import build_curve
from vpp_pipeline.bidding.endpoints import BIDS_PATH, DAY_AHEAD_PRICES_PATH
from vpp_pipeline.bidding.market import (
    MARKET_TIMEZONE,
    bid_deadline,
    next_biddable_day,
    trading_day_hours,
)
from vpp_pipeline.bidding.optimize import BatteryPlan, BidProblem, optimize_batteries
from vpp_pipeline.bidding.submission import SubmissionReport, meter_batches, submit_bids
from vpp_pipeline.bidding.tariffs import Tariff, TariffBook, load_tariffs
from vpp_pipeline.bidding.validation import BidValidationError, validate_bids

__all__ = [
    "BIDS_PATH",
    "DAY_AHEAD_PRICES_PATH",
    "MARKET_TIMEZONE",
    "BatteryPlan",
    "BidProblem",
    "BidValidationError",
    "SubmissionReport",
    "Tariff",
    "TariffBook",
    "bid_deadline",
    "build_curve",
    "load_tariffs",
    "meter_batches",
    "next_biddable_day",
    "optimize_batteries",
    "submit_bids",
    "trading_day_hours",
    "validate_bids",
]
