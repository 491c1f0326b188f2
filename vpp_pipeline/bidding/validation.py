"""Leap's bid rules as code, with machine-readable reason codes.

Used twice: by the pipeline before it submits (so a bad bid never leaves) and by the sandbox
when it receives a request (so the rules are enforced over real HTTP too). Rules (digest
section 11): hourly UTC timeslots; ascending curve of ``{quantity_in_kw, price}``; price in
$/kWh within [0.01, 1.00]; at most 100 meters per call; placed at least 24 hours before the
trading day (market-local day, ``America/Los_Angeles``) starts; an empty curve cancels.

The pipeline adds two checks of its own against its bid inputs: no price below the
opportunity cost of the energy offered, no quantity above the kW available.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from vpp_pipeline.bidding.market import MIN_BID_LEAD, bid_deadline, trading_day_of

MIN_PRICE_USD_PER_KWH = 0.01
MAX_PRICE_USD_PER_KWH = 1.00
MAX_METERS_PER_CALL = 100

# reason codes (Leap's rules)
BID_INVALID_FIELD = "BID_INVALID_FIELD"
BID_TIME_NOT_UTC = "BID_TIME_NOT_UTC"
BID_NOT_HOURLY = "BID_NOT_HOURLY"
BID_CURVE_NOT_ASCENDING = "BID_CURVE_NOT_ASCENDING"
BID_PRICE_OUT_OF_RANGE = "BID_PRICE_OUT_OF_RANGE"
BID_QUANTITY_NOT_POSITIVE = "BID_QUANTITY_NOT_POSITIVE"
BID_TOO_MANY_METERS = "BID_TOO_MANY_METERS"
BID_TOO_LATE = "BID_TOO_LATE"
BID_DUPLICATE_TIMESLOT = "BID_DUPLICATE_TIMESLOT"
# the pipeline's own rules
BID_PRICE_BELOW_OPPORTUNITY_COST = "BID_PRICE_BELOW_OPPORTUNITY_COST"
BID_QUANTITY_ABOVE_AVAILABLE = "BID_QUANTITY_ABOVE_AVAILABLE"
# the sandbox (Leap) only
BID_UNKNOWN_METER = "BID_UNKNOWN_METER"

_EPS = 1e-9


@dataclass(frozen=True)
class BidProblem:
    """One violated rule. ``index`` is the bid's position in the request (None = request)."""

    reason_code: str
    message: str
    index: int | None = None
    meter_id: str | None = None
    start_time: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class BidValidationError(ValueError):
    """Bids broke rules; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[BidProblem]) -> None:
        self.problems = list(problems)
        codes = sorted({p.reason_code for p in self.problems})
        first = self.problems[0].message if self.problems else ""
        super().__init__(f"{len(self.problems)} bid problem(s) {codes}: {first}")

    @property
    def reason_codes(self) -> set[str]:
        return {p.reason_code for p in self.problems}


def parse_utc(value: object) -> datetime:
    """Parse a UTC ISO-8601 timestamp (``Z`` or ``+00:00``). Raises ValueError otherwise;
    a non-UTC offset raises with ``not UTC`` in the message."""
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 string, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset: not UTC")
    if parsed.utcoffset() != timedelta(0):
        raise ValueError(f"{value!r} is not UTC")
    return parsed.astimezone(UTC)


def format_utc(value: datetime) -> str:
    """``2024-07-01T07:00:00Z`` (Leap's bidding examples' style)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_bids(
    bids: object,
    *,
    now: datetime,
    max_meters: int = MAX_METERS_PER_CALL,
    lead: timedelta = MIN_BID_LEAD,
) -> list[BidProblem]:
    """Every Leap rule ``bids`` (the request's ``bids`` list) breaks; empty when valid."""
    if not isinstance(bids, list) or not bids:
        return [BidProblem(BID_INVALID_FIELD, "'bids' must be a non-empty list")]
    problems: list[BidProblem] = []
    meters = {b.get("meter_id") for b in bids if isinstance(b, dict)}
    if len(meters) > max_meters:
        problems.append(
            BidProblem(
                BID_TOO_MANY_METERS,
                f"{len(meters)} meters in one call; at most {max_meters} are allowed",
            )
        )
    seen: dict[tuple, int] = {}
    for index, bid in enumerate(bids):
        problems.extend(_validate_one(index, bid, now, lead, seen))
    return problems


def _validate_one(index, bid, now, lead, seen) -> list[BidProblem]:
    if not isinstance(bid, dict):
        return [BidProblem(BID_INVALID_FIELD, f"bids[{index}] is not an object", index)]
    meter_id, start_raw = bid.get("meter_id"), bid.get("start_time")

    def problem(code: str, message: str) -> BidProblem:
        return BidProblem(code, f"bids[{index}]: {message}", index, meter_id, start_raw)

    out: list[BidProblem] = []
    if not isinstance(meter_id, str) or not meter_id:
        out.append(problem(BID_INVALID_FIELD, "meter_id is required"))
    start = end = None
    for name in ("start_time", "end_time"):
        try:
            value = parse_utc(bid.get(name))
        except (ValueError, TypeError) as exc:
            code = BID_TIME_NOT_UTC if "not UTC" in str(exc) else BID_INVALID_FIELD
            out.append(problem(code, f"{name}: {exc}"))
            continue
        if name == "start_time":
            start = value
        else:
            end = value
    if start is not None and end is not None:
        on_hour = all(t.minute == t.second == t.microsecond == 0 for t in (start, end))
        if not on_hour or end - start != timedelta(hours=1):
            out.append(
                problem(
                    BID_NOT_HOURLY,
                    f"timeslot [{start_raw}, {bid.get('end_time')}) is not one whole UTC hour",
                )
            )
        day = trading_day_of(start)
        deadline = bid_deadline(day, lead)
        if now > deadline:
            out.append(
                problem(
                    BID_TOO_LATE,
                    f"bids for trading day {day} must be placed by {format_utc(deadline)} "
                    f"(24 h before it starts); now is {format_utc(now)}",
                )
            )
        key = (meter_id, start)
        if key in seen:
            out.append(problem(BID_DUPLICATE_TIMESLOT, f"same meter and hour as bids[{seen[key]}]"))
        else:
            seen[key] = index
    curve = bid.get("curve")
    if not isinstance(curve, list):
        out.append(problem(BID_INVALID_FIELD, "curve must be a list (empty to cancel)"))
        return out
    previous = None
    for i, point in enumerate(curve):
        if not isinstance(point, dict):
            out.append(problem(BID_INVALID_FIELD, f"curve[{i}] is not an object"))
            continue
        quantity, price = point.get("quantity_in_kw"), point.get("price")
        if not _is_number(quantity) or not _is_number(price):
            out.append(
                problem(BID_INVALID_FIELD, f"curve[{i}] needs numeric quantity_in_kw and price")
            )
            continue
        if quantity <= 0:
            out.append(
                problem(BID_QUANTITY_NOT_POSITIVE, f"curve[{i}].quantity_in_kw {quantity} <= 0")
            )
        if not MIN_PRICE_USD_PER_KWH - _EPS <= price <= MAX_PRICE_USD_PER_KWH + _EPS:
            out.append(
                problem(
                    BID_PRICE_OUT_OF_RANGE,
                    f"curve[{i}].price {price} $/kWh is outside "
                    f"[{MIN_PRICE_USD_PER_KWH}, {MAX_PRICE_USD_PER_KWH}]",
                )
            )
        if previous is not None and (quantity <= previous[0] or price <= previous[1]):
            out.append(
                problem(
                    BID_CURVE_NOT_ASCENDING,
                    f"curve[{i}] ({quantity} kW at {price}) does not rise above curve[{i - 1}] "
                    f"({previous[0]} kW at {previous[1]}): quantity and price must both increase",
                )
            )
        previous = (quantity, price)
    return out


def check_against_inputs(
    bids: Sequence[Mapping], inputs: Mapping[tuple[str, str], Mapping]
) -> list[BidProblem]:
    """The pipeline's own rules. ``inputs`` maps ``(meter_id, start_time)`` to a row with
    ``available_kw`` and ``opportunity_cost_usd_per_kwh``."""
    out = []
    for index, bid in enumerate(bids):
        row = inputs.get((bid["meter_id"], bid["start_time"]))
        if row is None or not bid["curve"]:
            continue
        top = bid["curve"][-1]["quantity_in_kw"]
        if top > row["available_kw"] + 1e-6:
            out.append(
                BidProblem(
                    BID_QUANTITY_ABOVE_AVAILABLE,
                    f"bids[{index}]: {top} kW offered but only {row['available_kw']:.1f} kW available",
                    index,
                    bid["meter_id"],
                    bid["start_time"],
                )
            )
        low = min(p["price"] for p in bid["curve"])
        if low < row["opportunity_cost_usd_per_kwh"] - 1e-9:
            out.append(
                BidProblem(
                    BID_PRICE_BELOW_OPPORTUNITY_COST,
                    f"bids[{index}]: price {low} $/kWh is below the opportunity cost "
                    f"{row['opportunity_cost_usd_per_kwh']:.4f} $/kWh",
                    index,
                    bid["meter_id"],
                    bid["start_time"],
                )
            )
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
