"""HTTP client for Leap's v2 API (meters, enrollments, nominations, dispatch search).

* Auth: ``Authorization: Bearer <key>``; base URL and key from ``LEAP_API_BASE_URL`` /
  ``LEAP_API_KEY``, defaulting to the local sandbox.
* Pagination: follows ``page_token`` / ``next_page_token`` until it is null or absent, at
  most ``max_pages`` pages per search (then :class:`LeapResponseError`: paging never ends).
* Dispatch searches are split into windows of at most 31 days (Leap rejects longer ones).
* Retries (tenacity): 429, 5xx, connection errors and timeouts, with exponential backoff
  and full jitter, honouring ``Retry-After`` when Leap sends one, up to ``max_attempts``.
  Then :class:`LeapApiError` / :class:`LeapConnectionError` name the endpoint, the status
  and Leap's error envelope. Other 4xx are not retried: they will not get better.
* A 2xx whose body is not JSON or not the published shape raises :class:`LeapResponseError`.
* One record of a page that does not match Leap's schema (a required field missing, a value out of
  Leap's bounds) does not fail the page: the good records are returned, the bad one is logged and kept
  in :attr:`LeapClient.rejected_records` (a :class:`RejectedRecord`: endpoint, page, position, id and
  the problem), so one malformed meter never makes every other meter of its page unknown.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import tenacity
from pydantic import BaseModel, ValidationError

from vpp_pipeline import settings
from vpp_pipeline.leap.errors import (
    LeapApiError,
    LeapConnectionError,
    LeapResponseError,
    parse_error_envelope,
)
from vpp_pipeline.leap.models import (
    GroupDispatch,
    Meter,
    MeterDispatch,
    MeterEnrollment,
    Nomination,
)

log = logging.getLogger(__name__)

# Endpoint paths, in one place. Leap versions each service in its path.
METERS_SEARCH = "/v2/meters/search"
ENROLLMENTS_SEARCH = "/v2/meters/enrollments/search"
NOMINATIONS_SEARCH = "/v2/meters/nominations/search"
METER_DISPATCH_SEARCH = "/v2/dispatch/meter/search"
GROUP_DISPATCH_SEARCH = "/v2/dispatch/group/search"

#: Leap rejects dispatch searches whose end is more than 31 days after their start.
MAX_DISPATCH_WINDOW = timedelta(days=31)
#: The meters/enrollments search page-size limit (MeterFilterRequest: 1-500).
MAX_METER_PAGE_SIZE = 500

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Pages one search may take before the client gives up (LeapResource.max_pages).
DEFAULT_MAX_PAGES = 1000

M = TypeVar("M", bound=BaseModel)

#: the fields that may identify a rejected record, in order of preference
_ID_FIELDS = ("meter_id", "market_group_id", "program_identifier")


@dataclass(frozen=True)
class RejectedRecord:
    """A record of a search page that did not match Leap's schema and was left out.

    ``page`` counts from 1 within one search window, ``index`` from 0 within the page; ``record_id``
    is the record's ``meter_id`` / ``market_group_id`` when it has a readable one."""

    endpoint: str
    page: int
    index: int
    record_id: str | None
    problem: str


def _record_id(item: Any) -> str | None:
    if isinstance(item, dict):
        for name in _ID_FIELDS:
            value = item.get(name)
            if isinstance(value, str):
                return ascii(value)[1:-1][:100]
    return None


def _problem_of(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']} ({exc.error_count()} problem(s))"


class _RetryableStatus(Exception):
    """Internal: a response whose status is worth another attempt."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.retry_after_s = parse_retry_after(response.headers.get("retry-after"))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _WaitRetryAfterOrBackoff(tenacity.wait.wait_base):
    """Wait what ``Retry-After`` asks (up to ``retry_after_max_s``), else exponential backoff
    with jitter (capped at ``max_s``)."""

    def __init__(self, initial_s: float, max_s: float, retry_after_max_s: float) -> None:
        self.retry_after_max_s = retry_after_max_s
        self.backoff = tenacity.wait_exponential_jitter(
            initial=initial_s, max=max_s, jitter=initial_s
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, _RetryableStatus) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, self.retry_after_max_s)
        return self.backoff(retry_state)


def page_limit_error(endpoint: str, max_pages: int) -> LeapResponseError:
    """Paging stopped at ``max_pages``: the server still sent a ``next_page_token``."""
    return LeapResponseError(
        endpoint,
        f"stopped after {max_pages} pages (max_pages): the server still sends a "
        "next_page_token, so paging would not end; if the result really is this large, "
        "raise max_pages (LeapResource.max_pages)",
    )


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableStatus | httpx.TransportError)


def dispatch_windows(
    start: datetime, end: datetime, max_window: timedelta = MAX_DISPATCH_WINDOW
) -> list[tuple[datetime, datetime]]:
    """Split ``[start, end)`` into consecutive windows no longer than ``max_window``."""
    if end <= start:
        raise ValueError(
            f"dispatch search end {end.isoformat()} is not after start {start.isoformat()}"
        )
    windows = []
    cursor = start
    while cursor < end:
        upper = min(cursor + max_window, end)
        windows.append((cursor, upper))
        cursor = upper
    return windows


def merge_recipients(records: list[M]) -> list[M]:
    """One record per meter, and per market group and member list: Leap may continue a
    recipient's timeslots on the next page or window. A group's records merge only when
    their ``meter_ids`` agree, because the members listed are the ones its timeslots are
    split across, and members change over a long read (a first run's backfill spans a year).
    Each timeslot is kept once, by event id, the later copy winning (in the later record)."""
    records_by_key: dict[Any, M] = {}
    slots: dict[str, tuple[Any, Any]] = {}  # event id -> (record key, timeslot)
    for record in records:
        meter_id = getattr(record, "meter_id", None)
        key = meter_id or (record.market_group_id, tuple(record.meter_ids))
        if key not in records_by_key:
            records_by_key[key] = record.model_copy(deep=True)
        for timeslot in record.timeslots:
            slots[_event_id(timeslot)] = (key, timeslot)
    kept: dict[Any, list[Any]] = {key: [] for key in records_by_key}
    for key, timeslot in slots.values():
        kept[key].append(timeslot)
    merged = []
    for key, target in records_by_key.items():
        had_slots = bool(target.timeslots)
        target.timeslots = kept[key]
        if target.timeslots or not had_slots:
            merged.append(target)
    return merged


def _event_id(timeslot: Any) -> str:
    return getattr(timeslot, "meter_event_id", None) or timeslot.market_group_event_id


def format_utc(value: datetime) -> str:
    """Leap's request timestamp style: ``2023-02-01T00:00:00.000Z`` (naive input = UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


class LeapClient:
    """A synchronous Leap API client. Use as a context manager, or call :meth:`close`.

    ``sleep`` is injectable so that tests of long ``Retry-After`` values need not wait.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        max_attempts: int = 5,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 300.0,
        max_pages: int = DEFAULT_MAX_PAGES,
        sleep: Callable[[float], None] = time.sleep,
        on_request: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self.max_pages = max_pages
        self.base_url = (base_url or settings.leap_api_base_url()).rstrip("/")
        self.max_attempts = max_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._retry_after_max_s = retry_after_max_s
        self._sleep = sleep
        self._on_request = on_request
        #: every record left out of a search result since this client was created
        self.rejected_records: list[RejectedRecord] = []
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key or settings.leap_api_key()}",
                "Accept": "application/json",
                "User-Agent": "vpp-pipeline",
            },
            timeout=httpx.Timeout(timeout_s),
        )

    def __enter__(self) -> LeapClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        """POST ``body`` to ``path`` with retries; return the decoded JSON of a 2xx."""
        endpoint = f"POST {path}"
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=_WaitRetryAfterOrBackoff(
                self._backoff_initial_s, self._backoff_max_s, self._retry_after_max_s
            ),
            retry=tenacity.retry_if_exception(_is_retryable),
            sleep=self._sleep,
            before_sleep=lambda rs: log.warning(
                "%s attempt %d failed (%s); retrying",
                endpoint,
                rs.attempt_number,
                rs.outcome.exception(),
            ),
            reraise=True,
        )
        attempts = 0

        def attempt() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            if self._on_request is not None:
                self._on_request(path, body)
            response = self._http.post(path, json=body)
            if response.status_code in RETRYABLE_STATUSES:
                raise _RetryableStatus(response)
            return response

        try:
            response = retrying(attempt)
        except _RetryableStatus as exc:
            raise LeapApiError(
                endpoint=endpoint,
                status=exc.response.status_code,
                envelope=parse_error_envelope(exc.response.content),
                attempts=attempts,
                retry_after_s=exc.retry_after_s,
            ) from None
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise LeapConnectionError(
                endpoint=endpoint, reason=reason, attempts=attempts, base_url=self.base_url
            ) from exc

        if response.status_code >= 400 or response.status_code < 200:
            raise LeapApiError(
                endpoint=endpoint,
                status=response.status_code,
                envelope=parse_error_envelope(response.content),
                attempts=attempts,
            )
        try:
            return response.json()
        except ValueError:
            raise LeapResponseError(endpoint, "body is not JSON", response.text[:500]) from None

    def paginate(
        self, path: str, body: dict[str, Any], items_key: str, model: type[M]
    ) -> Iterator[list[M]]:
        """Yield each page of ``items_key`` records, following ``next_page_token`` to the end.
        Records that do not match ``model`` are left out and reported (:attr:`rejected_records`)."""
        endpoint = f"POST {path}"
        request = {k: v for k, v in body.items() if v is not None}
        seen_tokens: set[str] = set()
        page = 0
        while True:
            page += 1
            data = self.post_json(path, request)
            if not isinstance(data, dict):
                raise LeapResponseError(
                    endpoint, f"expected a JSON object, got {type(data).__name__}"
                )
            items = data.get(items_key)
            if not isinstance(items, list):
                raise LeapResponseError(
                    endpoint,
                    f"field {items_key!r} is missing or not a list (keys: {sorted(data)[:10]})",
                )
            yield self._valid_records(endpoint, page, items, model)
            token = data.get("next_page_token")
            if not token:
                return
            if token in seen_tokens:
                raise LeapResponseError(
                    endpoint, f"next_page_token {token!r} repeats: pagination loop"
                )
            seen_tokens.add(token)
            if len(seen_tokens) >= self.max_pages:
                raise page_limit_error(endpoint, self.max_pages)
            request = {**request, "page_token": token}

    def _valid_records(self, endpoint: str, page: int, items: list, model: type[M]) -> list[M]:
        good: list[M] = []
        for index, item in enumerate(items):
            try:
                good.append(model.model_validate(item))
            except ValidationError as exc:
                rejected = RejectedRecord(endpoint, page, index, _record_id(item), _problem_of(exc))
                self.rejected_records.append(rejected)
                log.warning(
                    "%s page %d record %d (%s) left out: it does not match Leap's schema: %s",
                    endpoint,
                    page,
                    index,
                    rejected.record_id or "no id",
                    rejected.problem,
                )
        return good

    # -- endpoints ----------------------------------------------------------------------

    def search_meters(self, *, page_size: int = MAX_METER_PAGE_SIZE, **filters: Any) -> list[Meter]:
        """All meter details matching ``filters`` (MeterFilterRequest field names)."""
        return self._collect(METERS_SEARCH, {"page_size": page_size, **filters}, "meters", Meter)

    def search_enrollments(
        self, *, page_size: int = MAX_METER_PAGE_SIZE, **filters: Any
    ) -> list[MeterEnrollment]:
        """All meter enrollment records matching ``filters`` (MeterFilterRequest field names)."""
        return self._collect(
            ENROLLMENTS_SEARCH, {"page_size": page_size, **filters}, "meters", MeterEnrollment
        )

    def search_nominations(
        self,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        **filters: Any,
    ) -> list[Nomination]:
        """Nominations overlapping ``[start_time, end_time)`` (Leap's default: current and future)."""
        body = {
            "start_time": format_utc(start_time) if start_time else None,
            "end_time": format_utc(end_time) if end_time else None,
            **filters,
        }
        return self._collect(NOMINATIONS_SEARCH, body, "nominations", Nomination)

    def search_meter_dispatches(
        self, start: datetime, end: datetime, **filters: Any
    ) -> list[MeterDispatch]:
        """Meter-level dispatch timeslots starting in ``[start, end)``, any length of range."""
        return self._search_dispatches(METER_DISPATCH_SEARCH, start, end, filters, MeterDispatch)

    def search_group_dispatches(
        self, start: datetime, end: datetime, **filters: Any
    ) -> list[GroupDispatch]:
        """Group-level dispatch timeslots starting in ``[start, end)``, any length of range."""
        return self._search_dispatches(GROUP_DISPATCH_SEARCH, start, end, filters, GroupDispatch)

    def _search_dispatches(
        self,
        path: str,
        start: datetime,
        end: datetime,
        filters: dict[str, Any],
        model: type[M],
    ) -> list[M]:
        records: list[M] = []
        for window_start, window_end in dispatch_windows(start, end):
            body = {
                "start_date": format_utc(window_start),
                "end_date": format_utc(window_end),
                **filters,
            }
            records.extend(self._collect(path, body, "results", model))
        return merge_recipients(records)

    def _collect(self, path: str, body: dict[str, Any], key: str, model: type[M]) -> list[M]:
        return [record for page in self.paginate(path, body, key, model) for record in page]
