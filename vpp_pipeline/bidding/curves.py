"""Bid curves from bid inputs: what to offer each hour and at what price.

A curve is Leap's ascending list of ``{"quantity_in_kw", "price"}`` (cumulative kW at
$/kWh). Per battery and UTC hour:

1. the kW the optimal plan sells (``planned_market_kw``) at the higher of the day-ahead
   price forecast and the opportunity cost: Leap's auction is pay-as-bid, so offering the
   energy below the price it is expected to clear at gives money away;
2. the rest of ``available_kw`` at a premium (``premium``, default 25 %) above that: energy
   beyond the plan comes out of energy the plan uses later, so its value is at least the
   opportunity cost and rises with the quantity.

Prices are rounded *up* to $0.0001 and quantities *down* to 0.1 kW, so a point is never
below the opportunity cost nor above the available kW. Points priced above $1.00 (Leap's
cap) are dropped: that energy is worth more kept. An hour with nothing left to offer, or a
battery that may not bid (idle, disenrolled, no data), gets an empty curve, which cancels
any earlier bid for the hour.
"""

from __future__ import annotations

import math

from vpp_pipeline.bidding.validation import MAX_PRICE_USD_PER_KWH, MIN_PRICE_USD_PER_KWH

DEFAULT_PREMIUM = 0.25
DEFAULT_MIN_QUANTITY_KW = 1.0


def _price_up(value: float) -> float:
    return math.ceil(round(value * 10_000, 6)) / 10_000


def _kw_down(value: float) -> float:
    return math.floor(round(value * 10, 6)) / 10


def build_curve(
    *,
    available_kw: float,
    planned_market_kw: float,
    opportunity_cost_usd_per_kwh: float,
    price_forecast_usd_per_kwh: float,
    premium: float = DEFAULT_PREMIUM,
    min_quantity_kw: float = DEFAULT_MIN_QUANTITY_KW,
) -> list[dict]:
    """One hour's curve (may be empty)."""
    floor = max(opportunity_cost_usd_per_kwh, MIN_PRICE_USD_PER_KWH)
    base = _price_up(max(floor, price_forecast_usd_per_kwh))
    total = _kw_down(available_kw)
    points: list[dict] = []
    planned = _kw_down(min(planned_market_kw, available_kw))
    if planned >= min_quantity_kw:
        points.append({"quantity_in_kw": planned, "price": base})
    if total - (points[-1]["quantity_in_kw"] if points else 0.0) >= min_quantity_kw:
        price = _price_up(max(base * (1 + premium), base + 0.01))
        points.append({"quantity_in_kw": total, "price": price})
    return [p for p in points if p["price"] <= MAX_PRICE_USD_PER_KWH]
