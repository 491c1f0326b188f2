"""The Starlette app: Leap-compatible endpoints plus ``/_sandbox`` admin endpoints.

Every Leap endpoint goes through ``api_endpoint``: log -> fault injection -> Bearer auth -> JSON body -> handler,
rendering errors in the endpoint family's envelope (see ``errors``). Extensions add routes with
``api_endpoint(state, family, handler)`` and ``state.extra_routes``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import analytics_routes, bid_truth, bids, prices, search, webhooks
from .errors import DISPATCH, METERS, ApiError, error_response
from .faults import FaultRule
from .state import SandboxState
from .timefmt import fmt_offset, parse_datetime

log = logging.getLogger(__name__)

Handler = Callable[[SandboxState, dict], dict]

_MALFORMED = {
    "truncated": (
        b'{"results": [{"meter_id": "3fa85f64-5717-4562-b3fc-2c963f66',
        "application/json",
    ),
    "html": (
        b"<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>",
        "text/html",
    ),
    "schema": (
        b'{"unexpected": true, "results": "not-a-list", "meters": null}',
        "application/json",
    ),
}


def _fault_response(family: str, rule: FaultRule) -> Response:
    if rule.mode == "429":
        return JSONResponse(
            {"message": "Too Many Requests"},
            status_code=429,
            headers={"Retry-After": str(rule.retry_after_seconds)},
        )
    if rule.mode == "500":
        return error_response(family, ApiError(500, "Injected fault: internal server error"))
    if rule.mode == "503":
        return error_response(
            family, ApiError(503, "Injected fault: service temporarily unavailable")
        )
    body, media_type = _MALFORMED[rule.malformed_body]
    return Response(body, status_code=200, media_type=media_type)


def _check_auth(state: SandboxState, request: Request) -> None:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(
            401, "Missing Authorization header; expected 'Authorization: Bearer <API key>'"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "Malformed Authorization header; expected 'Authorization: Bearer <API key>'"
        )
    if token.strip() != state.api_key:
        raise ApiError(403, "The API key is not valid for this environment")


def api_endpoint(state: SandboxState, family: str, handler: Handler):
    """Wrap ``handler(state, body) -> dict`` as a Leap-style POST endpoint of ``family`` (METERS/DISPATCH)."""

    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        entry = {
            "method": request.method,
            "path": request.url.path,
            "json": parsed,
            "status": None,
            "fault": None,
            "at": state.now().isoformat(),
        }
        response = await _answer(state, family, handler, request, raw, parsed, entry)
        entry["status"] = response.status_code
        state.log_request(entry)
        return response

    return endpoint


async def _answer(state, family, handler, request, raw, parsed, entry) -> Response:
    rule = state.faults.pick(request.url.path)
    if rule is not None:
        entry["fault"] = rule.mode
        if rule.mode == "slow":
            await asyncio.sleep(rule.delay_seconds)
        else:
            return _fault_response(family, rule)
    try:
        _check_auth(state, request)
        if not raw or not raw.strip():
            raise ApiError(400, "Request body is empty; send a JSON object")
        if parsed is None and raw.strip() != b"null":
            raise ApiError(400, "Request body is not valid JSON")
        if not isinstance(parsed, dict):
            raise ApiError(400, f"Request body must be a JSON object; got {type(parsed).__name__}")
        return JSONResponse(handler(state, parsed))
    except ApiError as error:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return error_response(family, error, headers)
    except Exception:
        log.exception("sandbox handler failed for %s", request.url.path)
        return error_response(family, ApiError(500, "Unexpected error"))


# --- admin endpoints ---------------------------------------------------------------------------------------


def deep_merge(target: dict, patch: dict) -> dict:
    """JSON merge patch (RFC 7396): objects merge recursively, ``null`` removes a key, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_merge(target[key], value)
        else:
            target[key] = value
    return target


def _admin_routes(state: SandboxState) -> list[Route]:
    async def health(request: Request) -> Response:
        portfolio = state.portfolio
        return JSONResponse(
            {"status": "ok", "seed": portfolio.seed, "meters": len(portfolio.meters)}
        )

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.faults.clear()
        elif request.method == "PUT":
            try:
                state.faults.configure(json.loads(await request.body()))
            except ValueError as exc:  # includes json.JSONDecodeError
                return JSONResponse(
                    {"error": f"invalid fault configuration: {exc}"}, status_code=400
                )
            except TypeError as exc:
                return JSONResponse(
                    {"error": f"invalid fault configuration: {exc}"}, status_code=400
                )
        return JSONResponse({"rules": state.faults.rules, "history": state.faults.history[-100:]})

    async def requests_log(request: Request) -> Response:
        if request.method == "DELETE":
            state.clear_requests()
        with state.lock:
            return JSONResponse({"requests": list(state.requests)})

    async def patch_meter(request: Request) -> Response:
        meter_id = request.path_params["meter_id"].lower()
        try:
            patch = json.loads(await request.body())
        except ValueError:
            return JSONResponse(
                {"error": "body must be a JSON object (a partial meter)"}, status_code=400
            )
        if not isinstance(patch, dict):
            return JSONResponse(
                {"error": "body must be a JSON object (a partial meter)"}, status_code=400
            )
        if patch.get("meter_id", meter_id) != meter_id:
            return JSONResponse({"error": "meter_id cannot be changed"}, status_code=400)
        with state.lock:
            portfolio = state.portfolio
            meter = portfolio.meters.get(meter_id)
            if meter is None:
                return JSONResponse({"error": f"meter {meter_id} not found"}, status_code=404)
            patch.pop("audit", None)
            deep_merge(meter, patch)
            # strictly after the previous value, so "updated since" filters always see the change
            previous = parse_datetime(meter["audit"]["updated_at"])
            updated = fmt_offset(max(state.now(), previous + timedelta(milliseconds=1)))
            meter["audit"]["updated_at"] = updated
            portfolio.enrollments[meter_id]["audit"]["updated_at"] = updated
            return JSONResponse(meter)

    return [
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/faults", faults, methods=["GET", "PUT", "DELETE"]),
        Route("/_sandbox/requests", requests_log, methods=["GET", "DELETE"]),
        Route("/_sandbox/meters/{meter_id}", patch_meter, methods=["PATCH"]),
    ]


def create_app(state: SandboxState) -> Starlette:
    """The sandbox ASGI app over ``state`` (see the package docstring for the endpoint list)."""
    routes = [
        Route(
            "/v2/meters/search", api_endpoint(state, METERS, search.search_meters), methods=["POST"]
        ),
        Route(
            "/v2/meters/enrollments/search",
            api_endpoint(state, METERS, search.search_enrollments),
            methods=["POST"],
        ),
        Route(
            "/v2/meters/nominations/search",
            api_endpoint(state, METERS, search.search_nominations),
            methods=["POST"],
        ),
        Route(
            "/v2/dispatch/meter/search",
            api_endpoint(state, DISPATCH, lambda s, b: search.search_dispatch(s, b, "meter")),
            methods=["POST"],
        ),
        Route(
            "/v2/dispatch/group/search",
            api_endpoint(state, DISPATCH, lambda s, b: search.search_dispatch(s, b, "group")),
            methods=["POST"],
        ),
        *prices.price_routes(state),
        *bids.bid_routes(state),
        *analytics_routes.routes(state),
        *bid_truth.truth_routes(state),
        *_admin_routes(state),
        *webhooks.webhook_routes(state),
        *state.extra_routes,
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = state
    return app
