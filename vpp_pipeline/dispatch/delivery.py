"""Delivery of site commands to site controllers (docs/site-controller.md), with retries and backoff (tenacity).

``PUT {base}/v1/sites/{meter_id}/schedules/{schedule_id}`` with the schedule JSON, or ``DELETE`` on the same
path (404 counts as done), header ``Authorization: Bearer {token}``; any 2xx is accepted. Timeouts,
connection errors, 408, 429 and 5xx are retried with exponential backoff; other 4xx are rejected at once.
Every attempt is reported to ``on_attempt`` so the caller can record it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import tenacity

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_SITE_CONTROLLER_URL = "http://127.0.0.1:8790"
#: Local default only (the sandbox site controller's token); set SITE_CONTROLLER_TOKEN in deployments.
DEFAULT_SITE_CONTROLLER_TOKEN = "site-controller-token"


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: ``outcome`` is ``ok``, ``retryable`` or ``rejected``."""

    attempt: int
    started_at: datetime
    finished_at: datetime
    http_status: int | None
    outcome: str
    error: str | None


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    attempts: int
    http_status: int | None
    error: str | None


class _Retryable(Exception):
    pass


class SiteControllerClient:
    """Sends site commands. Thread-safe (one ``httpx.Client``); close it, or use it as a context manager."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 5,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 4.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "vpp-pipeline-dispatch"},
            timeout=httpx.Timeout(timeout_s),
        )

    def __enter__(self) -> SiteControllerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def path(meter_id: str, schedule_id: str) -> str:
        return f"/v1/sites/{quote(meter_id, safe='')}/schedules/{quote(schedule_id, safe='')}"

    def send(
        self,
        command: str,
        meter_id: str,
        schedule_id: str,
        payload: dict | None,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> DeliveryResult:
        """Deliver one ``put``/``delete`` with retries; never raises for HTTP or network failures."""
        path = self.path(meter_id, schedule_id)
        counter = {"n": 0, "status": None, "error": None}

        def attempt() -> None:
            counter["n"] += 1
            started = datetime.now(UTC)
            status: int | None = None
            error: str | None = None
            try:
                if command == "put":
                    response = self._http.put(path, json=payload)
                else:
                    response = self._http.delete(path)
                status = response.status_code
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            finished = datetime.now(UTC)
            if status is not None and (
                200 <= status < 300 or (command == "delete" and status == 404)
            ):
                outcome = "ok"
            elif status is None or status in RETRYABLE_STATUSES:
                outcome = "retryable"
                error = error or f"HTTP {status}"
            else:
                outcome = "rejected"
                error = f"HTTP {status}"
            counter["status"], counter["error"] = status, error
            if on_attempt is not None:
                on_attempt(Attempt(counter["n"], started, finished, status, outcome, error))
            if outcome == "retryable":
                raise _Retryable(error)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_exponential_jitter(
                initial=self._backoff_initial_s,
                max=self._backoff_max_s,
                jitter=self._backoff_initial_s,
            ),
            retry=tenacity.retry_if_exception_type(_Retryable),
            reraise=True,
            **({"sleep": self._sleep} if self._sleep else {}),
        )
        try:
            retrying(attempt)
        except _Retryable:
            return DeliveryResult(False, counter["n"], counter["status"], counter["error"])
        delivered = counter["error"] is None
        return DeliveryResult(delivered, counter["n"], counter["status"], counter["error"])
