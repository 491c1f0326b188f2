"""A sandbox site controller (docs/site-controller.md): records what it was told and fails on demand.

- ``PUT /v1/sites/{meter_id}/schedules/{schedule_id}``: JSON ``{start_time, end_time, target_kw, priority,
  is_voluntary, performance_compensation_cap, dry_run, revision}`` -> 200 ``{"status": "accepted"}``; the
  same revision twice is harmless (the schedule is replaced);
- ``DELETE`` on the same path -> 204, or 404 when there is no such schedule;
- ``GET /v1/sites/{meter_id}/schedules`` -> ``{"schedules": {schedule_id: body}}``;
- header ``Authorization: Bearer <token>`` (401 without, 403 with another token).

Admin (no auth): ``GET|DELETE /_site/requests`` (the log), ``PUT /_site/faults`` with ``{"mode": "500" |
"timeout", "count": N, "delay_s": 6}`` (the next N requests fail), ``DELETE /_site/faults``.

``SiteControllerServer(token, port=0)`` serves it in a thread (``.base_url``, ``.requests``, ``.schedules``,
``.fail_next(n, mode)``); ``vpp site-controller`` serves it in the foreground.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vpp_pipeline.dispatch.delivery import DEFAULT_SITE_CONTROLLER_TOKEN
from vpp_pipeline.http_server import BackgroundServer, bind_socket, serve_in_foreground

DEFAULT_SITE_CONTROLLER_PORT = 8790
REQUIRED_FIELDS = (
    "start_time",
    "end_time",
    "target_kw",
    "priority",
    "is_voluntary",
    "performance_compensation_cap",
    "dry_run",
    "revision",
)


@dataclass
class SiteControllerState:
    token: str = DEFAULT_SITE_CONTROLLER_TOKEN
    #: each request: method, meter_id, schedule_id, json, status, received_at (UTC ISO), received_unix
    requests: list[dict] = field(default_factory=list)
    #: (meter_id, schedule_id) -> the last accepted body
    schedules: dict[tuple[str, str], dict] = field(default_factory=dict)
    fail_mode: str | None = None
    fail_count: int = 0
    fail_delay_s: float = 6.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self) -> tuple[str, float] | None:
        with self.lock:
            if self.fail_count <= 0 or self.fail_mode is None:
                return None
            self.fail_count -= 1
            return self.fail_mode, self.fail_delay_s


def create_site_controller_app(state: SiteControllerState) -> Starlette:
    async def schedule(request: Request) -> Response:
        meter_id = request.path_params["meter_id"]
        schedule_id = request.path_params["schedule_id"]
        raw = await request.body()
        entry = {
            "method": request.method,
            "meter_id": meter_id,
            "schedule_id": schedule_id,
            "json": None,
            "status": None,
            "fault": None,
            "received_at": datetime.now(UTC).isoformat(),
            "received_unix": time.time(),
        }
        response = await _answer(request, raw, meter_id, schedule_id, entry)
        entry["status"] = response.status_code
        with state.lock:
            state.requests.append(entry)
        return response

    async def _answer(request, raw, meter_id, schedule_id, entry) -> Response:
        fault = state.take_fault()
        if fault is not None:
            mode, delay = fault
            entry["fault"] = mode
            if mode == "timeout":
                await asyncio.sleep(delay)
            return JSONResponse({"error": f"injected fault: {mode}"}, status_code=500)
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return JSONResponse({"error": "missing bearer token"}, status_code=401)
        if token != state.token:
            return JSONResponse({"error": "invalid token"}, status_code=403)
        key = (meter_id, schedule_id)
        if request.method == "DELETE":
            with state.lock:
                existed = state.schedules.pop(key, None) is not None
            return Response(status_code=204 if existed else 404)
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        entry["json"] = body
        if not isinstance(body, dict) or any(f not in body for f in REQUIRED_FIELDS):
            return JSONResponse(
                {"error": f"body must hold {', '.join(REQUIRED_FIELDS)}"}, status_code=422
            )
        with state.lock:
            state.schedules[key] = body
        return JSONResponse({"status": "accepted", "revision": body["revision"]})

    async def list_schedules(request: Request) -> Response:
        meter_id = request.path_params["meter_id"]
        with state.lock:
            found = {s: b for (m, s), b in state.schedules.items() if m == meter_id}
        return JSONResponse({"schedules": found})

    async def requests_log(request: Request) -> Response:
        with state.lock:
            if request.method == "DELETE":
                state.requests.clear()
            return JSONResponse({"requests": list(state.requests)})

    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            try:
                rule = json.loads(await request.body())
                mode = str(rule["mode"])
                if mode not in ("500", "timeout"):
                    raise ValueError("mode must be '500' or 'timeout'")
                with state.lock:
                    state.fail_mode = mode
                    state.fail_count = int(rule.get("count", 1))
                    state.fail_delay_s = float(rule.get("delay_s", state.fail_delay_s))
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": f"invalid fault: {exc}"}, status_code=400)
        elif request.method == "DELETE":
            with state.lock:
                state.fail_mode, state.fail_count = None, 0
        return JSONResponse({"mode": state.fail_mode, "count": state.fail_count})

    return Starlette(
        routes=[
            Route(
                "/v1/sites/{meter_id}/schedules/{schedule_id}", schedule, methods=["PUT", "DELETE"]
            ),
            Route("/v1/sites/{meter_id}/schedules", list_schedules, methods=["GET"]),
            Route("/_site/requests", requests_log, methods=["GET", "DELETE"]),
            Route("/_site/faults", faults, methods=["GET", "PUT", "DELETE"]),
        ]
    )


class SiteControllerServer(BackgroundServer):
    """The sandbox site controller on 127.0.0.1 in a daemon thread; ``port=0`` picks a free port."""

    server_name = "site-controller"

    def __init__(
        self, token: str = DEFAULT_SITE_CONTROLLER_TOKEN, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(host=host, port=port)
        self.state = SiteControllerState(token=token)

    def build_app(self):
        return create_site_controller_app(self.state)

    @property
    def token(self) -> str:
        return self.state.token

    @property
    def requests(self) -> list[dict]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def schedules(self) -> dict[tuple[str, str], dict]:
        with self.state.lock:
            return dict(self.state.schedules)

    def fail_next(self, count: int, mode: str = "500", delay_s: float = 6.0) -> None:
        """Make the next ``count`` requests fail: ``"500"`` (HTTP 500) or ``"timeout"`` (answer late)."""
        with self.state.lock:
            self.state.fail_mode, self.state.fail_count = mode, count
            self.state.fail_delay_s = delay_s

    def clear(self) -> None:
        with self.state.lock:
            self.state.requests.clear()
            self.state.schedules.clear()
            self.state.fail_mode, self.state.fail_count = None, 0


def serve_forever(
    port: int = DEFAULT_SITE_CONTROLLER_PORT,
    token: str = DEFAULT_SITE_CONTROLLER_TOKEN,
    host: str = "127.0.0.1",
) -> None:
    state = SiteControllerState(token=token)
    sock = bind_socket(host, port)
    print(f"sandbox site controller on http://{host}:{sock.getsockname()[1]}", flush=True)
    serve_in_foreground(create_site_controller_app(state), sock)
