"""Leap's error envelopes, per endpoint family.

- ``METERS`` family (meters v2, enrollments v2, nominations): ``{"title", "status", "details": {...}}``;
  its 500 is the bare string ``An error happened whilst processing your request`` (as Leap's spec shows; served
  unquoted with ``Content-Type: application/json``, so a client must not assume a 5xx body parses).
- ``DISPATCH`` family (dispatch v2): ``{"code", "message", "error_code"}``.
- ``ANALYTICS`` family (analytics, interval data): ``{"title", "status", "details": [{"message", "description"}]}``.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

METERS = "meters"
DISPATCH = "dispatch"
ANALYTICS = "analytics"

METERS_500_BODY = "An error happened whilst processing your request"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "You do not have the necessary permissions for this operation",
    404: "Not Found",
    503: "Service Unavailable",
}
_DISPATCH_CODES = {
    400: ("BAD_REQUEST", "DISPATCH_INVALID_INPUT"),
    401: ("UNAUTHORIZED", "DISPATCH_UNAUTHORIZED"),
    403: ("FORBIDDEN", "DISPATCH_NO_ACCESS_TO_RESOURCE"),
    404: ("NOT_FOUND", "DISPATCH_NO_ACCESS_TO_RESOURCE"),
    500: ("INTERNAL_SERVER_ERROR", "DISPATCH_UNEXPECTED_ERROR"),
    503: ("SERVICE_UNAVAILABLE", "LEAP_DISPATCH_INTERNAL_ERROR_002"),
}


class ApiError(Exception):
    """An error answer. ``message`` says exactly what is wrong; ``field``/``value`` name the offending input.

    ``title``/``details`` override the meters-family envelope (e.g. Leap's ``"Meter id is not a UUID"`` with
    ``{"meter_id": "abcdef"}``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        title: str | None = None,
        details: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.title = title
        self.details = details


def error_response(family: str, error: ApiError, headers: dict | None = None) -> Response:
    status = error.status
    if family == DISPATCH:
        code, error_code = _DISPATCH_CODES.get(
            status, ("INTERNAL_SERVER_ERROR", "DISPATCH_UNEXPECTED_ERROR")
        )
        body = {"code": code, "message": error.message, "error_code": error_code}
        return JSONResponse(body, status_code=status, headers=headers)
    if family == ANALYTICS:
        title = error.title or _TITLES.get(
            status, "Internal Server Error" if status == 500 else "Error"
        )
        description = (error.details or {}).get("description") or (
            f"Check the request field '{error.field}'" if error.field else f"HTTP {status}"
        )
        body = {
            "title": title,
            "status": status,
            "details": [{"message": error.message, "description": description}],
        }
        return JSONResponse(body, status_code=status, headers=headers)
    if status == 500:
        return Response(
            METERS_500_BODY, status_code=500, media_type="application/json", headers=headers
        )
    if error.details is not None:
        details = error.details
    elif status in (401, 403):
        details = {}
    else:
        details = {"error": error.message}
        if error.field:
            details["field"] = error.field
    title = error.title or _TITLES.get(status, "Error")
    return JSONResponse(
        {"title": title, "status": status, "details": details}, status_code=status, headers=headers
    )
