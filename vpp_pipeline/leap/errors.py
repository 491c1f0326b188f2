"""Errors raised by the Leap client, carrying Leap's error envelope.

Leap's services answer errors in different envelopes (digest section 2):

* Dispatch v2: ``{"code": "BAD_REQUEST", "message": "...", "error_code": "DISPATCH_INVALID_INPUT"}``
* Meters / Enrollments / Nominations v2: ``{"title": "...", "status": 400, "details": {...}}``
* Revenue / Analytics / Interval data: ``{"title", "status", "details": [{"message", "description"}]}``
* Webhooks v1.1: ``{"error": "...", "message": "..."}``

and some 500s are a bare string. :func:`parse_error_envelope` reads all of them into one
:class:`LeapErrorEnvelope` so that an error message always names what Leap said.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LeapErrorEnvelope:
    """Leap's error body, normalised. ``style`` names which envelope it came in."""

    style: str  # "dispatch" | "problem" | "problem-list" | "webhooks" | "text" | "empty"
    code: str | None = None  # dispatch `code`, problem `title`, webhooks `error`
    message: str | None = None
    error_code: str | None = None  # dispatch `error_code`
    details: Any = None
    raw: str = ""

    def summary(self) -> str:
        parts: list[str] = []
        if self.code:
            parts.append(self.code)
        if self.message and self.message != self.code:
            parts.append(self.message)
        if self.error_code:
            parts.append(f"error_code={self.error_code}")
        if self.details not in (None, {}, []):
            parts.append(f"details={json.dumps(self.details, default=str)[:300]}")
        if not parts and self.raw:
            parts.append(self.raw[:300])
        return "; ".join(parts) if parts else "(empty body)"


def parse_error_envelope(body: bytes | str) -> LeapErrorEnvelope:
    """Read any of Leap's error envelopes; never raises."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if not text.strip():
        return LeapErrorEnvelope(style="empty")
    try:
        data = json.loads(text)
    except ValueError:
        return LeapErrorEnvelope(style="text", message=text.strip()[:500], raw=text)
    if isinstance(data, str):
        return LeapErrorEnvelope(style="text", message=data, raw=text)
    if not isinstance(data, dict):
        return LeapErrorEnvelope(style="text", message=text[:500], raw=text)
    if "error_code" in data or ("code" in data and "message" in data and "title" not in data):
        return LeapErrorEnvelope(
            style="dispatch",
            code=_str(data.get("code")),
            message=_str(data.get("message")),
            error_code=_str(data.get("error_code")),
            raw=text,
        )
    if "title" in data:
        details = data.get("details")
        if isinstance(details, list):
            messages = [
                " - ".join(str(d[k]) for k in ("message", "description") if d.get(k))
                for d in details
                if isinstance(d, dict)
            ]
            return LeapErrorEnvelope(
                style="problem-list",
                code=_str(data.get("title")),
                message="; ".join(m for m in messages if m) or None,
                details=details,
                raw=text,
            )
        message = None
        if isinstance(details, dict) and isinstance(details.get("error"), str):
            message = details["error"]
        return LeapErrorEnvelope(
            style="problem",
            code=_str(data.get("title")),
            message=message,
            details=details,
            raw=text,
        )
    if "error" in data:
        return LeapErrorEnvelope(
            style="webhooks",
            code=_str(data.get("error")),
            message=_str(data.get("message")),
            raw=text,
        )
    return LeapErrorEnvelope(style="text", message=text[:500], raw=text)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


class LeapError(Exception):
    """Base class of every error the Leap client raises."""


#: What to fix, named in the errors (the variables are read by ``vpp_pipeline.settings``).
UNREACHABLE_HINT = (
    "check LEAP_API_BASE_URL (unset = the local sandbox, which must be running: `vpp sandbox`)"
)
AUTH_HINT = "check LEAP_API_KEY (the API key for the Leap environment LEAP_API_BASE_URL names)"


@dataclass
class LeapApiError(LeapError):
    """Leap answered with an error status (after retries, where the status is retryable)."""

    endpoint: str
    status: int
    envelope: LeapErrorEnvelope
    attempts: int = 1
    retry_after_s: float | None = field(default=None, repr=False)

    def __str__(self) -> str:
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        hint = f" [{self.reason_code}: {AUTH_HINT}]" if self.reason_code else ""
        return f"{self.endpoint} failed with HTTP {self.status}{tries}: {self.envelope.summary()}{hint}"

    @property
    def reason_code(self) -> str | None:
        """``LEAP_AUTH_REJECTED`` for 401/403 (the key is wrong or lacks access), else None."""
        return "LEAP_AUTH_REJECTED" if self.status in (401, 403) else None


@dataclass
class LeapConnectionError(LeapError):
    """No HTTP answer at all (connection refused, timeout, broken connection), after retries."""

    endpoint: str
    reason: str
    attempts: int = 1
    base_url: str = ""
    reason_code: str = "LEAP_UNREACHABLE"

    def __str__(self) -> str:
        where = f" from {self.base_url}" if self.base_url else ""
        return (
            f"{self.endpoint} got no response after {self.attempts} attempts{where}: "
            f"{self.reason} [{self.reason_code}: {UNREACHABLE_HINT}]"
        )


@dataclass
class LeapResponseError(LeapError):
    """Leap answered 2xx but the body is not what its published schema promises."""

    endpoint: str
    problem: str
    body_excerpt: str = ""

    def __str__(self) -> str:
        excerpt = f" (body starts: {self.body_excerpt[:200]!r})" if self.body_excerpt else ""
        return f"{self.endpoint} returned a malformed response: {self.problem}{excerpt}"
