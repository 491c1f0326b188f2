"""Bidding endpoint paths, in one place (the client and the sandbox both import them).

Leap does not publish its bid path or schema (digest section 11/15), so these follow Leap's
style: versioned service prefix, JSON body, ``snake_case`` fields, UTC timestamps.

- ``POST /v2/bidding/bids``: place, modify (same meter/hour again) or cancel (empty ``curve``)
  bids: ``{"bids": [{"meter_id", "start_time", "end_time", "curve": [{"quantity_in_kw",
  "price"}]}]}``, at most 100 meters per call.
- ``POST /v1.1/markets/caiso/prices/day-ahead/search``: day-ahead LMPs by load zone. Only the
  sandbox serves it (synthetic prices, labelled so); with real Leap the pipeline reads CAISO
  OASIS CSV drops instead.
"""

from __future__ import annotations

BIDS_PATH = "/v2/bidding/bids"
DAY_AHEAD_PRICES_PATH = "/v1.1/markets/caiso/prices/day-ahead/search"
