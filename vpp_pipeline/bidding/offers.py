"""What to offer beyond the plan, and at what price, in Leap's pay-as-bid auction.

The plan (``optimize.py``) sells ``m`` where the price forecast beats keeping the energy.
Prices are uncertain, though, and a pay-as-bid award pays the offer, not the clearing price:
energy the plan uses on site (TOU arbitrage) or does not use at all is worth offering at a
price above its value, in case the hour clears that high. This module decides how much
(``extra_kw``) and at what price (``extra_price_usd_per_kwh``), per battery and hour:

**Price.** For energy worth ``v`` $/kWh if kept (the plan's opportunity cost), the offer
price ``p`` maximises the expected surplus ``(p - v) x P(price >= p)``. The candidates come
from the hour's recent realised prices (``day_ahead_prices``): the median (cleared half of
the time), the upper quartile (a quarter) and the 2nd to 8th highest of ``n`` samples (the k-th
highest is reached with probability ``k / (n + 1)``; the single highest is left out, one
sample says too little). No candidate above ``v`` (or only
above Leap's $1.00 cap): no extra offer.

**Quantity.** Every extra offer of the day must be deliverable even if all of them clear,
without touching the energy the plan holds for the site's demand-window peak: at every hour
``t``, the extra energy offered up to ``t`` is at most what the battery would hold at the
end of ``t``, above min SoC and the peak reserve, if it charged, shaved the peak and sold as
planned but did no TOU discharge (awards are known before the day starts, and the site
controller gives up TOU discharge to keep energy for them). Within that, hours go in order
of expected surplus; each hour is also bounded by the power left and, without exports, by
the forecast site load.
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
    # a published day's price (one sample) is certain; otherwise one sample is too few
    candidates[:, 2] = np.where(count > 1, np.nan, candidates[:, 2])
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
    # the SoC path without any TOU discharge: the day's awards are known before it starts,
    # so the site controller can keep for them what it would have spent on TOU arbitrage
    soc_min, soc_max = problem.soc_min_kwh, problem.soc_max_kwh
    level = np.clip(problem.initial_soc_kwh, soc_min, soc_max)
    no_tou = np.empty(c.shape)
    for t in range(c.shape[1]):
        level = np.clip(
            level + eta[:, 0] * c[:, t] - (u_peak[:, t] + m[:, t]) / eta[:, 0], soc_min, soc_max
        )
        no_tou[:, t] = level
    slack = np.clip((no_tou - soc_min[:, None] - plan.peak_reserve_kwh) * eta, 0, None)
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


#: ``surplus``: the planned sale plus extra offers priced by expected surplus (this module);
#: ``headroom``: the first policy, kept to measure against: the planned sale plus energy the
#: plan does not use at all (``BatteryPlan.available_kw``), the extra at a fixed premium.
OFFER_MODES = ("surplus", "headroom")


def plan_offers(
    plan: BatteryPlan,
    problem: BidProblem,
    candidates: np.ndarray,
    survival: np.ndarray,
    *,
    mode: str = "surplus",
    premium: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:
    """``(offered_kw, extra_price_usd_per_kwh)`` per (B, H) for ``mode`` (``OFFER_MODES``);
    ``candidates`` / ``survival`` as for ``offer_prices``."""
    if mode == "headroom":
        base = np.maximum.reduce(
            [
                plan.opportunity_cost_usd_per_kwh,
                np.full(problem.shape, MIN_PRICE_USD_PER_KWH),
                problem.price_usd_per_kwh,
            ]
        )
        return plan.available_kw, np.maximum(base * (1 + premium), base + 0.01)
    if mode != "surplus":
        raise ValueError(f"offer mode {mode!r} is not one of {OFFER_MODES}")
    price, surplus = offer_prices(plan.opportunity_cost_usd_per_kwh, candidates, survival)
    return plan.market_discharge_kw + extra_offers(plan, problem, surplus), price
