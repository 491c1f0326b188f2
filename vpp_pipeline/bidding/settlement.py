"""Settle a trading day of bids against what happened: awards, the battery, the bill.

Pure numpy, one code path for every policy the backtest compares (the pipeline's, perfect
foresight, naive). Shapes: ``B`` batteries by ``H`` UTC hours of one trading day; ``K`` curve
points per hour. Every hour is one hour, so kW and kWh per hour coincide.

**Awards (Leap's pay-as-bid auction).** A curve is cumulative: point k offers
``quantity_k - quantity_{k-1}`` kW at ``price_k``. A point clears when its price is at or
below the hour's realised day-ahead price; the award is the quantity of the highest cleared
point, and each cleared segment is paid its own price (not the clearing price). Revenue is
paid on the energy actually delivered, cheapest segment first.

**The site controller**, hour by hour, given the plan (charge, self-use discharge, the
billed peak it accepts) and the awards, against the site's actual load:

1. charge as planned and, outside demand-window hours, also make up any shortfall against
   the plan's state of charge (energy an award took, or a day that started lower than the
   plan assumed), within power and the room left below max SoC;
2. deliver the award first (a commitment), within power, the energy above min SoC and,
   without exports, the site's load; what cannot be delivered is ``shortfall_kw``. The day's
   awards are known before it starts, so self-use never spends the energy later awards need;
3. peak shaving first: in demand-window hours, discharge whatever holds the site's import
   at a target level (real-time, on the actual load), within the power and energy left. The
   target is the highest of the plan's billed peak, the month's running peak, and the
   lowest level the energy left could hold through the rest of the window if the later
   hours come as the plan forecast them, scaled by how the day has run against the
   forecast so far (so a day running above the forecast raises the level a little in every
   hour instead of running the battery flat before the last one);
4. then the rest of the planned self-use discharge (TOU arbitrage), but only from energy
   above the plan's ``reserve_kwh``: what it holds for later demand-window hours.

**Accounting** (the convention of ``optimize.py``, so that the LP's objective on realised
data equals this settlement): energy delivered against an award is paid the award and is
not also a retail saving. The retail bill is computed on ``billed_import = load + charge -
self_discharge`` (the site's import with the market delivery added back): TOU energy at the
hour's rate, and the demand charge on the month's highest billed import inside the demand
window. A day's demand-charge cost is the charge on what that day adds to the month's
running peak. Degradation is charged per kWh discharged (self-use and market).

Every figure is also computed for the same site with its battery idle (same starting
month peak), so savings are measured against "no battery".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vpp_pipeline.bidding.validation import MIN_PRICE_USD_PER_KWH

_EPS = 1e-9
#: Bounds of the actual / forecast load ratio the controller projects onto later hours.
FORECAST_RATIO_LIMITS = (0.8, 1.25)


@dataclass
class Fleet:
    """Battery parameters, (B,) arrays. ``round_trip_efficiency`` in (0, 1]; one-way
    efficiency is its square root, as in the LP."""

    meter_ids: list[str]
    power_kw: np.ndarray
    soc_min_kwh: np.ndarray
    soc_max_kwh: np.ndarray
    round_trip_efficiency: np.ndarray
    demand_charge_usd_per_kw_month: np.ndarray
    exports_allowed: np.ndarray
    self_use_allowed: np.ndarray
    degradation_usd_per_kwh: float

    @property
    def eta(self) -> np.ndarray:
        return np.sqrt(np.clip(self.round_trip_efficiency, 1e-6, 1.0))


@dataclass
class DayTruth:
    """What happened on one trading day, (B, H): ``load_kw`` (site load without the
    battery), ``price_usd_per_kwh`` (realised day-ahead), ``energy_usd_per_kwh`` (retail
    TOU), ``demand_window`` (bool). ``month`` (B,) int: the billing month of the day
    (e.g. year * 12 + month); a new month restarts the running peaks."""

    load_kw: np.ndarray
    price_usd_per_kwh: np.ndarray
    energy_usd_per_kwh: np.ndarray
    demand_window: np.ndarray
    month: int


@dataclass
class DayPlan:
    """A policy's decisions for one trading day: planned ``charge_kw`` and
    ``self_discharge_kw`` (B, H), the planned ``soc_kwh`` at the start of each hour (B, H),
    ``billed_peak_kw`` (B,) the peak the plan accepts, ``load_forecast_kw`` (B, H) the site
    load the plan expected,
    ``reserve_kwh`` (B, H) the energy above min SoC it holds at the end of each hour for later
    demand-window hours (``optimize.peak_reserve_kwh``), and the curves as ``curve_kw`` /
    ``curve_usd_per_kwh`` (B, H, K), cumulative kW ascending with price; unused points have
    quantity 0 and price ``inf``."""

    charge_kw: np.ndarray
    self_discharge_kw: np.ndarray
    soc_kwh: np.ndarray
    billed_peak_kw: np.ndarray
    load_forecast_kw: np.ndarray
    reserve_kwh: np.ndarray
    curve_kw: np.ndarray
    curve_usd_per_kwh: np.ndarray


@dataclass
class FleetState:
    """What carries from one day to the next, (B,) arrays."""

    soc_kwh: np.ndarray
    month: int
    month_peak_kw: np.ndarray  # running billed peak of the month, with the battery
    idle_month_peak_kw: np.ndarray  # the same site with its battery idle

    def copy(self) -> FleetState:
        return FleetState(
            self.soc_kwh.copy(), self.month, self.month_peak_kw.copy(),
            self.idle_month_peak_kw.copy(),
        )  # fmt: skip


@dataclass
class DaySettlement:
    """One day's result. (B, H) flows and (B,) day totals in USD / kWh / kW."""

    awarded_kw: np.ndarray
    delivered_kw: np.ndarray
    shortfall_kw: np.ndarray
    charge_kw: np.ndarray
    self_discharge_kw: np.ndarray
    soc_kwh: np.ndarray  # end of hour
    billed_import_kw: np.ndarray
    hourly_revenue_usd: np.ndarray
    market_revenue_usd: np.ndarray
    energy_savings_usd: np.ndarray  # TOU: idle bill minus this bill
    demand_charge_usd: np.ndarray  # charge on what the day added to the month's peak
    idle_demand_charge_usd: np.ndarray
    degradation_usd: np.ndarray
    month_peak_kw: np.ndarray  # after the day
    totals: dict = field(default_factory=dict)

    @property
    def bill_savings_usd(self) -> np.ndarray:
        return self.energy_savings_usd + self.idle_demand_charge_usd - self.demand_charge_usd

    @property
    def net_value_usd(self) -> np.ndarray:
        return self.market_revenue_usd + self.bill_savings_usd - self.degradation_usd


def awards(
    curve_kw: np.ndarray, curve_usd_per_kwh: np.ndarray, price_usd_per_kwh: np.ndarray
) -> np.ndarray:
    """Awarded kW per (B, H): the quantity of the highest point priced at or below the
    realised price (nothing clears below Leap's floor of $0.01/kWh)."""
    cleared = (curve_usd_per_kwh <= price_usd_per_kwh[..., None] + _EPS) & (
        price_usd_per_kwh[..., None] >= MIN_PRICE_USD_PER_KWH - _EPS
    )
    return np.where(cleared, curve_kw, 0.0).max(axis=-1, initial=0.0)


def pay_as_bid_usd(
    curve_kw: np.ndarray, curve_usd_per_kwh: np.ndarray, delivered_kw: np.ndarray
) -> np.ndarray:
    """Revenue of ``delivered_kw`` (B, H) one hour long: each curve segment in order, paid
    its own price, until the delivered energy is used up."""
    previous = np.concatenate([np.zeros_like(curve_kw[..., :1]), curve_kw[..., :-1]], axis=-1)
    segment = np.clip(curve_kw - previous, 0.0, None)
    covered = np.clip(delivered_kw[..., None] - previous, 0.0, segment)
    price = np.where(np.isfinite(curve_usd_per_kwh), curve_usd_per_kwh, 0.0)
    return (covered * price).sum(axis=-1)


def settle_day(
    fleet: Fleet,
    truth: DayTruth,
    plan: DayPlan,
    state: FleetState,
    *,
    with_awards: bool = True,
    adaptive_level: bool = True,
) -> tuple[DaySettlement, FleetState]:
    """Run the site controller through one day and bill it; returns the day and the state
    after it (``state`` is not changed). ``with_awards=False`` settles the same plan as if
    no curve had cleared (to see what the awards did); ``adaptive_level=False`` holds only
    the plan's billed peak and the month's running peak (a plain threshold controller, to
    measure how much the results owe to the controller)."""
    b, h = truth.load_kw.shape
    eta = fleet.eta
    power = fleet.power_kw
    s = state.soc_kwh.astype(float).copy()
    if truth.month != state.month:
        peak = np.zeros(b)
        idle_peak = np.zeros(b)
    else:
        peak = state.month_peak_kw.astype(float).copy()
        idle_peak = state.idle_month_peak_kw.astype(float).copy()
    peak_before, idle_before = peak.copy(), idle_peak.copy()
    awarded = awards(plan.curve_kw, plan.curve_usd_per_kwh, truth.price_usd_per_kwh)
    if not with_awards:
        awarded = np.zeros_like(awarded)
    # energy (deliverable kWh) to keep at the end of each hour for the day's later awards,
    # net of the charging the plan does before them
    hold = np.zeros((b, h))
    for t in range(h - 2, -1, -1):
        hold[:, t] = np.clip(
            hold[:, t + 1] + awarded[:, t + 1] - eta**2 * plan.charge_kw[:, t + 1], 0.0, None
        )
    load = truth.load_kw
    load_pos = np.clip(load, 0.0, None)
    window = truth.demand_window.astype(bool)
    self_use = fleet.self_use_allowed.astype(bool)
    exports = fleet.exports_allowed.astype(bool)
    out = {k: np.zeros((b, h)) for k in ("c", "d", "u", "s", "imp")}
    for t in range(h):
        c = plan.charge_kw[:, t]
        catch_up = np.where(window[:, t], 0.0, np.clip(plan.soc_kwh[:, t] - s, 0.0, None) / eta)
        c = np.clip(c + catch_up, 0.0, power)
        c = np.minimum(c, np.clip(fleet.soc_max_kwh - s, 0.0, None) / eta)
        energy = np.clip(s + eta * c - fleet.soc_min_kwh, 0.0, None) * eta
        site_room = np.where(exports, np.inf, np.clip(load[:, t] + c, 0.0, None))
        d = np.clip(np.minimum.reduce([awarded[:, t], power, energy, site_room]), 0.0, None)
        # energy for the day's later awards is kept (they are known before the day starts)
        free = energy - d - hold[:, t]
        room = np.where(
            self_use,
            np.clip(
                np.minimum.reduce(
                    [power - d, free, np.minimum(load[:, t] + c - d, load_pos[:, t])]
                ),
                0.0,
                None,
            ),
            0.0,
        )
        target = np.maximum(plan.billed_peak_kw, peak)
        if adaptive_level and window[:, t].any():
            # the day so far against the plan's forecast: a day running high stays high
            ratio = np.clip(
                load_pos[:, : t + 1].sum(axis=1)
                / np.maximum(np.clip(plan.load_forecast_kw[:, : t + 1], 0, None).sum(axis=1), 1e-9),
                *FORECAST_RATIO_LIMITS,
            )
            level = sustainable_level(
                load[:, t] + c,
                np.where(
                    window[:, t + 1 :],
                    plan.load_forecast_kw[:, t + 1 :] * ratio[:, None] + plan.charge_kw[:, t + 1 :],
                    0.0,
                ),
                room,
                power,
                free,
            )
            target = np.maximum(target, level)
        need = np.where(window[:, t], load[:, t] + c - target, 0.0)
        u_peak = np.clip(need, 0.0, room)
        spare = np.clip(s + eta * c - fleet.soc_min_kwh - plan.reserve_kwh[:, t], 0.0, None)
        u_rest = np.clip(
            np.minimum.reduce(
                [
                    plan.self_discharge_kw[:, t] - u_peak,
                    spare * eta - d - hold[:, t] - u_peak,
                    room - u_peak,
                ]
            ),
            0.0,
            None,
        )
        u = u_peak + u_rest
        s = np.clip(s + eta * c - (d + u) / eta, fleet.soc_min_kwh, fleet.soc_max_kwh)
        billed = load[:, t] + c - u
        in_window = window[:, t] & (fleet.demand_charge_usd_per_kw_month > 0)
        peak = np.where(in_window, np.maximum(peak, billed), peak)
        idle_peak = np.where(in_window, np.maximum(idle_peak, load[:, t]), idle_peak)
        for key, value in (("c", c), ("d", d), ("u", u), ("s", s), ("imp", billed)):
            out[key][:, t] = value
    tou = truth.energy_usd_per_kwh
    charge = fleet.demand_charge_usd_per_kw_month
    revenue = pay_as_bid_usd(plan.curve_kw, plan.curve_usd_per_kwh, out["d"])
    result = DaySettlement(
        awarded_kw=awarded,
        delivered_kw=out["d"],
        shortfall_kw=np.clip(awarded - out["d"], 0.0, None),
        charge_kw=out["c"],
        self_discharge_kw=out["u"],
        soc_kwh=out["s"],
        billed_import_kw=out["imp"],
        hourly_revenue_usd=revenue,
        market_revenue_usd=revenue.sum(axis=1),
        energy_savings_usd=(tou * (out["u"] - out["c"])).sum(axis=1),
        demand_charge_usd=charge * (peak - peak_before),
        idle_demand_charge_usd=charge * (idle_peak - idle_before),
        degradation_usd=fleet.degradation_usd_per_kwh * (out["d"] + out["u"]).sum(axis=1),
        month_peak_kw=peak,
    )
    return result, FleetState(s, truth.month, peak, idle_peak)


def sustainable_level(
    now_kw: np.ndarray,
    later_kw: np.ndarray,
    power_now_kw: np.ndarray,
    power_kw: np.ndarray,
    energy_kwh: np.ndarray,
    iterations: int = 40,
) -> np.ndarray:
    """The lowest import level (B,) that ``energy_kwh`` (deliverable) can hold this hour
    (site demand ``now_kw``, at most ``power_now_kw`` of discharge) and in the later hours
    (``later_kw`` (B, K), at most ``power_kw`` each), by bisection."""
    later = np.clip(later_kw, 0.0, None)
    lo = np.zeros_like(now_kw)
    hi = np.maximum(now_kw, later.max(axis=1, initial=0.0))
    for _ in range(iterations):
        mid = (lo + hi) / 2
        use = np.clip(now_kw - mid, 0.0, power_now_kw) + np.clip(
            later - mid[:, None], 0.0, power_kw[:, None]
        ).sum(axis=1)
        enough = use <= energy_kwh
        hi = np.where(enough, mid, hi)
        lo = np.where(enough, lo, mid)
    return hi


def empty_curves(b: int, h: int, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(curve_kw, curve_usd_per_kwh)`` with no offer at all."""
    return np.zeros((b, h, k)), np.full((b, h, k), np.inf)


def curves_to_arrays(curves: list[list[dict]], b: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Leap curves (one list of ``{quantity_in_kw, price}`` per battery-hour, battery-major
    order, ``b * h`` of them) as padded (B, H, K) arrays."""
    if len(curves) != b * h:
        raise ValueError(f"expected {b * h} curves, got {len(curves)}")
    k = max([len(c) for c in curves] + [1])
    qty, price = empty_curves(b, h, k)
    for index, curve in enumerate(curves):
        i, t = divmod(index, h)
        for j, point in enumerate(curve):
            qty[i, t, j] = point["quantity_in_kw"]
            price[i, t, j] = point["price"]
    return qty, price
