"""Battery schedules for a trading day: one linear program per battery, solved by HiGHS.

Pure functions on numpy arrays (no Dagster, no database). Shapes: ``B`` batteries by ``H``
trading-day hours (23, 24 or 25); every hour is one UTC hour, so kW and kWh per hour
coincide.

Per battery and hour ``t`` the variables are

- ``charge_kw`` c_t in [0, P];
- ``self_discharge_kw`` u_t in [0, min(P, load)]: discharge that serves the site's own load
  (demand-charge and TOU savings). It is the power *held back* from the market: ``reserve_kw``;
- ``market_discharge_kw`` m_t in [0, P]: energy offered to CAISO, paid the day-ahead price.
  It is not counted on to shave the site's peak, because an offer may not be awarded;
- ``soc_kwh`` s_t (end of hour) in [min SoC, max SoC], with s_{-1} = initial SoC and the day
  ending with at least the initial SoC (no selling energy the day did not store);
- per battery, ``peak_kw`` p >= month-to-date peak: the billed peak after today.

subject to
  s_t = s_{t-1} + eta * c_t - (u_t + m_t) / eta        (eta = sqrt(round-trip efficiency))
  u_t + m_t <= P                                        (power)
  u_t + m_t - c_t <= max(load_t, 0)   unless exports are allowed
  peak_load_t + c_t - u_t <= p        in the demand window (site import vs billed peak;
                                      peak_load = load unless a cautious forecast is given)

minimising  sum_t [tou_t (c_t - u_t) - price_t m_t + degradation (u_t + m_t)]
            + demand_charge * p.

(The retail energy of the load itself is a constant and is left out. The demand charge is
monthly, so today's cost is the charge on what today adds above the month-to-date peak.)

The batteries of a chunk are stacked into one block-diagonal LP, built with
``scipy.sparse`` from index arithmetic (no per-hour Python loops) and solved with
``scipy.optimize.linprog(method="highs")``.

From the solution, per battery and hour: ``opportunity_cost_usd_per_kwh`` = value of one more
kWh stored at that hour (minus the dual of the SoC balance) / eta + degradation, i.e. what a
kWh delivered to the market then is worth if kept; ``available_kw`` = what could be offered
without touching the self-use plan: within power, within the energy above min SoC at every
later hour (so energy held for a later peak is not sold), and within site load unless
exports are allowed; ``peak_reserve_kwh`` = the energy above min SoC the plan must still
hold at the end of the hour to keep the site's import at the planned billed peak in the
later demand-window hours (the site controller keeps it back from TOU discharge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

#: Right-hand side standing in for "no limit" (HiGHS treats >= 1e20 as infinite anyway).
_NO_LIMIT = 1e12
DEFAULT_DEGRADATION_USD_PER_KWH = 0.005
DEFAULT_ROUND_TRIP_EFFICIENCY = 0.88


@dataclass
class BidProblem:
    """Inputs for ``B`` batteries over the same ``H`` trading-day hours.

    (B, H) arrays: ``load_kw`` (site net load forecast, kW = kWh per hour),
    ``price_usd_per_kwh`` (day-ahead), ``energy_usd_per_kwh`` (retail TOU), ``demand_window``
    (bool), ``can_bid`` (bool: the battery may be offered that hour).
    (B,) arrays: ``power_kw``, ``soc_min_kwh``, ``soc_max_kwh``, ``initial_soc_kwh``,
    ``round_trip_efficiency``, ``demand_charge_usd_per_kw_month``, ``month_to_date_peak_kw``,
    ``exports_allowed`` (bool), ``self_use_allowed`` (bool; False for battery submeters, which
    cannot see site load). Optional (B, H) ``peak_load_kw``: the load the demand-window
    peak is planned against (default ``load_kw``; a cautious forecast keeps energy for a day
    that runs above the average).
    """

    meter_ids: list[str]
    load_kw: np.ndarray
    price_usd_per_kwh: np.ndarray
    energy_usd_per_kwh: np.ndarray
    demand_window: np.ndarray
    can_bid: np.ndarray
    power_kw: np.ndarray
    soc_min_kwh: np.ndarray
    soc_max_kwh: np.ndarray
    initial_soc_kwh: np.ndarray
    round_trip_efficiency: np.ndarray
    demand_charge_usd_per_kw_month: np.ndarray
    month_to_date_peak_kw: np.ndarray
    exports_allowed: np.ndarray
    self_use_allowed: np.ndarray
    peak_load_kw: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.peak_load_kw is None:
            self.peak_load_kw = self.load_kw.copy()

    @property
    def shape(self) -> tuple[int, int]:
        return self.load_kw.shape

    @classmethod
    def build(cls, meter_ids: list[str], hours: int, **values) -> BidProblem:
        """Broadcast scalars / (B,) / (H,) / (B, H) values to the problem's shapes.

        Defaults: no load, zero prices and tariff, no demand window or charge, every hour
        biddable, SoC 10-90 % of energy (``energy_kwh``, default 4 x power) starting
        half-way, 88 % round trip, no exports, self-use allowed.
        """
        b = len(meter_ids)
        power = np.broadcast_to(np.asarray(values.pop("power_kw", 100.0), float), (b,)).copy()
        energy = np.broadcast_to(
            np.asarray(values.pop("energy_kwh", power * 4), float), (b,)
        ).copy()
        defaults = {
            "load_kw": 0.0,
            "price_usd_per_kwh": 0.0,
            "energy_usd_per_kwh": 0.0,
            "demand_window": False,
            "can_bid": True,
            "soc_min_kwh": 0.1 * energy,
            "soc_max_kwh": 0.9 * energy,
            "round_trip_efficiency": DEFAULT_ROUND_TRIP_EFFICIENCY,
            "demand_charge_usd_per_kw_month": 0.0,
            "month_to_date_peak_kw": 0.0,
            "exports_allowed": False,
            "self_use_allowed": True,
        }
        defaults.update(values)
        if "initial_soc_kwh" not in defaults:
            defaults["initial_soc_kwh"] = (
                np.asarray(defaults["soc_min_kwh"]) + np.asarray(defaults["soc_max_kwh"])
            ) / 2
        per_hour = {
            "load_kw",
            "peak_load_kw",
            "price_usd_per_kwh",
            "energy_usd_per_kwh",
            "demand_window",
            "can_bid",
        }
        out = {}
        for name, value in defaults.items():
            arr = np.asarray(value)
            if name in per_hour:
                if arr.ndim == 1 and arr.shape[0] == hours and b != hours:
                    arr = arr[None, :]
                elif arr.ndim == 1:
                    arr = arr[:, None]
                out[name] = np.broadcast_to(arr, (b, hours)).copy()
            else:
                out[name] = np.broadcast_to(arr, (b,)).copy()
        return cls(meter_ids=list(meter_ids), power_kw=power, **out)


@dataclass
class BatteryPlan:
    """The optimal schedule and what it leaves to offer. (B, H) arrays unless noted."""

    meter_ids: list[str]
    charge_kw: np.ndarray
    self_discharge_kw: np.ndarray
    market_discharge_kw: np.ndarray
    soc_kwh: np.ndarray  # end of hour
    reserve_kw: np.ndarray
    available_kw: np.ndarray
    opportunity_cost_usd_per_kwh: np.ndarray
    billed_peak_kw: np.ndarray  # (B,)
    peak_reserve_kwh: np.ndarray  # energy above min SoC held at the end of the hour for the peak
    objective_usd: np.ndarray  # (B,) cost of the plan (negative = net revenue), excl. constants
    solve_seconds: float = 0.0
    chunks: int = 0
    notes: dict = field(default_factory=dict)


def optimize_batteries(
    problem: BidProblem,
    *,
    degradation_usd_per_kwh: float = DEFAULT_DEGRADATION_USD_PER_KWH,
    chunk_size: int = 100,
) -> BatteryPlan:
    """Solve every battery's LP (``chunk_size`` batteries per HiGHS call)."""
    import time

    b_total, h = problem.shape
    parts = []
    started = time.perf_counter()
    for lo in range(0, b_total, chunk_size):
        parts.append(
            _solve_chunk(problem, slice(lo, min(lo + chunk_size, b_total)), degradation_usd_per_kwh)
        )
    elapsed = time.perf_counter() - started
    if not parts:
        empty = np.zeros((0, h))
        return BatteryPlan([], *(empty,) * 7, np.zeros(0), empty, np.zeros(0))

    def cat(key):
        return np.concatenate([p[key] for p in parts])

    return BatteryPlan(
        meter_ids=list(problem.meter_ids),
        charge_kw=cat("c"),
        self_discharge_kw=cat("u"),
        market_discharge_kw=cat("m"),
        soc_kwh=cat("s"),
        reserve_kw=cat("u"),
        available_kw=cat("available"),
        opportunity_cost_usd_per_kwh=cat("opportunity"),
        billed_peak_kw=cat("p"),
        peak_reserve_kwh=cat("reserve"),
        objective_usd=cat("objective"),
        solve_seconds=elapsed,
        chunks=len(parts),
    )


def _solve_chunk(problem: BidProblem, rows: slice, degradation: float) -> dict[str, np.ndarray]:
    load = problem.load_kw[rows]
    peak_load = problem.peak_load_kw[rows]
    b, h = load.shape
    n = 4 * h + 1  # c, u, m, s per hour, then p
    power = problem.power_kw[rows]
    eta = np.sqrt(np.clip(problem.round_trip_efficiency[rows], 1e-6, 1.0))
    soc_min = problem.soc_min_kwh[rows]
    soc_max = np.maximum(problem.soc_max_kwh[rows], soc_min)
    soc0 = np.clip(problem.initial_soc_kwh[rows], soc_min, soc_max)
    load_pos = np.maximum(load, 0.0)
    window = problem.demand_window[rows].astype(bool)
    can_bid = problem.can_bid[rows].astype(bool)
    self_use = problem.self_use_allowed[rows].astype(bool)
    exports = problem.exports_allowed[rows].astype(bool)

    base = (np.arange(b) * n)[:, None]  # first column of each battery
    t = np.arange(h)[None, :]
    col_c, col_u, col_m, col_s = base + t, base + h + t, base + 2 * h + t, base + 3 * h + t
    col_p = base[:, 0] + 4 * h

    # SoC balance (equalities), one row per battery-hour
    eq_row = (np.arange(b)[:, None] * h + t).repeat(1, axis=0)
    eta_bh = np.broadcast_to(eta[:, None], (b, h))
    rows_eq = [eq_row, eq_row, eq_row, eq_row, eq_row[:, 1:]]
    cols_eq = [col_s, col_c, col_u, col_m, col_s[:, :-1]]
    vals_eq = [np.ones((b, h)), -eta_bh, 1 / eta_bh, 1 / eta_bh, -np.ones((b, h - 1))]
    a_eq = sp.csr_matrix(
        (
            np.concatenate([v.ravel() for v in vals_eq]),
            (
                np.concatenate([r.ravel() for r in rows_eq]),
                np.concatenate([c.ravel() for c in cols_eq]),
            ),
        ),
        shape=(b * h, b * n),
    )
    b_eq = np.zeros((b, h))
    b_eq[:, 0] = soc0

    # inequalities: power, export, peak; 3 rows per battery-hour
    r0 = np.arange(b)[:, None] * 3 * h + t
    r_pow, r_exp, r_peak = r0, r0 + h, r0 + 2 * h
    ones = np.ones((b, h))
    rows_ub = [r_pow, r_pow, r_exp, r_exp, r_exp, r_peak, r_peak, r_peak]
    cols_ub = [
        col_u,
        col_m,
        col_u,
        col_m,
        col_c,
        col_c,
        col_u,
        np.broadcast_to(col_p[:, None], (b, h)),
    ]
    vals_ub = [ones, ones, ones, ones, -ones, ones, -ones, -ones]
    a_ub = sp.csr_matrix(
        (
            np.concatenate([v.ravel() for v in vals_ub]),
            (
                np.concatenate([r.ravel() for r in rows_ub]),
                np.concatenate([c.ravel() for c in cols_ub]),
            ),
        ),
        shape=(b * 3 * h, b * n),
    )
    b_ub = np.concatenate(
        [
            np.broadcast_to(power[:, None], (b, h)),
            np.where(exports[:, None], _NO_LIMIT, load_pos),
            np.where(window, -peak_load, _NO_LIMIT),
        ],
        axis=1,
    ).ravel()

    # bounds
    lb = np.zeros((b, n))
    ub = np.zeros((b, n))
    ub[:, :h] = power[:, None]
    ub[:, h : 2 * h] = np.where(self_use[:, None], np.minimum(power[:, None], load_pos), 0.0)
    ub[:, 2 * h : 3 * h] = np.where(can_bid, power[:, None], 0.0)
    lb[:, 3 * h : 4 * h] = soc_min[:, None]
    lb[:, 4 * h - 1] = soc0  # end the day with at least the starting energy
    ub[:, 3 * h : 4 * h] = soc_max[:, None]
    peak_today = np.where(window, peak_load, -np.inf).max(axis=1, initial=-np.inf)
    lb[:, 4 * h] = problem.month_to_date_peak_kw[rows]
    ub[:, 4 * h] = np.maximum(lb[:, 4 * h], np.maximum(peak_today, 0) + power) + 1.0
    tou = problem.energy_usd_per_kwh[rows]
    price = problem.price_usd_per_kwh[rows]

    cost = np.zeros((b, n))
    cost[:, :h] = tou
    cost[:, h : 2 * h] = -tou + degradation
    cost[:, 2 * h : 3 * h] = -price + degradation
    cost[:, 4 * h] = problem.demand_charge_usd_per_kw_month[rows]

    result = linprog(
        cost.ravel(),
        A_ub=a_ub,
        b_ub=b_ub,
        A_eq=a_eq,
        b_eq=b_eq.ravel(),
        bounds=np.stack([lb.ravel(), ub.ravel()], axis=1),
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(
            f"battery LP failed for {problem.meter_ids[rows][:3]}...: {result.message}"
        )
    x = result.x.reshape(b, n)
    c = np.clip(x[:, :h], 0, None)
    u = np.clip(x[:, h : 2 * h], 0, None)
    m = np.clip(x[:, 2 * h : 3 * h], 0, None)
    s = np.clip(x[:, 3 * h : 4 * h], soc_min[:, None], soc_max[:, None])
    value_stored = -np.asarray(result.eqlin.marginals).reshape(b, h)
    opportunity = np.maximum(value_stored / eta[:, None] + degradation, 0.0)

    # energy above min SoC at every later hour bounds an extra offer now
    headroom_kwh = np.minimum.accumulate((s - soc_min[:, None])[:, ::-1], axis=1)[:, ::-1]
    available = np.minimum(power[:, None] - u, m + headroom_kwh * eta[:, None])
    available = np.where(exports[:, None], available, np.minimum(available, load_pos + c - u))
    available = np.where(can_bid, np.maximum(available, m), 0.0)
    objective = (cost * x).sum(axis=1)
    return {
        "c": c,
        "u": u,
        "m": m,
        "s": s,
        "p": x[:, 4 * h],
        "available": np.maximum(available, 0.0),
        "opportunity": opportunity,
        "objective": objective,
        "reserve": peak_reserve_kwh(peak_load, c, x[:, 4 * h], window, eta**2),
    }


def peak_reserve_kwh(
    load_kw: np.ndarray,
    charge_kw: np.ndarray,
    billed_peak_kw: np.ndarray,
    demand_window: np.ndarray,
    round_trip_efficiency: np.ndarray | float,
) -> np.ndarray:
    """Energy above min SoC (kWh, (B, H)) a plan must still hold at the end of each hour to
    keep the site's import at ``billed_peak_kw`` in the later demand-window hours of the day,
    if the load is ``load_kw``: backwards, ``R[t] = max(0, R[t+1] + need[t+1] / eta -
    eta * charge[t+1])`` with ``need = max(0, load + charge - billed_peak)`` in the window
    and ``R[last] = 0``."""
    eta = np.sqrt(np.clip(np.broadcast_to(round_trip_efficiency, (load_kw.shape[0],)), 1e-6, 1))
    need = np.where(
        demand_window, np.clip(load_kw + charge_kw - billed_peak_kw[:, None], 0, None), 0
    )
    reserve = np.zeros(load_kw.shape)
    for t in range(load_kw.shape[1] - 2, -1, -1):
        reserve[:, t] = np.clip(
            reserve[:, t + 1] + need[:, t + 1] / eta - eta * charge_kw[:, t + 1], 0.0, None
        )
    return reserve


def cautious_peak_load(
    load_kw: np.ndarray,
    spread_kw: np.ndarray,
    z: float,
    billed_peak_kw: np.ndarray,
    power_kw: np.ndarray,
    demand_window: np.ndarray,
) -> np.ndarray:
    """The load (B, H) to plan the demand-window peak against: in window hours the forecast
    plus ``z`` spreads (``spread_kw``, e.g. the like-day standard deviation), but never above
    what the battery's power could bring down to ``billed_peak_kw`` (B,), the peak of a plan
    on the forecast alone: load beyond that could not be shaved anyway, and planning for it
    would only raise the peak the plan accepts."""
    cap = billed_peak_kw[:, None] + power_kw[:, None]
    cautious = load_kw + z * np.clip(np.nan_to_num(spread_kw), 0.0, None)
    return np.where(demand_window, np.minimum(cautious, np.maximum(load_kw, cap)), load_kw)
