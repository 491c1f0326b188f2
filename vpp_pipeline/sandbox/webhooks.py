"""Leap's dispatch webhooks in the sandbox: registration, integration tests, retries, new events over time.

Leap endpoints (Bearer auth like every sandbox endpoint; dispatch error envelope):

- ``PUT /v2/dispatch/{meter|group}/webhook`` ``{"url", "headers": [{"name", "value"}]}`` -> 200 the webhook
  (one URL per level; PUT overwrites); ``GET`` -> the webhook or 404; ``DELETE`` -> 204 (404 when none);
- ``POST /v2/dispatch/{meter|group}/webhook/integration_test`` ``{"meter_dispatches": [...]}`` /
  ``{"group_dispatches": [...]}`` -> delivers the notification (``integration_test_notification: true``) to
  the registered URL with the registered headers (names lower-cased, as Leap sends them) and returns Leap's
  ``WebhookIntegrationTestResponse`` ``{sent_time, received_time, http_status, headers, body, error_message}``.

Deliveries time out after ``timeout_s`` (Leap: 10 s); a failed delivery is retried every
``retry_interval_s`` (Leap: 60 s) up to ``max_retries`` times (Leap: 50).

Sandbox-only admin endpoints (no auth):

- ``POST /_sandbox/dispatch/publish``: ``{"level", "recipient_id", "meter_ids"?, "timeslot", "push"?}``
  publishes a new event, or a new revision when the timeslot's event id exists (``timeslot`` then only needs
  the id and the changed fields); it joins the portfolio (so the search API serves it) and, unless
  ``push: false`` (a lost webhook), is pushed to the registered webhook. Returns the event and the delivery.
- ``PUT /_sandbox/dispatch/ticker`` ``{"interval_s": 30, "seed": 1}`` publishes a new meter-level event
  every interval (``DELETE`` stops it);
- ``GET|PUT /_sandbox/dispatch/webhook_settings`` (``timeout_s``, ``retry_interval_s``, ``max_retries``);
- ``GET|DELETE /_sandbox/dispatch/deliveries``: every delivery attempt.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import DISPATCH, ApiError, error_response
from .portfolio import DispatchEvent, DispatchRevision
from .state import SandboxState
from .timefmt import fmt_z_millis, parse_datetime

log = logging.getLogger(__name__)

LEVELS = ("meter", "group")


@dataclass
class WebhookSettings:
    timeout_s: float = 10.0
    retry_interval_s: float = 60.0
    max_retries: int = 50


@dataclass
class DispatchWebhooks:
    """Registered webhooks per level, delivery settings and the delivery log."""

    webhooks: dict[str, dict] = field(default_factory=dict)
    settings: WebhookSettings = field(default_factory=WebhookSettings)
    deliveries: list[dict] = field(default_factory=list)
    tasks: set = field(default_factory=set)
    ticker: asyncio.Task | None = None


def dispatch_webhooks(state: SandboxState) -> DispatchWebhooks:
    """The webhook registry of a sandbox (created on first use)."""
    with state.lock:
        registry = getattr(state, "dispatch_webhooks", None)
        if registry is None:
            registry = DispatchWebhooks()
            state.dispatch_webhooks = registry
        return registry


def _now_z() -> str:
    return fmt_z_millis(datetime.now(UTC))


async def deliver(
    state: SandboxState, level: str, notification: dict, *, attempt: int = 1, kind: str = "event"
) -> dict:
    """POST ``notification`` to the level's webhook once; log it; schedule a retry when it fails."""
    registry = dispatch_webhooks(state)
    hook = registry.webhooks.get(level)
    if hook is None:
        return {
            "sent_time": _now_z(),
            "http_status": None,
            "error_message": "no webhook registered",
        }
    headers = {h["name"].lower(): h["value"] for h in hook.get("headers", [])}
    headers["content-type"] = "application/json"
    body = json.dumps(notification).encode()
    result: dict = {"sent_time": _now_z()}
    try:
        async with httpx.AsyncClient(timeout=registry.settings.timeout_s) as client:
            response = await client.post(hook["url"], content=body, headers=headers)
        result.update(
            received_time=_now_z(),
            http_status=response.status_code,
            headers={k: [v] for k, v in response.headers.items()},
            body=response.text,
        )
    except httpx.HTTPError as exc:
        result.update(http_status=None, error_message=f"{type(exc).__name__}: {exc}")
    ok = result.get("http_status") is not None and 200 <= result["http_status"] < 300
    registry.deliveries.append(
        {
            "level": level,
            "kind": kind,
            "attempt": attempt,
            "url": hook["url"],
            "http_status": result.get("http_status"),
            "error_message": result.get("error_message"),
            "sent_time": result["sent_time"],
            "ok": ok,
        }
    )
    if not ok and attempt <= registry.settings.max_retries:
        task = asyncio.get_running_loop().create_task(
            _retry_later(state, level, notification, attempt + 1, kind)
        )
        registry.tasks.add(task)
        task.add_done_callback(registry.tasks.discard)
    return result


async def _retry_later(state, level, notification, attempt, kind) -> None:
    await asyncio.sleep(dispatch_webhooks(state).settings.retry_interval_s)
    await deliver(state, level, notification, attempt=attempt, kind=kind)


def _level(request: Request) -> str:
    level = request.path_params["level"]
    if level not in LEVELS:
        raise ApiError(404, f"Unknown dispatch level {level!r}")
    return level


async def _json_object(request: Request) -> dict:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ApiError(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return body


def _leap_endpoint(state: SandboxState, handler):
    async def endpoint(request: Request) -> Response:
        entry = {
            "method": request.method,
            "path": request.url.path,
            "json": None,
            "status": None,
            "fault": None,
            "at": state.now().isoformat(),
        }
        from .app import _check_auth  # here: app.py imports this module

        try:
            _check_auth(state, request)
            response = await handler(request)
        except ApiError as error:
            headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
            response = error_response(DISPATCH, error, headers)
        entry["status"] = response.status_code
        state.log_request(entry)
        return response

    return endpoint


def webhook_routes(state: SandboxState) -> list[Route]:
    """The routes this module adds to the sandbox app."""
    registry = dispatch_webhooks(state)

    async def webhook(request: Request) -> Response:
        level = _level(request)
        if request.method == "GET":
            hook = registry.webhooks.get(level)
            if hook is None:
                raise ApiError(404, f"No {level} dispatch webhook registered")
            return JSONResponse(hook)
        if request.method == "DELETE":
            if registry.webhooks.pop(level, None) is None:
                raise ApiError(404, f"No {level} dispatch webhook registered")
            return Response(status_code=204)
        body = await _json_object(request)
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ApiError(400, "'url' is required and must be an http(s) URL")
        headers = body.get("headers") or []
        if not isinstance(headers, list) or not all(
            isinstance(h, dict)
            and isinstance(h.get("name"), str)
            and isinstance(h.get("value"), str)
            for h in headers
        ):
            raise ApiError(400, "'headers' must be a list of {name, value} strings")
        registry.webhooks[level] = {
            "url": url,
            "headers": [{"name": h["name"], "value": h["value"]} for h in headers],
        }
        return JSONResponse(registry.webhooks[level])

    async def integration_test(request: Request) -> Response:
        level = _level(request)
        body = await _json_object(request)
        key = "meter_dispatches" if level == "meter" else "group_dispatches"
        recipients = body.get(key)
        if not isinstance(recipients, list) or not recipients:
            raise ApiError(400, f"'{key}' is required and must hold at least one item")
        if level not in registry.webhooks:
            raise ApiError(404, f"No {level} dispatch webhook registered")
        notification = {
            "integration_test_notification": True,
            "communication_test": False,
            key: recipients,
        }
        result = await deliver(state, level, notification, kind="integration_test")
        return JSONResponse(result)

    async def publish(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            event, revision = publish_event(state, body)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"invalid event: {exc}"}, status_code=400)
        delivery = None
        if body.get("push", True):
            delivery = await deliver(state, event.level, notification_for(state, event, revision))
        return JSONResponse(
            {
                "level": event.level,
                "event_id": event.event_id,
                "revision": revision.revision,
                "timeslot": revision.timeslot,
                "delivery": delivery,
            }
        )

    async def settings_route(request: Request) -> Response:
        if request.method == "PUT":
            try:
                body = json.loads(await request.body())
                for name, value in body.items():
                    if not hasattr(registry.settings, name):
                        raise ValueError(f"unknown setting {name!r}")
                    setattr(registry.settings, name, type(getattr(registry.settings, name))(value))
            except (ValueError, TypeError, AttributeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(registry.settings))

    async def deliveries(request: Request) -> Response:
        if request.method == "DELETE":
            registry.deliveries.clear()
        return JSONResponse({"deliveries": list(registry.deliveries)})

    async def ticker(request: Request) -> Response:
        if registry.ticker is not None:
            registry.ticker.cancel()
            registry.ticker = None
        if request.method == "PUT":
            try:
                body = json.loads(await request.body())
                interval = float(body["interval_s"])
                rng = random.Random(body.get("seed", 1))
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": f"invalid ticker: {exc}"}, status_code=400)
            registry.ticker = asyncio.get_running_loop().create_task(_tick(state, interval, rng))
            return JSONResponse({"interval_s": interval})
        return Response(status_code=204)

    return [
        Route("/v2/dispatch/{level}/webhook", _leap_endpoint(state, webhook), methods=["GET", "PUT", "DELETE"]),
        Route(
            "/v2/dispatch/{level}/webhook/integration_test",
            _leap_endpoint(state, integration_test),
            methods=["POST"],
        ),
        Route("/_sandbox/dispatch/publish", publish, methods=["POST"]),
        Route("/_sandbox/dispatch/webhook_settings", settings_route, methods=["GET", "PUT"]),
        Route("/_sandbox/dispatch/deliveries", deliveries, methods=["GET", "DELETE"]),
        Route("/_sandbox/dispatch/ticker", ticker, methods=["PUT", "DELETE"]),
    ]  # fmt: skip


def publish_event(state: SandboxState, body: dict) -> tuple[DispatchEvent, DispatchRevision]:
    """Add a new event, or a revision of an existing one, to the portfolio (so the search API serves it)."""
    level = body["level"]
    if level not in LEVELS:
        raise ValueError("level must be 'meter' or 'group'")
    timeslot = dict(body["timeslot"])
    id_field = "meter_event_id" if level == "meter" else "market_group_event_id"
    now = state.now()
    with state.lock:
        events = state.portfolio.events(level)
        event_id = timeslot.get(id_field)
        existing = next((e for e in events if e.event_id == event_id), None) if event_id else None
        if existing is not None:
            changes = {k: v for k, v in timeslot.items() if k != id_field}
            return existing, existing.add_revision(now, **changes)
        event_id = event_id or str(uuid.uuid4())
        timeslot[id_field] = event_id
        for name in ("start_time", "end_time"):
            timeslot[name] = fmt_z_millis(parse_datetime(timeslot[name]))
        timeslot.setdefault("cancelled", False)
        if level == "meter":
            timeslot.setdefault("communication_test", False)
        recipient = body["recipient_id"]
        meter_ids = list(body.get("meter_ids") or ([recipient] if level == "meter" else []))
        event = DispatchEvent(
            level, event_id, recipient, timeslot["programs"][0], "published", meter_ids
        )
        revision = DispatchRevision(1, now, timeslot)
        event.revisions.append(revision)
        events.append(event)
        return event, revision


def notification_for(state: SandboxState, event: DispatchEvent, revision: DispatchRevision) -> dict:
    """The webhook notification Leap would send for one revision of one event."""
    timeslot = copy.deepcopy(revision.timeslot)
    timeslot.pop("communication_test", None)  # a top-level flag on webhooks
    if event.level == "meter":
        meter = state.portfolio.meters.get(event.recipient_id, {})
        recipient = {
            "meter_id": event.recipient_id,
            "partner_reference": meter.get("partner_reference"),
            "timeslots": [timeslot],
        }
        key = "meter_dispatches"
    else:
        refs = [
            state.portfolio.meters[m]["partner_reference"]
            for m in event.meter_ids
            if m in state.portfolio.meters
        ]
        recipient = {
            "market_group_id": event.recipient_id,
            "meter_ids": list(event.meter_ids),
            "partner_references": refs,
            "timeslots": [timeslot],
        }
        key = "group_dispatches"
    return {"integration_test_notification": False, "communication_test": False, key: [recipient]}


async def _tick(state: SandboxState, interval_s: float, rng: random.Random) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            meter_id = rng.choice(sorted(state.portfolio.meters))
            start = state.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
            event, revision = publish_event(
                state,
                {
                    "level": "meter",
                    "recipient_id": meter_id,
                    "timeslot": {
                        "start_time": fmt_z_millis(start),
                        "end_time": fmt_z_millis(start + timedelta(hours=1)),
                        "energy_kw": round(rng.uniform(5, 50), 2),
                        "nomination_kw": 50.0,
                        "programs": ["CCA"],
                        "priority": 2,
                        "is_voluntary": False,
                        "performance_compensation_cap": "up-to-site-load",
                        "dispatch_event_types": ["day-ahead"],
                    },
                },
            )
            await deliver(state, "meter", notification_for(state, event, revision))
        except Exception:
            log.exception("dispatch ticker failed")
