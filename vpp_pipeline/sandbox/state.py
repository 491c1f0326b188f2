"""Mutable sandbox state shared by the HTTP app and the Python API (tests, CLI, later extensions)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .faults import FaultInjector
from .portfolio import Portfolio

DEFAULT_API_KEY = "sandbox-key"
_TOKEN_NAMESPACE = uuid.UUID("6f1c2a4e-2f0b-4c59-9d3e-5a7b1c0d9e21")


@dataclass(frozen=True)
class PageCursor:
    """Where the next page of a search starts: the endpoint, the (normalized) query, the offset."""

    kind: str
    query: dict
    offset: int


class PageTokens:
    """Opaque page tokens (UUID strings) mapped to cursors. Tokens are deterministic for (seed, query, offset)
    and stay valid for the life of the server."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._cursors: dict[str, PageCursor] = {}

    def issue(self, kind: str, query: dict, offset: int) -> str:
        canonical = json.dumps(
            {"k": kind, "q": query, "o": offset, "s": self._seed}, sort_keys=True, default=str
        )
        token = str(uuid.uuid5(_TOKEN_NAMESPACE, canonical))
        with self._lock:
            self._cursors[token] = PageCursor(kind, query, offset)
        return token

    def resolve(self, kind: str, token: str) -> PageCursor | None:
        with self._lock:
            cursor = self._cursors.get(token.lower())
        if cursor is None or cursor.kind != kind:
            return None
        return cursor


class SandboxState:
    """Everything the sandbox app serves and records.

    - ``portfolio``: the synthetic portfolio (mutated by ``PATCH /_sandbox/meters/{id}``);
    - ``api_key``: the only Bearer token accepted (401 when missing/malformed, 403 when different);
    - ``faults``: the ``FaultInjector``;
    - ``requests``: the request log, one dict per API request (``/_sandbox`` admin calls are not logged):
      ``{"method", "path", "json", "status", "fault", "at"}`` (``json`` is the parsed body or None);
    - ``dispatch_page_limit``: max timeslots per dispatch search page (Leap: 500);
    - ``extra_routes``: Starlette routes that ``create_app`` appends (for extensions);
    - ``lock``: an ``RLock`` guarding portfolio mutations.
    """

    def __init__(
        self,
        portfolio: Portfolio,
        api_key: str = DEFAULT_API_KEY,
        *,
        faults: FaultInjector | None = None,
        dispatch_page_limit: int = 500,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.portfolio = portfolio
        self.api_key = api_key
        self.faults = faults or FaultInjector()
        self.requests: list[dict] = []
        self.dispatch_page_limit = dispatch_page_limit
        self.pages = PageTokens(portfolio.seed)
        self.extra_routes: list = []
        self.lock = threading.RLock()
        self._clock = clock or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        """Current time (UTC); injectable for tests."""
        return self._clock()

    def log_request(self, entry: dict) -> None:
        with self.lock:
            self.requests.append(entry)

    def clear_requests(self) -> None:
        with self.lock:
            self.requests.clear()
