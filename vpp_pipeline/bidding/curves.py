"""Bid curves from bid inputs: what to offer each hour and at what price.

A curve is Leap's ascending list of ``{"quantity_in_kw", "price"}`` (cumulative kW at
$/kWh). Per battery and UTC hour:

1. the kW the optimal plan sells (``planned_market_kw``) at the higher of the day-ahead
   price forecast and the opportunity cost: Leap's auction is pay-as-bid, so offering the
   energy below the price it is expected to clear at gives money away;
2. the rest of ``available_kw`` (energy the plan would otherwise use on site or keep; see
   ``offers.py``) at ``extra_price_usd_per_kwh``, the price that maximises its expected
   surplus over its opportunity cost. When that price is not above the first point's, the
   whole quantity goes at the first point's price (a curve must rise).

Prices are rounded *up* to $0.0001 and quantities *down* to 0.1 kW, so a point is never
below the opportunity cost nor above the available kW. Points priced above $1.00 (Leap's
cap) are dropped: that energy is worth more kept. An hour with nothing left to offer, or a
battery that may not bid (idle, disenrolled, no data), gets an empty curve, which cancels
any earlier bid for the hour.
"""

from __future__ import annotations

import math

from vpp_pipeline.bidding.validation import MAX_PRICE_USD_PER_KWH, MIN_PRICE_USD_PER_KWH

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
    extra_price_usd_per_kwh: float | None = None,
    min_quantity_kw: float = DEFAULT_MIN_QUANTITY_KW,
) -> list[dict]:
    """One hour's curve (may be empty)."""
    floor = max(opportunity_cost_usd_per_kwh, MIN_PRICE_USD_PER_KWH)
    base = _price_up(max(floor, price_forecast_usd_per_kwh))
    total = _kw_down(available_kw)
    planned = _kw_down(min(planned_market_kw, available_kw))
    extra_price = None
    if extra_price_usd_per_kwh is not None and math.isfinite(extra_price_usd_per_kwh):
        extra_price = _price_up(max(extra_price_usd_per_kwh, floor))
    points: list[dict] = []
    if extra_price is None or extra_price <= base:
        # one price for everything (a curve must rise)
        if total >= min_quantity_kw:
            points.append({"quantity_in_kw": total, "price": base})
    else:
        if planned >= min_quantity_kw:
            points.append({"quantity_in_kw": planned, "price": base})
        if total - (points[-1]["quantity_in_kw"] if points else 0.0) >= min_quantity_kw:
            points.append({"quantity_in_kw": total, "price": extra_price})
    return [p for p in points if p["price"] <= MAX_PRICE_USD_PER_KWH]
