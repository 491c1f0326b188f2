"""What to offer beyond the plan, and at what price, in Leap's pay-as-bid auction.

The plan (``optimize.py``) sells ``m`` where the price forecast beats keeping the energy.
Prices are uncertain, though, and a pay-as-bid award pays the offer, not the clearing price:
energy the plan uses on site (TOU arbitrage) or does not use at all is worth offering at a
price above its value, in case the hour clears that high. This module decides how much
(``extra_kw``) and at what price (``extra_price_usd_per_kwh``), per battery and hour:

**Price.** For energy worth ``v`` $/kWh if kept (the plan's opportunity cost), the offer
price ``p`` maximises the expected surplus ``(p - v) x P(price >= p)``. The candidates come
from the hour's recent realised prices (``day_ahead_prices``): the median (cleared half of
the time), the upper quartile (a quarter) and the 8 highest of ``n`` samples (the k-th
highest is reached with probability ``k / (n + 1)``). No candidate above ``v`` (or only
above Leap's $1.00 cap): no extra offer.

**Quantity.** Every extra offer of the day must be deliverable even if all of them clear,
without touching the energy the plan holds for the site's demand-window peak: at every hour
``t``, the extra energy offered up to ``t`` is at most what the plan's battery holds as the
hour starts, plus the hour's planned charge, minus its planned peak shaving and sale, above
min SoC and the peak reserve (TOU discharge planned before ``t`` is spent; from ``t`` on, the
site controller gives it up first). Within that, hours go in order of expected surplus; each
hour is also bounded by the power left and, without exports, by the forecast site load.
"""

from __future__ import annotations

import numpy as np

from vpp_pipeline.bidding.optimize import BatteryPlan, BidProblem
from vpp_pipeline.bidding.validation import MAX_PRICE_USD_PER_KWH, MIN_PRICE_USD_PER_KWH

TAIL_POINTS = 8


def price_candidates(
    p50: np.ndarray, p75: np.ndarray, tail: list, samples: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(candidates, survival)``, (N, 2 + TAIL_POINTS), from N rows of
    ``day_ahead_prices``' ``price_p50_usd_per_kwh``, ``price_p75_usd_per_kwh``,
    ``price_tail_usd_per_kwh`` (lists, highest first; None = no history) and
    ``price_samples``. Missing candidates are NaN."""
    n = len(p50)
    padded = np.full((n, TAIL_POINTS), np.nan)
    for i, values in enumerate(tail):
        if values is not None and len(values):
            values = list(values)[:TAIL_POINTS]
            padded[i, : len(values)] = values
    candidates = np.column_stack([p50, p75, padded]).astype(float)
    count = np.nan_to_num(np.asarray(samples, dtype=float), nan=0.0)
    rank = np.arange(1, TAIL_POINTS + 1)[None, :]
    survival = np.column_stack(
        [np.full(n, 0.5), np.full(n, 0.25), np.minimum(rank / (count[:, None] + 1), 1.0)]
    )
    return candidates, survival


def offer_prices(
    value_usd_per_kwh: np.ndarray, candidates: np.ndarray, survival: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(price, expected_surplus)`` per (B, H): the candidate (``candidates`` (B, H, Q),
    each reached with probability ``survival`` (B, H, Q)) with the largest ``(p - v) x S``;
    ``inf`` / 0 where none is above the value and within Leap's price range."""
    q = np.where(np.isfinite(candidates), candidates, np.nan)
    q = np.maximum(q, MIN_PRICE_USD_PER_KWH)
    surplus = (q - value_usd_per_kwh[..., None]) * survival
    surplus = np.where((q <= MAX_PRICE_USD_PER_KWH) & np.isfinite(q), surplus, -np.inf)
    best = surplus.argmax(axis=-1)
    gain = np.take_along_axis(surplus, best[..., None], axis=-1)[..., 0]
    price = np.take_along_axis(q, best[..., None], axis=-1)[..., 0]
    ok = gain > 1e-6
    return np.where(ok, price, np.inf), np.where(ok, gain, 0.0)


def extra_offers(
    plan: BatteryPlan, problem: BidProblem, expected_surplus: np.ndarray
) -> np.ndarray:
    """kW (B, H) to offer beyond the planned sales, jointly deliverable (module doc)."""
    eta = np.sqrt(np.clip(problem.round_trip_efficiency, 1e-6, 1.0))[:, None]
    window = problem.demand_window.astype(bool)
    c, u, m = plan.charge_kw, plan.self_discharge_kw, plan.market_discharge_kw
    need = np.where(
        window, np.clip(problem.peak_load_kw + c - plan.billed_peak_kw[:, None], 0.0, None), 0.0
    )
    u_peak = np.minimum(u, need)
    soc0 = np.clip(problem.initial_soc_kwh, problem.soc_min_kwh, problem.soc_max_kwh)
    start = np.column_stack([soc0, plan.soc_kwh[:, :-1]])  # planned SoC as each hour starts
    # what the hour could still deliver beyond its peak shaving and planned sale: TOU discharge
    # already done is gone, TOU discharge from now on is what the controller gives up
    after = start + eta * c - (u_peak + m) / eta
    slack = np.clip((after - problem.soc_min_kwh[:, None] - plan.peak_reserve_kwh) * eta, 0, None)
    room = problem.power_kw[:, None] - m - u_peak
    site = np.clip(problem.load_kw, 0.0, None) + c - m - u_peak
    room = np.where(problem.exports_allowed[:, None], room, np.minimum(room, site))
    room = np.where(problem.can_bid.astype(bool) & (expected_surplus > 0), room, 0.0)
    room = np.clip(room, 0.0, None)

    b, h = room.shape
    extra = np.zeros((b, h))
    remaining = slack.copy()
    order = np.argsort(-expected_surplus, axis=1, kind="stable")
    rows = np.arange(b)
    later = np.arange(h)[None, :]
    for k in range(h):
        t = order[:, k]
        mask = later >= t[:, None]  # the offer at t uses energy held at t and after
        cap = np.where(mask, remaining, np.inf).min(axis=1)
        x = np.clip(np.minimum(room[rows, t], cap), 0.0, None)
        extra[rows, t] = x
        remaining = remaining - np.where(mask, x[:, None], 0.0)
    return extra
