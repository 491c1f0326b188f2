"""The sandbox's bid book: Leap's bid rules enforced over HTTP, bids stored per meter/hour.

``POST /v2/bidding/bids`` (path: ``vpp_pipeline.bidding.endpoints``) with ``{"bids":
[{"meter_id", "start_time", "end_time", "curve": [{"quantity_in_kw", "price"}]}]}``.
Every rule of ``vpp_pipeline.bidding.validation`` is checked, plus unknown meters
(``BID_UNKNOWN_METER``); a request with any problem changes nothing and gets 400 in the
meters-family envelope with the reason codes::

    {"title": "Bad Request", "status": 400, "details": {"error": "<first problem>",
     "reason_codes": [...], "errors": [{"reason_code", "message", "index", "meter_id",
     "start_time"}]}}

Otherwise each bid is stored (a new curve for the same meter/hour replaces the old one; an
empty curve cancels it) and the answer is ``{"bids": [{"meter_id", "start_time",
"end_time", "status": "PLACED" | "REPLACED" | "CANCELLED" | "NOTHING_TO_CANCEL"}]}``.
The 24-hour rule uses the sandbox clock (``SandboxState.now``).

Admin (no auth): ``GET /_sandbox/bids?meter_id=&start_time=&end_time=`` -> the standing
bids ``{"bids": [{"meter_id", "start_time", "end_time", "curve", "placed_at", "revision"}],
"cancelled": n}``; ``DELETE /_sandbox/bids`` clears the book.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vpp_pipeline.bidding.endpoints import BIDS_PATH
from vpp_pipeline.bidding.validation import (
    BID_UNKNOWN_METER,
    BidProblem,
    format_utc,
    parse_utc,
    validate_bids,
)

from .errors import METERS, ApiError
from .state import SandboxState


@dataclass
class BidBook:
    """Standing bids keyed by (meter_id, UTC hour start)."""

    bids: dict[tuple[str, datetime], dict] = field(default_factory=dict)
    cancelled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def standing(
        self,
        meter_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict]:
        with self.lock:
            rows = [
                bid
                for (meter, hour), bid in sorted(self.bids.items())
                if (meter_id is None or meter == meter_id)
                and (start is None or hour >= start)
                and (end is None or hour < end)
            ]
        return [dict(row) for row in rows]

    def clear(self) -> None:
        with self.lock:
            self.bids.clear()
            self.cancelled = 0


_BOOKS: weakref.WeakKeyDictionary[SandboxState, BidBook] = weakref.WeakKeyDictionary()


def bid_book(state: SandboxState) -> BidBook:
    """The bid book of a sandbox (created on first use)."""
    book = _BOOKS.get(state)
    if book is None:
        book = _BOOKS.setdefault(state, BidBook())
    return book


def place_bids(state: SandboxState, body: dict) -> dict:
    bids = body.get("bids")
    now = state.now()
    problems = validate_bids(bids, now=now)
    if isinstance(bids, list):
        for index, bid in enumerate(bids):
            meter_id = bid.get("meter_id") if isinstance(bid, dict) else None
            if isinstance(meter_id, str) and meter_id.lower() not in state.portfolio.meters:
                problems.append(
                    BidProblem(
                        BID_UNKNOWN_METER,
                        f"bids[{index}]: meter {meter_id} is not in this account",
                        index,
                        meter_id,
                        bid.get("start_time"),
                    )
                )
    if problems:
        raise ApiError(
            400,
            problems[0].message,
            details={
                "error": problems[0].message,
                "reason_codes": sorted({p.reason_code for p in problems}),
                "errors": [p.as_dict() for p in problems],
            },
        )
    book = bid_book(state)
    answers = []
    with book.lock:
        for bid in bids:
            start, end = parse_utc(bid["start_time"]), parse_utc(bid["end_time"])
            key = (bid["meter_id"].lower(), start)
            previous = book.bids.get(key)
            if not bid["curve"]:
                status = "CANCELLED" if previous else "NOTHING_TO_CANCEL"
                if previous:
                    del book.bids[key]
                    book.cancelled += 1
            else:
                status = "REPLACED" if previous else "PLACED"
                book.bids[key] = {
                    "meter_id": key[0],
                    "start_time": format_utc(start),
                    "end_time": format_utc(end),
                    "curve": [
                        {"quantity_in_kw": p["quantity_in_kw"], "price": p["price"]}
                        for p in bid["curve"]
                    ],
                    "placed_at": now.isoformat(),
                    "revision": (previous["revision"] + 1) if previous else 1,
                }
            answers.append(
                {
                    "meter_id": key[0],
                    "start_time": format_utc(start),
                    "end_time": format_utc(end),
                    "status": status,
                }
            )
    return {"bids": answers}


def bid_routes(state: SandboxState) -> list[Route]:
    from .app import api_endpoint  # here, not at the top: app.py imports this module

    async def admin(request: Request) -> Response:
        book = bid_book(state)
        if request.method == "DELETE":
            book.clear()
        params = request.query_params
        try:
            start = parse_utc(params["start_time"]) if "start_time" in params else None
            end = parse_utc(params["end_time"]) if "end_time" in params else None
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        rows = book.standing(params.get("meter_id"), start, end)
        return JSONResponse({"bids": rows, "cancelled": book.cancelled})

    return [
        Route(BIDS_PATH, api_endpoint(state, METERS, place_bids), methods=["POST"]),
        Route("/_sandbox/bids", admin, methods=["GET", "DELETE"]),
    ]
