"""``vpp_pipeline.sandbox``: a Leap-compatible local HTTP server over a deterministic synthetic C&I portfolio.

Start it with ``SandboxServer(seed=7, api_key="sandbox-key", port=0)`` (a context manager; ``.base_url``) or,
blocking, ``serve_forever(port, seed, api_key)``. The portfolio (``build_portfolio``) is pure in its seed,
meter count, history length and anchor date.

Leap endpoints (all ``POST`` with a JSON object body and ``Authorization: Bearer <api_key>``; missing or
malformed header -> 401, another key -> 403):

- ``/v2/meters/search`` -> ``{"meters": [MeterDetailsResponse], "next_page_token"}`` (MeterFilterRequest:
  page_size 1-500 default 500, page_token, meter_ids (<=1000 UUIDs), partner_references, transmission_region,
  customer_classification, global_enrollment_statuses, meter_types, load_types, customer_groups, tags,
  connection_reference_ids, action_type, partner_action_required, exclude_archived, last_modified_date_time
  (``audit.updated_at >=``), created_after_date_time, created_before_date_time);
- ``/v2/meters/enrollments/search`` -> ``{"meters": [MeterEnrollmentResponse], "next_page_token"}`` (same
  filters; the dates use the enrollment record's own ``audit``);
- ``/v2/meters/nominations/search`` -> ``{"nominations": [...], "next_page_token"}`` (meter_ids, start_time
  (default now), end_time (exclusive; windows overlapping [start, end) match), program_identifier,
  updated_since, page_token, page_size 1-500 default 500 as in Leap's schema);
- ``/v2/dispatch/meter/search`` and ``/v2/dispatch/group/search`` -> ``{"next_page_token": uuid|null,
  "results": [...]}`` (start_date and end_date required, end exclusive, at most 31 days; a timeslot matches
  when its start_time is in [start_date, end_date); exclude_real_time_events default true drops ``5m``
  events; exclude_voluntary_events default false; meter_ids / meter_event_ids or market_group_ids /
  market_group_event_ids; page_token a UUID). The page limit counts **timeslots** (``SandboxState.
  dispatch_page_limit``, default 500 like Leap); one recipient can continue on the next page, so merge by
  event id. Timeslots carry their latest revision.

Page tokens are opaque UUID strings bound to the query they continue; an unknown token -> 400. Errors use
Leap's envelopes: ``{"title", "status", "details"}`` for meters/enrollments/nominations (500: the bare text
``An error happened whilst processing your request``), ``{"code", "message", "error_code"}`` for dispatch.

Bidding (``bids``, ``prices``): ``POST /v2/bidding/bids`` enforces Leap's bid rules (reason codes in a 400) and
stores curves per meter/hour (``GET|DELETE /_sandbox/bids``); ``POST /v1.1/markets/caiso/prices/day-ahead/search``
serves synthetic day-ahead LMPs (labelled ``synthetic``).

Analytics (``intervals``, ``analytics_routes``; paths and limits from ``vpp_pipeline.leap.analytics``; errors
``{"title", "status", "details": [{"message", "description"}]}``): ``POST /v1.1/analytics/intervals/meter/search``
(meter_ids 1-1000, date_range_start/end <= 31 days, interval INTERVAL_15MIN|INTERVAL_1HR, page_size <= 100000,
<= 1,000,000 data points) -> ``{"intervals": [{meter_id, start_date_time_utc, end_date_time_utc, energy_net_wh,
energy_consumed_wh, energy_generated_wh, final}], "next_page_token"}`` and ``POST /v1.1/analytics/performance/
meter/search`` -> ``{"performance": [{meter_id, meter_event_id, programs, start/end_date_time_utc, baseline_wh,
usage_wh, performance_wh, intervals: [...]}], "next_page_token"}`` (the sandbox's own 5-weekday baseline).
Synthetic 15-minute data with ground truth: ``generate_intervals``, ``event_truth``, ``response_profile``,
``write_interval_csvs`` (Leap's interval upload CSV).

Sandbox-only admin endpoints (no auth; never faulted; not in the request log):

- ``GET /_sandbox/health`` -> ``{"status": "ok", "seed": 7, "meters": 72}``;
- ``GET|PUT|DELETE /_sandbox/faults``: read, replace (a rule object, a list, or ``{"rules": [...]}``; see
  ``faults``) or clear fault rules, e.g. ``{"mode": "429", "count": 2, "retry_after_seconds": 1}`` or
  ``{"mode": "slow", "probability": 0.2, "delay_seconds": 3, "seed": 1, "path_prefix": "/v2/dispatch"}``;
- ``PATCH /_sandbox/meters/{meter_id}``: JSON merge patch of a meter (nested objects merge, null deletes);
  sets ``audit.updated_at`` (meter and enrollment) to now, strictly later than before; returns the meter;
- ``GET|DELETE /_sandbox/requests``: the request log ``{"requests": [{method, path, json, status, fault,
  at}]}`` (DELETE clears it);
- ``POST /_sandbox/ground_truth/intervals`` (``{meter_ids, start, end}`` -> ``{"intervals": [{meter_id,
  interval_start, kwh, counterfactual_kwh, event_id}]}``), ``GET /_sandbox/ground_truth/events[?meter_id=]``
  (``event_truth`` rows), ``GET /_sandbox/ground_truth/response_profile`` (category per meter) and
  ``POST /_sandbox/ground_truth/site_load`` (``{meter_ids, start, end}`` -> hourly site load without the
  battery, for the bid backtest; ``bid_truth``).

Timestamps: meter/enrollment ``audit`` and delivery periods look like ``2000-01-23T04:56:07.000+00:00``;
dispatch times and enrollment deadlines like ``2023-02-21T00:00:00.000Z``; participation preferences and
nominations like ``2024-11-01T00:00:00Z``.
"""

from .app import api_endpoint, create_app
from .bids import BidBook, bid_book
from .catalog import TARIFF_CODES
from .faults import FaultInjector, FaultRule
from .intervals import (
    event_truth,
    generate_intervals,
    response_profile,
    write_interval_csvs,
    write_interval_csvs_for_bench,
)
from .portfolio import DispatchEvent, DispatchRevision, Portfolio, SiteProfile, build_portfolio
from .server import SandboxServer, serve_forever
from .state import DEFAULT_API_KEY, SandboxState

__all__ = [
    "DEFAULT_API_KEY",
    "TARIFF_CODES",
    "BidBook",
    "DispatchEvent",
    "DispatchRevision",
    "FaultInjector",
    "FaultRule",
    "Portfolio",
    "SandboxServer",
    "SandboxState",
    "SiteProfile",
    "api_endpoint",
    "bid_book",
    "build_portfolio",
    "create_app",
    "event_truth",
    "generate_intervals",
    "response_profile",
    "serve_forever",
    "write_interval_csvs",
    "write_interval_csvs_for_bench",
]
