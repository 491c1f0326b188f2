"""Synthetic 15-minute interval data, with ground truth, for the sandbox portfolio.

Every value is a pure function of (portfolio, meter, interval): randomness is counter-based (``load_shapes.
hash64`` of the portfolio seed, the meter id, the interval and a salt), and the few whole-day quantities
(battery energy budgets on event days, missing event windows) are computed once per portfolio from its full
dispatch history. Two overlapping requests therefore agree on every interval they share.

The model, per meter (power in kW; an interval's energy is kW x 0.25 h):

- **load**: ``base + (peak - base) x ((1 - hvac) x occupancy + hvac x cooling x (0.35 + 0.65 x occupancy))``,
  where occupancy follows the site archetype's weekday or weekend/holiday curve in **local** wall-clock time
  (DST aware; schools mostly close in summer) and cooling follows a regional temperature-like signal
  (season, time of day, a smooth multi-day drift and a daily anomaly, both shared by the region); times a
  per-meter per-day factor and per-interval noise (docs/sandbox.md);
- **solar** on sites with ``site.renewable_generator``: a clear-sky bell scaled by a regional cloudiness;
- **behind-the-meter batteries** (``BATTERY_STORAGE`` on a ``UTILITY_METER``): charge local 01:00-06:00 and
  discharge local 16:00-21:00 at ``min(power, usable energy / 5 h)``, visible in the site's net load;
- **battery SUBMETERs** measure only the battery: a small auxiliary draw; on event days they charge local
  01:00-06:00 and discharge during the event (net export, ``generated_kwh > 0``), within power and energy;
- **events**: every non-cancelled, non-``5m`` dispatch event (latest revision) targeting the meter, meter
  level or as a member of a group event (the group's committed kW split by the members' nominations).
  Committed kW = ``energy_kw``, or ``nomination_kw`` when ``energy_kw`` is null. The meter lowers its net load
  below the counterfactual by committed kW x a response factor drawn per (meter, event): ``good`` 0.9-1.1,
  ``partial`` 0.3-0.7, ``none`` 0-0.04; batteries discharge (a BTM battery then has less energy for the rest
  of the evening peak, so its load rebounds); HVAC-type sites rebound for an hour after the event;
- **gaps**: one or two ``gaps`` meters (good responders otherwise) miss whole local days, single UTC hours
  and some whole event windows (those rows are absent);
- only intervals that start before ``portfolio.anchor`` (today's UTC midnight) exist; intervals that start
  more than ``FINAL_LAG`` before the anchor are ``final``.

``counterfactual_kwh`` is the net energy without any dispatch response: the ground truth baseline.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from vpp_pipeline.intervals.codes import CSV_COLUMNS  # Leap's header, the one the ingest reads

from . import load_shapes as shapes
from .portfolio import Portfolio, build_portfolio
from .timefmt import parse_datetime

INTERVAL_SECONDS = 900
INTERVAL = timedelta(seconds=INTERVAL_SECONDS)
#: intervals that start more than this before the portfolio anchor are ``final``
FINAL_LAG = timedelta(days=2)
RESPONSE_CATEGORIES = ("good", "partial", "none", "gaps")
#: energy values are rounded to 0.1 Wh so that CSV, API and frames agree exactly
KWH_DECIMALS = 4

_GOOD, _PARTIAL, _NONE, _GAPS = range(4)
_FACTOR_RANGES = {_GOOD: (0.9, 1.1), _PARTIAL: (0.3, 0.7), _NONE: (0.0, 0.04), _GAPS: (0.9, 1.1)}
_REBOUND = (
    0.25,
    0.15,
    0.08,
    0.03,
)  # share of the response added back in the 4 intervals after an event
_GAP_DAY_P, _GAP_HOUR_P, _GAP_EVENT_P = 0.06, 0.02, 0.35
# salts of the counter-based random streams
(
    _S_DAY,
    _S_NOISE,
    _S_RESP,
    _S_FACTOR,
    _S_CAT,
    _S_GAPPICK,
    _S_GAPDAY,
    _S_GAPHOUR,
    _S_GAPEVENT,
    _S_SHIFT,
    _S_PV,
    _S_DRIFT,
    _S_CLOUD,
    _S_TEMP_ANOMALY,
) = range(101, 115)
_KEY_SHIFT = np.int64(32)


def _fold_uuid(value: str) -> int:
    """A stable 64-bit number for a UUID string (its two halves xor-ed)."""
    n = uuid.UUID(value).int
    return (n >> 64) ^ (n & 0xFFFFFFFFFFFFFFFF)


def _interval_index(dt: datetime, *, ceil: bool) -> int:
    """Index of the 15-minute interval (since 1970-01-01 UTC) that starts at or after (ceil) / at or before
    (floor) ``dt``."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    seconds = dt.timestamp()
    return int(-(-seconds // INTERVAL_SECONDS) if ceil else seconds // INTERVAL_SECONDS)


# --- local time ----------------------------------------------------------------------------------------------

_OFFSET_BLOCK_HOURS = 2048
_offset_cache: dict[tuple[str, int], np.ndarray] = {}
_offset_lock = threading.Lock()


def _utc_offset_minutes(tz_name: str, hours: np.ndarray) -> np.ndarray:
    """UTC offset (minutes) of ``tz_name`` at each UTC hour (hours since 1970-01-01), DST aware."""
    tz = ZoneInfo(tz_name)
    blocks = hours // _OFFSET_BLOCK_HOURS
    out = np.empty(hours.shape, dtype=np.int64)
    for block in np.unique(blocks):
        key = (tz_name, int(block))
        with _offset_lock:
            table = _offset_cache.get(key)
        if table is None:
            first = int(block) * _OFFSET_BLOCK_HOURS
            table = np.array(
                [
                    datetime.fromtimestamp((first + h) * 3600, tz).utcoffset().total_seconds() // 60
                    for h in range(_OFFSET_BLOCK_HOURS)
                ],
                dtype=np.int64,
            )
            with _offset_lock:
                _offset_cache[key] = table
        sel = blocks == block
        out[sel] = table[hours[sel] - int(block) * _OFFSET_BLOCK_HOURS]
    return out


def _standard_offset_minutes(tz_name: str) -> int:
    tz = ZoneInfo(tz_name)
    return int(
        min(
            datetime(2020, 1, 15, tzinfo=tz).utcoffset().total_seconds(),
            datetime(2020, 7, 15, tzinfo=tz).utcoffset().total_seconds(),
        )
        // 60
    )


@dataclass
class _ZoneFeatures:
    """Per (zone, distinct interval) features; arrays of shape (n_zones, n_distinct)."""

    local_day: np.ndarray  # days since 1970-01-01 of the local date
    slot: np.ndarray  # local wall-clock quarter hour 0..95
    day_type: np.ndarray  # 0 working day, 1 weekend / NERC holiday
    doy: np.ndarray  # local day of year (0-based)
    cooling: np.ndarray  # 0.. ~1.2 cooling demand
    solar: np.ndarray  # 0..1 solar output share


# --- the per-portfolio model ---------------------------------------------------------------------------------


@dataclass
class _Model:
    seed: int
    anchor_t: int
    final_before_t: int
    meter_ids: list[str]
    row_of: dict[str, int]
    meter_key: np.ndarray  # uint64 per row
    zone: np.ndarray  # zone index per row
    zone_tz: list[str]
    zone_region: list[str]
    zone_std_offset: np.ndarray
    archetype: np.ndarray
    shift: np.ndarray  # occupancy shift in slots (-2..2)
    base_kw: np.ndarray
    span_kw: np.ndarray
    hvac: np.ndarray
    is_school: np.ndarray
    pv_kw: np.ndarray
    btm_discharge_kw: np.ndarray  # BTM battery: scheduled peak discharge (0 without)
    btm_charge_kw: np.ndarray
    submeter: np.ndarray  # bool
    aux_kw: np.ndarray
    plain: np.ndarray  # bool: no battery at all (load floor and rebound apply)
    category: np.ndarray  # response category code per row
    region_state: list[str]
    holidays: np.ndarray
    # served events, one entry per (meter, event)
    events: pl.DataFrame
    event_keys: list[str]  # ``events["meter_event_id"]``, for gathering by event_code
    ev_row: np.ndarray
    ev_start_t: np.ndarray
    ev_end_t: np.ndarray
    # overlay tables (sorted int64 keys)
    red_keys: np.ndarray  # row << 32 | t of event intervals
    red_kw: np.ndarray  # net-load reduction vs the counterfactual
    red_code: np.ndarray  # index into ``events``
    reb_keys: np.ndarray
    reb_kw: np.ndarray
    day_keys: np.ndarray  # row << 32 | local_day
    day_rest_scale: np.ndarray  # BTM: share of the scheduled peak discharge left outside events
    day_charge_kw: np.ndarray  # submeter: charging power before the day's events
    miss_keys: np.ndarray  # gap meters: intervals of missing event windows


# Portfolio is an (unhashable) dataclass: models are keyed by identity and dropped with their portfolio.
_models: dict[int, _Model] = {}
_models_lock = threading.Lock()


def _model(portfolio: Portfolio) -> _Model:
    key = id(portfolio)
    with _models_lock:
        cached = _models.get(key)
        if cached is None:
            cached = _build_model(portfolio)
            _models[key] = cached
            weakref.finalize(portfolio, _models.pop, key, None)
        return cached


def _zone_features(model: _Model, t_unique: np.ndarray) -> _ZoneFeatures:
    n_z = len(model.zone_tz)
    shape = (n_z, len(t_unique))
    local_day = np.empty(shape, dtype=np.int64)
    slot = np.empty(shape, dtype=np.int64)
    day_type = np.empty(shape, dtype=np.int64)
    doy = np.empty(shape, dtype=np.int64)
    cooling = np.empty(shape)
    solar = np.empty(shape)
    t_days = t_unique / 96.0
    for z in range(n_z):
        offset = _utc_offset_minutes(model.zone_tz[z], t_unique // 4)
        local_min = t_unique * 15 + offset
        day = local_min // 1440
        s = (local_min % 1440) // 15
        dates = day.astype("datetime64[D]")
        d = (day - dates.astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)).astype(
            np.int64
        )
        weekend = ((day + 3) % 7) >= 5
        holiday = np.isin(day, model.holidays)
        # solar time: the local clock runs an hour ahead of the sun under DST
        solar_hour = (s + 0.5) / 4 - (offset - model.zone_std_offset[z]) / 60
        climate = shapes.CLIMATES.get(model.zone_region[z], shapes.DEFAULT_CLIMATE)
        region_key = _fold_uuid(str(uuid.uuid5(uuid.NAMESPACE_DNS, model.zone_region[z])))
        phases = shapes.uniform(
            shapes.hash64(model.seed, region_key, _S_DRIFT, np.arange(len(shapes.WEATHER_DRIFT)))
        )
        drift = np.zeros(len(t_unique))
        for (period, amp), phase in zip(shapes.WEATHER_DRIFT, phases, strict=True):
            drift += amp * np.sin(2 * np.pi * (t_days / period + phase))
        # a weather front: each local day of the region is warmer or cooler than the smooth
        # drift by its own amount, so HVAC load jumps from one day to the next
        anomaly = shapes.DAILY_TEMPERATURE_ANOMALY_C * shapes.normal(
            shapes.hash64(model.seed, region_key, _S_TEMP_ANOMALY, day)
        )
        temp = (
            climate.mean_c
            + climate.seasonal_amp_c * np.cos(2 * np.pi * (d - 200) / 365.25)
            + climate.diurnal_amp_c * np.cos(2 * np.pi * (solar_hour - 15) / 24)
            + drift
            + anomaly
        )
        cool = np.clip(
            (temp - shapes.COOLING_BALANCE_C)
            / (shapes.COOLING_DESIGN_C - shapes.COOLING_BALANCE_C),
            0.0,
            1.2,
        )
        season = np.cos(2 * np.pi * (d - 172) / 365.25)
        day_len = 12 + 2.2 * season
        sunrise = 12.3 - day_len / 2
        bell = np.clip(np.sin(np.pi * (solar_hour - sunrise) / day_len), 0.0, None) ** 1.2
        bell[(solar_hour < sunrise) | (solar_hour > sunrise + day_len)] = 0.0
        cloud = np.clip(
            0.3
            + 0.2 * np.sin(2 * np.pi * (t_days / 3.7 + phases[0]))
            + 0.15 * np.sin(2 * np.pi * (t_days / 8.9 + phases[1]))
            + 0.15 * shapes.normal(shapes.hash64(model.seed, region_key, _S_CLOUD, day)),
            0.0,
            1.0,
        )
        local_day[z], slot[z], doy[z], cooling[z] = day, s, d, cool
        day_type[z] = (weekend | holiday).astype(np.int64)
        solar[z] = bell * (0.75 + 0.25 * season) * (1.0 - 0.6 * cloud)
    return _ZoneFeatures(local_day, slot, day_type, doy, cooling, solar)


@dataclass
class _Local:
    """Local-time features gathered per row."""

    local_day: np.ndarray
    slot: np.ndarray
    day_type: np.ndarray
    doy: np.ndarray
    cooling: np.ndarray
    solar: np.ndarray


def _local(model: _Model, rows: np.ndarray, t: np.ndarray) -> _Local:
    if len(t) == 0:
        empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0)
        return _Local(empty_i, empty_i, empty_i, empty_i, empty_f, empty_f)
    t_unique, inverse = np.unique(t, return_inverse=True)
    zf = _zone_features(model, t_unique)
    z = model.zone[rows]
    return _Local(
        zf.local_day[z, inverse],
        zf.slot[z, inverse],
        zf.day_type[z, inverse],
        zf.doy[z, inverse],
        zf.cooling[z, inverse],
        zf.solar[z, inverse],
    )


def _in_peak(slot: np.ndarray) -> np.ndarray:
    return (slot >= shapes.PEAK_SLOTS[0]) & (slot < shapes.PEAK_SLOTS[1])


def _in_charge(slot: np.ndarray) -> np.ndarray:
    return (slot >= shapes.BATTERY_CHARGE_SLOTS[0]) & (slot < shapes.BATTERY_CHARGE_SLOTS[1])


def _lookup(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hit mask, position) of each ``query`` key in the sorted ``keys``."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=bool), np.zeros(len(query), dtype=np.int64)
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, len(keys) - 1)
    return keys[pos] == query, pos


def _nomination_index(portfolio: Portfolio) -> dict[tuple[str, str], list]:
    index: dict[tuple[str, str], list] = {}
    for nom in portfolio.nominations:
        end = parse_datetime(nom["end_time"]) if nom.get("end_time") else None
        index.setdefault((nom["meter_id"], nom["program_identifier"]), []).append(
            (parse_datetime(nom["start_time"]), end, float(nom["nomination_kw"]))
        )
    return index


def _nomination_kw(index, meter_id: str, program: str, at: datetime) -> float | None:
    for start, end, kw in index.get((meter_id, program), ()):
        if start <= at and (end is None or at < end):
            return kw
    return None


def _served_events(portfolio: Portfolio, row_of: dict[str, int]) -> list[dict]:
    """One record per (meter, event) for every event whose intervals the meter responds to."""
    noms = _nomination_index(portfolio)
    anchor = portfolio.anchor
    out: list[dict] = []
    for level, events in (("meter", portfolio.meter_events), ("group", portfolio.group_events)):
        for event in events:
            slot = event.latest
            types = list(slot.get("dispatch_event_types") or [])
            if slot.get("cancelled") or "5m" in types:
                continue
            start, end = parse_datetime(slot["start_time"]), parse_datetime(slot["end_time"])
            if start >= anchor or end <= start:
                continue
            energy = slot.get("energy_kw")
            committed = float(energy if energy is not None else slot.get("nomination_kw") or 0.0)
            if level == "meter":
                shares = [(event.recipient_id, 1.0)]
            else:
                members = [m for m in event.meter_ids if m in row_of]
                kws = [_nomination_kw(noms, m, event.program, start) or 0.0 for m in members]
                total = sum(kws)
                shares = [
                    (m, kw / total if total > 0 else 1.0 / len(members))
                    for m, kw in zip(members, kws, strict=True)
                ]
            for meter_id, share in shares:
                if meter_id not in row_of:
                    continue
                out.append(
                    {
                        "meter_event_id": event.event_id
                        if level == "meter"
                        else f"{event.event_id}:{meter_id}",
                        "meter_id": meter_id,
                        "event_id": event.event_id,
                        "level": level,
                        "programs": list(slot.get("programs") or [event.program]),
                        "dispatch_event_types": types,
                        "start": start,
                        "end": end,
                        "committed_kw": round(committed * share, 3),
                        "_row": row_of[meter_id],
                        "_event_key": _fold_uuid(event.event_id),
                    }
                )
    out.sort(key=lambda e: (e["_row"], e["start"], e["meter_event_id"]))
    return out


def _categories(
    seed: int, keys: np.ndarray, eventful: np.ndarray, submeter: np.ndarray
) -> np.ndarray:
    """Response category per row: a few ``gaps`` meters, ~7 % ``none``, ~13 % ``partial``, the rest
    ``good``; with six or more meters that have events, at least one ``none`` and one ``partial`` among them."""
    n = len(keys)
    cat = np.full(n, _GOOD, dtype=np.int64)
    u = shapes.uniform(shapes.hash64(seed, keys, _S_CAT))
    cat[u < 0.20] = _PARTIAL
    cat[u < 0.07] = _NONE
    candidates = np.flatnonzero(eventful & ~submeter)
    if len(candidates) >= 3:
        n_gaps = 2 if n >= 24 else 1
        pick = shapes.uniform(shapes.hash64(seed, keys[candidates], _S_GAPPICK))
        cat[candidates[np.argsort(pick)[:n_gaps]]] = _GAPS
    live = np.flatnonzero(eventful & (cat != _GAPS))
    if len(live) >= 6:
        for wanted in (_NONE, _PARTIAL):
            if not (cat[live] == wanted).any():
                goods = live[cat[live] == _GOOD]
                cat[goods[np.argmin(u[goods])]] = wanted
    return cat


def _build_model(portfolio: Portfolio) -> _Model:
    meter_ids = list(portfolio.meters)
    row_of = {m: i for i, m in enumerate(meter_ids)}
    n = len(meter_ids)
    sites = [portfolio.sites[m] for m in meter_ids]
    keys = np.array([_fold_uuid(m) for m in meter_ids], dtype=np.uint64)
    zone_pairs: dict[tuple[str, str], int] = {}
    zone = np.array(
        [
            zone_pairs.setdefault((s.timezone, s.transmission_region), len(zone_pairs))
            for s in sites
        ],
        dtype=np.int64,
    )
    zone_tz = [tz for tz, _ in zone_pairs]
    arch_index = {k: i for i, k in enumerate(shapes.ARCHETYPE_KEYS)}
    archetype = np.array([arch_index.get(s.archetype, 0) for s in sites], dtype=np.int64)
    peak = np.array([s.peak_load_kw for s in sites], dtype=np.float64)
    base = np.array([s.base_load_kw for s in sites], dtype=np.float64)
    submeter = np.array([s.is_battery_submeter for s in sites], dtype=bool)
    power = np.array([s.battery_power_kw or 0.0 for s in sites], dtype=np.float64)
    usable = np.array([(s.battery_energy_kwh or 0.0) for s in sites]) * shapes.BATTERY_USABLE_SHARE
    btm = (power > 0) & ~submeter
    peak_hours = (shapes.PEAK_SLOTS[1] - shapes.PEAK_SLOTS[0]) / 4
    charge_hours = (shapes.BATTERY_CHARGE_SLOTS[1] - shapes.BATTERY_CHARGE_SLOTS[0]) / 4
    discharge = np.where(btm, np.minimum(power, usable / peak_hours), 0.0)
    charge = np.where(
        btm, discharge * peak_hours / charge_hours / shapes.BATTERY_CHARGE_EFFICIENCY, 0.0
    )
    has_pv = np.array(
        [
            bool((portfolio.meters[m].get("site") or {}).get("renewable_generator"))
            and not portfolio.sites[m].is_battery_submeter
            for m in meter_ids
        ]
    )
    pv_kw = np.where(
        has_pv, peak * (0.15 + 0.2 * shapes.uniform(shapes.hash64(portfolio.seed, keys, _S_PV))), 0
    )
    years = range(portfolio.anchor.year - 12, portfolio.anchor.year + 2)
    model = _Model(
        seed=portfolio.seed,
        anchor_t=_interval_index(portfolio.anchor, ceil=True),
        final_before_t=_interval_index(portfolio.anchor - FINAL_LAG, ceil=True),
        meter_ids=meter_ids,
        row_of=row_of,
        meter_key=keys,
        zone=zone,
        zone_tz=zone_tz,
        zone_region=[region for _, region in zone_pairs],
        zone_std_offset=np.array([_standard_offset_minutes(tz) for tz in zone_tz]),
        archetype=archetype,
        shift=(shapes.hash64(portfolio.seed, keys, _S_SHIFT) % np.uint64(5)).astype(np.int64) - 2,
        base_kw=np.where(submeter, 0.0, base),
        span_kw=np.where(submeter, 0.0, np.maximum(peak - base, 0.0)),
        hvac=np.array([shapes.HVAC_SHARE.get(s.archetype, 0.3) for s in sites]),
        is_school=np.array([s.archetype == "school" for s in sites]),
        pv_kw=pv_kw,
        btm_discharge_kw=discharge,
        btm_charge_kw=charge,
        submeter=submeter,
        aux_kw=np.where(submeter, power * shapes.BATTERY_AUX_SHARE, 0.0),
        plain=power <= 0,
        category=np.zeros(n, dtype=np.int64),
        region_state=[
            (portfolio.meters[m].get("customer") or {}).get("state_or_province_code") or ""
            for m in meter_ids
        ],
        holidays=shapes.holiday_day_numbers(years.start, years.stop),
        events=pl.DataFrame(),
        event_keys=[],
        ev_row=np.empty(0, dtype=np.int64),
        ev_start_t=np.empty(0, dtype=np.int64),
        ev_end_t=np.empty(0, dtype=np.int64),
        red_keys=np.empty(0, dtype=np.int64),
        red_kw=np.empty(0),
        red_code=np.empty(0, dtype=np.int64),
        reb_keys=np.empty(0, dtype=np.int64),
        reb_kw=np.empty(0),
        day_keys=np.empty(0, dtype=np.int64),
        day_rest_scale=np.empty(0),
        day_charge_kw=np.empty(0),
        miss_keys=np.empty(0, dtype=np.int64),
    )
    records = _served_events(portfolio, row_of)
    ev_row = np.array([r["_row"] for r in records], dtype=np.int64)
    eventful = np.zeros(n, dtype=bool)
    eventful[ev_row] = True
    model.category = _categories(portfolio.seed, keys, eventful, submeter)
    _add_events(model, records, power, usable)
    return model


def _add_events(model: _Model, records: list[dict], power: np.ndarray, usable: np.ndarray) -> None:
    """Fill the model's event table and the overlay tables derived from it."""
    seed = model.seed
    ev_row = np.array([r["_row"] for r in records], dtype=np.int64)
    start_t = np.array([_interval_index(r["start"], ceil=False) for r in records], dtype=np.int64)
    end_t = np.array([_interval_index(r["end"], ceil=True) for r in records], dtype=np.int64)
    committed = np.array([r["committed_kw"] for r in records], dtype=np.float64)
    event_key = np.array([r["_event_key"] for r in records], dtype=np.uint64)
    cat = model.category[ev_row]
    u = shapes.uniform(shapes.hash64(seed, model.meter_key[ev_row], event_key, _S_FACTOR))
    lo = np.array([_FACTOR_RANGES[c][0] for c in range(4)])[cat]
    hi = np.array([_FACTOR_RANGES[c][1] for c in range(4)])[cat]
    factor = lo + (hi - lo) * u
    category_names = np.array(RESPONSE_CATEGORIES)
    model.events = pl.DataFrame(
        {
            "meter_id": [r["meter_id"] for r in records],
            "meter_event_id": [r["meter_event_id"] for r in records],
            "event_id": [r["event_id"] for r in records],
            "level": [r["level"] for r in records],
            "programs": [r["programs"] for r in records],
            "dispatch_event_types": [r["dispatch_event_types"] for r in records],
            "start": [r["start"] for r in records],
            "end": [r["end"] for r in records],
            "committed_kw": committed,
            "response": category_names[cat].tolist() if len(cat) else [],
        },
        schema={
            "meter_id": pl.String,
            "meter_event_id": pl.String,
            "event_id": pl.String,
            "level": pl.String,
            "programs": pl.List(pl.String),
            "dispatch_event_types": pl.List(pl.String),
            "start": pl.Datetime("us", "UTC"),
            "end": pl.Datetime("us", "UTC"),
            "committed_kw": pl.Float64,
            "response": pl.String,
        },
    )
    model.event_keys = [r["meter_event_id"] for r in records]
    model.ev_row, model.ev_start_t, model.ev_end_t = ev_row, start_t, end_t
    # the meter's local calendar day of the event start (baseline day selection works in local days)
    start_day = _local(model, ev_row, start_t).local_day
    model.events = model.events.with_columns(
        pl.Series("local_date", start_day, dtype=pl.Int32).cast(pl.Date)
    )
    if not records:
        return

    # every event interval, with the reduction the meter aims for
    lengths = end_t - start_t
    code = np.repeat(np.arange(len(records)), lengths)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    t = start_t[code] + (np.arange(len(code)) - first)
    rows = ev_row[code]
    jitter = 1.0 + 0.04 * shapes.normal(shapes.hash64(seed, model.meter_key[rows], t, _S_RESP))
    target = np.maximum(committed[code] * factor[code] * jitter, 0.0)
    keys = (rows << _KEY_SHIFT) | t
    # overlapping events on one meter: the meter follows the largest request
    order = np.lexsort((target, keys))
    keys, target, code, rows, t = keys[order], target[order], code[order], rows[order], t[order]
    last = np.r_[keys[1:] != keys[:-1], True]
    keys, target, code, rows, t = keys[last], target[last], code[last], rows[last], t[last]
    local = _local(model, rows, t)
    day_keys = (rows << _KEY_SHIFT) | local.local_day
    day_unique, day_of = np.unique(day_keys, return_inverse=True)
    day_row = day_unique >> _KEY_SHIFT
    n_days = len(day_unique)

    reduction = target.copy()
    # battery submeters: discharge up to their power, and within their usable energy per local day
    sub = model.submeter[rows]
    discharge = np.where(sub, np.minimum(power[rows], target), 0.0)
    day_energy = np.bincount(day_of, weights=discharge * 0.25, minlength=n_days)
    cap = np.where(
        day_energy > 0, np.minimum(1.0, usable[day_row] / np.maximum(day_energy, 1e-9)), 1.0
    )
    discharge *= cap[day_of]
    reduction[sub] = discharge[sub]
    charge_kw = (
        np.bincount(day_of, weights=discharge * 0.25, minlength=n_days)
        / shapes.BATTERY_CHARGE_EFFICIENCY
        / ((shapes.BATTERY_CHARGE_SLOTS[1] - shapes.BATTERY_CHARGE_SLOTS[0]) * 0.25)
    )
    charge_kw[~model.submeter[day_row]] = 0.0
    # BTM batteries: energy used in events is missing from the rest of the evening peak
    btm = ~model.submeter[rows] & (power[rows] > 0)
    scheduled = np.where(_in_peak(local.slot), model.btm_discharge_kw[rows], 0.0)
    battery_event_kw = np.where(btm, np.minimum(power[rows], scheduled + target), 0.0)
    used = np.minimum(
        np.bincount(day_of, weights=battery_event_kw * 0.25, minlength=n_days), usable[day_row]
    )
    peak_event_slots = np.bincount(day_of, weights=(btm & _in_peak(local.slot)), minlength=n_days)
    rest_slots = (shapes.PEAK_SLOTS[1] - shapes.PEAK_SLOTS[0]) - peak_event_slots
    rest_energy = model.btm_discharge_kw[day_row] * 0.25 * rest_slots
    rest_scale = np.where(
        rest_energy > 0,
        np.clip((usable[day_row] - used) / np.maximum(rest_energy, 1e-9), 0.0, 1.0),
        1.0,
    )
    rest_scale[~(model.btm_discharge_kw[day_row] > 0)] = 1.0

    model.red_keys, model.red_kw, model.red_code = keys, reduction, code
    model.day_keys, model.day_rest_scale, model.day_charge_kw = day_unique, rest_scale, charge_kw

    # HVAC-type sites (no battery) recover for an hour after an event
    plain = model.plain[ev_row] & (cat != _NONE)
    idx = np.flatnonzero(plain)
    if len(idx):
        k = len(_REBOUND)
        r_rows = np.repeat(ev_row[idx], k)
        r_t = np.repeat(end_t[idx], k) + np.tile(np.arange(k), len(idx))
        r_kw = np.repeat(committed[idx] * factor[idx], k) * np.tile(np.array(_REBOUND), len(idx))
        r_keys = (r_rows << _KEY_SHIFT) | r_t
        hit, _ = _lookup(model.red_keys, r_keys)
        r_keys, r_kw = r_keys[~hit], r_kw[~hit]
        order = np.lexsort((r_kw, r_keys))
        r_keys, r_kw = r_keys[order], r_kw[order]
        last = np.r_[r_keys[1:] != r_keys[:-1], True] if len(r_keys) else np.empty(0, dtype=bool)
        model.reb_keys, model.reb_kw = r_keys[last], r_kw[last]

    # gap meters lose their first event's window and about a third of the others (plus an hour around)
    gap_idx = np.flatnonzero(cat == _GAPS)
    if len(gap_idx):
        pick = shapes.uniform(
            shapes.hash64(seed, model.meter_key[ev_row[gap_idx]], event_key[gap_idx], _S_GAPEVENT)
        )
        is_first = np.r_[True, ev_row[gap_idx][1:] != ev_row[gap_idx][:-1]]
        chosen = gap_idx[is_first | (pick < _GAP_EVENT_P)]
        lo_t, hi_t = start_t[chosen] - 4, end_t[chosen] + 4
        lens = hi_t - lo_t
        m_code = np.repeat(np.arange(len(chosen)), lens)
        m_first = np.repeat(np.cumsum(lens) - lens, lens)
        m_t = lo_t[m_code] + (np.arange(len(m_code)) - m_first)
        model.miss_keys = np.unique((ev_row[chosen][m_code] << _KEY_SHIFT) | m_t)


# --- evaluation ----------------------------------------------------------------------------------------------


@dataclass
class IntervalArrays:
    """Interval rows as numpy arrays (one element per present interval). Energy in kWh per 15 minutes.

    ``row`` indexes the portfolio's meters (``meter_ids``); ``t`` is the interval index since 1970-01-01 UTC
    (start = t x 900 s); ``event_code`` indexes ``event_table(...)`` rows (-1 outside events);
    ``local_day`` (days since 1970-01-01) and ``local_slot`` (0..95) are the interval start's wall-clock
    date and quarter hour in the meter's own time zone.
    """

    row: np.ndarray
    t: np.ndarray
    kwh: np.ndarray
    consumed_kwh: np.ndarray
    generated_kwh: np.ndarray
    counterfactual_kwh: np.ndarray
    event_code: np.ndarray
    final: np.ndarray
    local_day: np.ndarray
    local_slot: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def select(self, mask: np.ndarray) -> IntervalArrays:
        return IntervalArrays(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    @staticmethod
    def concat(parts: list[IntervalArrays]) -> IntervalArrays:
        if not parts:
            return _empty_arrays()
        return IntervalArrays(
            **{
                f.name: np.concatenate([getattr(p, f.name) for p in parts])
                for f in fields(parts[0])
            }
        )


def _empty_arrays() -> IntervalArrays:
    i, f = np.empty(0, dtype=np.int64), np.empty(0)
    return IntervalArrays(i, i, f, f, f, f, i, np.empty(0, dtype=bool), i, i)


def _evaluate(model: _Model, rows: np.ndarray, t: np.ndarray) -> tuple[IntervalArrays, np.ndarray]:
    """The model at each (row, t) pair, and a mask of the pairs that exist (``gaps`` meters miss some)."""
    seed = model.seed
    local = _local(model, rows, t)
    mkey = model.meter_key[rows]
    arch = model.archetype[rows]
    slot_shifted = (local.slot + model.shift[rows]) % shapes.QUARTER_HOURS_PER_DAY
    occ = shapes.occupancy_table()[arch, local.day_type, slot_shifted]
    summer = (
        model.is_school[rows]
        & (local.doy >= shapes.SCHOOL_SUMMER_BREAK_DOY[0])
        & (local.doy < shapes.SCHOOL_SUMMER_BREAK_DOY[1])
    )
    occ = np.where(summer, occ * shapes.SCHOOL_SUMMER_FACTOR, occ)
    hvac = model.hvac[rows]
    load = model.base_kw[rows] + model.span_kw[rows] * (
        (1.0 - hvac) * occ + hvac * local.cooling * (0.35 + 0.65 * occ)
    )
    day_factor = 1.0 + 0.04 * shapes.normal(shapes.hash64(seed, mkey, local.local_day, _S_DAY))
    noise = 1.0 + 0.025 * shapes.normal(shapes.hash64(seed, mkey, t, _S_NOISE))
    load = np.maximum(load * day_factor * noise, 0.0)
    pv = model.pv_kw[rows] * local.solar
    peak, charging = _in_peak(local.slot), _in_charge(local.slot)
    btm_kw = np.where(charging, model.btm_charge_kw[rows], 0.0) - np.where(
        peak, model.btm_discharge_kw[rows], 0.0
    )
    cf_kw = load - pv + btm_kw + model.aux_kw[rows]

    keys = (rows << _KEY_SHIFT) | t
    hit, pos = _lookup(model.red_keys, keys)
    reduction = np.where(hit, model.red_kw[pos], 0.0)
    event_code = np.where(hit, model.red_code[pos], -1)
    plain = model.plain[rows]
    actual_kw = cf_kw - reduction
    # a site without a battery cannot shed more than 90 % of its load
    actual_kw = np.where(plain, np.maximum(actual_kw, 0.1 * load - pv), actual_kw)
    r_hit, r_pos = _lookup(model.reb_keys, keys)
    actual_kw += np.where(r_hit, model.reb_kw[r_pos], 0.0)
    d_hit, d_pos = _lookup(model.day_keys, (rows << _KEY_SHIFT) | local.local_day)
    rest_scale = np.where(d_hit, model.day_rest_scale[d_pos], 1.0)
    actual_kw += np.where(peak & ~hit, model.btm_discharge_kw[rows] * (1.0 - rest_scale), 0.0)
    actual_kw += np.where(charging & d_hit, model.day_charge_kw[d_pos], 0.0)

    kwh = np.round(actual_kw * 0.25, KWH_DECIMALS)
    cf_kwh = np.round(cf_kw * 0.25, KWH_DECIMALS)
    out = IntervalArrays(
        row=rows,
        t=t,
        kwh=kwh,
        consumed_kwh=np.maximum(kwh, 0.0),
        generated_kwh=np.maximum(-kwh, 0.0),
        counterfactual_kwh=cf_kwh,
        event_code=event_code,
        final=t < model.final_before_t,
        local_day=local.local_day,
        local_slot=local.slot,
    )
    present = np.ones(len(rows), dtype=bool)
    gap = model.category[rows] == _GAPS
    if gap.any():
        g = np.flatnonzero(gap)
        missing = (
            (
                shapes.uniform(shapes.hash64(seed, mkey[g], local.local_day[g], _S_GAPDAY))
                < _GAP_DAY_P
            )
            | (shapes.uniform(shapes.hash64(seed, mkey[g], t[g] // 4, _S_GAPHOUR)) < _GAP_HOUR_P)
            | _lookup(model.miss_keys, keys[g])[0]
        )
        present[g[missing]] = False
    return out, present


def _evaluate_present(model: _Model, rows: np.ndarray, t: np.ndarray) -> IntervalArrays:
    arrays, present = _evaluate(model, rows, t)
    return arrays if present.all() else arrays.select(present)


#: rows evaluated per block when generating large windows (bounds memory)
_BLOCK_ROWS = 1_000_000


def _rows_for(model: _Model, meter_ids: list[str] | None) -> np.ndarray:
    if meter_ids is None:
        return np.arange(len(model.meter_ids), dtype=np.int64)
    unknown = [m for m in meter_ids if m not in model.row_of]
    if unknown:
        raise ValueError(f"unknown meter_id(s) in this portfolio: {unknown[:5]}")
    return np.array([model.row_of[m] for m in meter_ids], dtype=np.int64)


def interval_arrays(
    portfolio: Portfolio, meter_ids: list[str] | None, start: datetime, end: datetime
) -> IntervalArrays:
    """Every present interval of ``meter_ids`` (default: all, in portfolio order) that starts in
    ``[start, end)`` and before the anchor, ordered by meter (as given) then time."""
    model = _model(portfolio)
    rows = _rows_for(model, meter_ids)
    t0 = _interval_index(start, ceil=True)
    t1 = min(_interval_index(end, ceil=True), model.anchor_t)
    if t1 <= t0 or len(rows) == 0:
        return _empty_arrays()
    span = t1 - t0
    parts = []
    per_block = max(1, _BLOCK_ROWS // span)
    for i in range(0, len(rows), per_block):
        block = rows[i : i + per_block]
        if len(block) * span <= _BLOCK_ROWS:
            parts.append(
                _evaluate_present(
                    model, np.repeat(block, span), np.tile(np.arange(t0, t1), len(block))
                )
            )
            continue
        # one meter over a very long window: split time
        for row in block:
            step = _BLOCK_ROWS
            for a in range(t0, t1, step):
                b = min(a + step, t1)
                parts.append(_evaluate_present(model, np.full(b - a, row), np.arange(a, b)))
    return IntervalArrays.concat(parts)


_DATETIME = pl.Datetime("us", "UTC")


def _times(t: np.ndarray, offset_intervals: int = 0) -> pl.Series:
    return pl.Series((t + offset_intervals) * (INTERVAL_SECONDS * 1_000_000), dtype=pl.Int64).cast(
        _DATETIME
    )


def _gather(values: list[str], index: np.ndarray) -> pl.Series:
    """``values[index]`` as a string Series (null where index is -1), without per-row Python objects."""
    idx = pl.Series(index, dtype=pl.Int64)
    if (index < 0).any():
        idx = idx.set(pl.Series(index < 0), None)
    return pl.Series(values, dtype=pl.String).gather(idx)


def arrays_to_frame(portfolio: Portfolio, arrays: IntervalArrays) -> pl.DataFrame:
    """The public interval frame of ``arrays`` (see ``generate_intervals``)."""
    model = _model(portfolio)
    return pl.DataFrame(
        {
            "meter_id": _gather(model.meter_ids, arrays.row),
            "interval_start": _times(arrays.t),
            "interval_end": _times(arrays.t, 1),
            "kwh": arrays.kwh,
            "consumed_kwh": arrays.consumed_kwh,
            "generated_kwh": arrays.generated_kwh,
            "counterfactual_kwh": arrays.counterfactual_kwh,
            "event_id": _gather(model.event_keys, arrays.event_code)
            if model.event_keys
            else pl.Series([None] * len(arrays), dtype=pl.String),
            "final": arrays.final,
        }
    )


def generate_intervals(
    portfolio: Portfolio, start: datetime, end: datetime, meter_ids: list[str] | None = None
) -> pl.DataFrame:
    """Synthetic 15-minute interval reads with ground truth, for intervals starting in ``[start, end)``
    (UTC; naive = UTC) and before ``portfolio.anchor``.

    Columns: ``meter_id``, ``interval_start`` / ``interval_end`` (UTC, 15 minutes apart), ``kwh`` (net
    consumption over the interval, export negative), ``consumed_kwh`` / ``generated_kwh`` (the positive and
    negative parts of ``kwh``), ``counterfactual_kwh`` (net consumption without any dispatch response: the
    ground truth baseline), ``event_id`` (the ``meter_event_id`` of ``event_truth``, i.e. the Leap
    ``meter_event_id`` or ``<market_group_event_id>:<meter_id>``; NULL outside events) and ``final``.
    Rows of ``gaps`` meters that are missing are absent. Ordered by meter (``meter_ids`` order, default
    portfolio order) then time. Deterministic per (portfolio, meter, interval), whatever the window.
    """
    return arrays_to_frame(portfolio, interval_arrays(portfolio, meter_ids, start, end))


def response_profile(portfolio: Portfolio) -> dict[str, str]:
    """Each meter's response category: ``good`` | ``partial`` | ``none`` | ``gaps`` (good responders with
    missing data)."""
    model = _model(portfolio)
    return {m: RESPONSE_CATEGORIES[c] for m, c in zip(model.meter_ids, model.category, strict=True)}


def event_table(portfolio: Portfolio) -> pl.DataFrame:
    """The events the interval data responds to, one row per (meter, event): ``meter_id``,
    ``meter_event_id`` (group events: ``<market_group_event_id>:<meter_id>``), ``event_id`` (Leap's id),
    ``level``, ``programs``, ``dispatch_event_types``, ``start``, ``end`` (UTC), ``committed_kw`` (this
    meter's share), ``response`` (the meter's category) and ``local_date`` (the meter's local calendar
    date of the start). Row i is ``event_code`` i."""
    return _model(portfolio).events


def event_truth(portfolio: Portfolio, meter_ids: list[str] | None = None) -> pl.DataFrame:
    """Ground-truth delivery per (meter, event) that started before the anchor.

    Columns: ``meter_id``, ``meter_event_id``, ``event_id``, ``level``, ``programs``, ``start``, ``end``
    (UTC), ``committed_kw``, ``true_delivered_kwh`` (sum of counterfactual - actual kWh over the event's
    intervals that exist), ``true_delivered_kw`` (that energy / the event's hours), ``intervals_expected``,
    ``intervals_present`` and ``response`` (the meter's category).
    """
    model = _model(portfolio)
    events = model.events
    if meter_ids is not None:
        select = np.isin(model.ev_row, _rows_for(model, list(meter_ids)))
    else:
        select = np.ones(len(events), dtype=bool)
    idx = np.flatnonzero(select)
    start_t = model.ev_start_t[idx]
    end_t = np.minimum(model.ev_end_t[idx], model.anchor_t)
    lengths = np.maximum(end_t - start_t, 0)
    code = np.repeat(np.arange(len(idx)), lengths)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    t = start_t[code] + (np.arange(len(code)) - first)
    rows = model.ev_row[idx][code]
    n = len(idx)
    delivered_kwh = np.zeros(n)
    present_n = np.zeros(n, dtype=np.int64)
    for a in range(0, len(t), _BLOCK_ROWS):
        b = min(a + _BLOCK_ROWS, len(t))
        got, present = _evaluate(model, rows[a:b], t[a:b])
        delivered = np.where(present, got.counterfactual_kwh - got.kwh, 0.0)
        delivered_kwh += np.bincount(code[a:b], weights=delivered, minlength=n)
        present_n += np.bincount(code[a:b], weights=present, minlength=n).astype(np.int64)
    hours = (model.ev_end_t[idx] - model.ev_start_t[idx]) * 0.25
    return (
        events[idx]
        .with_columns(
            pl.Series("true_delivered_kwh", np.round(delivered_kwh, KWH_DECIMALS)),
            pl.Series("true_delivered_kw", np.round(delivered_kwh / hours, 3)),
            pl.Series("intervals_expected", (model.ev_end_t[idx] - model.ev_start_t[idx])),
            pl.Series("intervals_present", present_n),
        )
        .select(
            "meter_id",
            "meter_event_id",
            "event_id",
            "level",
            "programs",
            "start",
            "end",
            "committed_kw",
            "true_delivered_kwh",
            "true_delivered_kw",
            "intervals_expected",
            "intervals_present",
            "response",
        )
    )


def meter_region(portfolio: Portfolio, meter_id: str) -> str:
    """The meter's US state (two letters) from its customer address, as Leap's CSV ``region``."""
    model = _model(portfolio)
    return model.region_state[model.row_of[meter_id]]


# --- Leap interval upload CSV --------------------------------------------------------------------------------


def _utc_day(dt: datetime) -> datetime:
    dt = dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)
    return datetime(dt.year, dt.month, dt.day, tzinfo=UTC)


def _csv_frame(model: _Model, arrays: IntervalArrays) -> pl.DataFrame:
    # timestamps and booleans are formatted once per distinct value, then gathered
    t_unique, inverse = np.unique(arrays.t, return_inverse=True)
    stamp_t = np.concatenate([t_unique, t_unique + 1])
    stamps = [
        datetime.fromtimestamp(int(v) * INTERVAL_SECONDS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for v in stamp_t
    ]
    end_index = np.searchsorted(stamp_t[: len(t_unique)], arrays.t) + len(t_unique)
    return pl.DataFrame(
        {
            "meter_id": _gather(model.meter_ids, arrays.row),
            "interval_start_time_utc": _gather(stamps, inverse),
            "interval_end_time_utc": _gather(stamps, end_index),
            "energy_net_kwh": arrays.kwh,
            "energy_consumed_kwh": arrays.consumed_kwh,
            "energy_generated_kwh": arrays.generated_kwh,
            "final": arrays.final,
            "region": _gather(model.region_state, arrays.row),
        }
    )


def write_interval_csvs(
    portfolio: Portfolio,
    out_dir: str | Path,
    start: datetime,
    end: datetime,
    meter_ids: list[str] | None = None,
    days_per_file: int = 1,
) -> list[Path]:
    """Write the interval reads starting in ``[start, end)`` as Leap interval-upload CSV files.

    Header ``meter_id,interval_start_time_utc,interval_end_time_utc,energy_net_kwh,energy_consumed_kwh,
    energy_generated_kwh,final,region``; timestamps like ``2026-01-05T08:00:00Z``; energy in kWh with 4
    decimals (net = consumed - generated exactly); ``final`` ``true``/``false``; ``region`` the meter's US
    state. One file per ``days_per_file`` UTC days, named after its first day (``intervals_2026-01-05.csv``);
    chunks without data (e.g. after the anchor) write no file. Returns the paths written, in order.
    """
    if days_per_file < 1:
        raise ValueError("days_per_file must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = _model(portfolio)
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    paths: list[Path] = []
    day = _utc_day(start)
    while day < end:
        chunk_end = day + timedelta(days=days_per_file)
        arrays = interval_arrays(portfolio, meter_ids, max(start, day), min(end, chunk_end))
        if len(arrays):
            path = out / f"intervals_{day.date().isoformat()}.csv"
            _csv_frame(model, arrays).write_csv(path, float_precision=KWH_DECIMALS)
            paths.append(path)
        day = chunk_end
    return paths


def write_interval_csvs_for_bench(
    n_meters: int, days: int, out_dir: str | Path, seed: int = 7, anchor: datetime | None = None
) -> dict:
    """Benchmark path: build a portfolio of ``n_meters`` with ``days`` of history and write every interval
    of the ``days`` before its anchor as daily CSV files. Returns ``{"rows", "files", "bytes",
    "build_seconds", "write_seconds", "rows_per_second"}``."""
    began = time.perf_counter()
    portfolio = build_portfolio(seed=seed, n_meters=n_meters, history_days=days, anchor=anchor)
    _model(portfolio)
    built = time.perf_counter()
    paths = write_interval_csvs(
        portfolio, out_dir, portfolio.anchor - timedelta(days=days), portfolio.anchor
    )
    written = time.perf_counter()
    rows = 0
    size = 0
    for path in paths:
        size += path.stat().st_size
        with path.open("rb") as handle:
            rows += sum(1 for _ in handle) - 1
    return {
        "rows": rows,
        "files": len(paths),
        "bytes": size,
        "build_seconds": round(built - began, 3),
        "write_seconds": round(written - built, 3),
        "rows_per_second": round(rows / max(written - built, 1e-9)),
    }


__all__ = [
    "CSV_COLUMNS",
    "FINAL_LAG",
    "INTERVAL",
    "RESPONSE_CATEGORIES",
    "IntervalArrays",
    "arrays_to_frame",
    "event_table",
    "event_truth",
    "generate_intervals",
    "interval_arrays",
    "meter_region",
    "response_profile",
    "write_interval_csvs",
    "write_interval_csvs_for_bench",
]
