"""The webhook receiver: ``POST /leap/dispatch`` (Leap's meter- and group-level dispatch notifications) and
``GET /healthz``, as a Starlette ASGI app.

Per request, in order:

0. head size: request line + headers over ``max_head_bytes`` (32 KiB) -> 431 ``HEADERS_TOO_LARGE``, answered
   by the HTTP protocol before the app runs (``receiver/header_limit.py``);
1. auth: the static header Leap sends (name ``VPP_WEBHOOK_HEADER_NAME``, default ``x-api-key``; Leap sends
   header names lower-cased), compared in constant time -> 401 ``AUTH_MISSING`` / ``AUTH_INVALID``;
2. size: a Content-Length over the limit (1 MiB) -> 413 before reading; the body is counted while streaming
   and reading stops at the limit -> 413 ``BODY_TOO_LARGE``;
3. signature, when ``VPP_WEBHOOK_SIGNING_SECRET`` is set: Standard Webhooks (``webhook-id``,
   ``webhook-timestamp``, ``webhook-signature``; 5-minute tolerance; several space-separated signatures for
   key rotation) verified by the ``standardwebhooks`` library -> 400 for missing/malformed headers, 401 for a
   bad signature or a timestamp outside the tolerance;
4. JSON -> 400 ``BODY_NOT_JSON``; strict JSON (finite numbers, bounded depth, UTF-8 strings:
   ``dispatch/strict_json.py``), Leap's dispatch schema and its bounds (``dispatch/notifications.py``) and the
   time window around arrival -> 422 with the reason code, and the body is dead-lettered (nothing is lost).
   No body, however malformed, gets a 500: an unexpected error while validating is a 422
   ``INVALID_NOTIFICATION``, dead-lettered too;
5. the raw body, received time and non-secret headers are committed to the ops store (group commit: a
   writer thread commits whatever arrived together in one fsync; a batch that fails is retried row by row,
   so one bad row never fails the others) and only then the 200 goes out:
   ``{"status": "accepted", "inbox_id", "events", "unknown_meter_ids"}``. Unknown meters are accepted.

The reply never waits for Dagster; the inbox sensor picks the row up.

The key is required: :meth:`ReceiverSettings.from_env` refuses (``ReceiverConfigError``) to run without
``VPP_WEBHOOK_API_KEY`` or with the public local default, unless the pipeline talks to the local sandbox
(``LEAP_API_BASE_URL`` unset), where the default is used with a warning.

The store must exist when the app is built (``OpsStore``: a missing, emptied or replaced store is an
error, never a new empty one). Every commit first checks that the location still holds the store opened
at start (the same SQLite file, the same store id); when not, the delivery gets 503
``STORE_UNAVAILABLE`` (Leap retries) and ``GET /healthz`` 503 with the store's reason code. ``/healthz``
commits a small write through the same writer, so 200 means a delivery would be stored now.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import queue
import re
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vpp_pipeline import settings
from vpp_pipeline.dispatch.notifications import (
    NotificationError,
    TimeWindow,
    check_time_window,
    meter_ids_of,
    parse_notification,
)
from vpp_pipeline.dispatch.ordering import SIGNATURE_MARK
from vpp_pipeline.dispatch.strict_json import DEFAULT_MAX_JSON_DEPTH, load_strict_json
from vpp_pipeline.ops import OpsStore, OpsStoreError, iso, ops_db_path
from vpp_pipeline.receiver.header_limit import DEFAULT_MAX_HEAD_BYTES

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
DEFAULT_HEADER_NAME = "x-api-key"
#: The local sandbox's key (public: it is in this repository). Accepted only while the pipeline talks
#: to the local sandbox (``LEAP_API_BASE_URL`` unset); anywhere else VPP_WEBHOOK_API_KEY is required.
DEFAULT_WEBHOOK_API_KEY = "local-webhook-key"
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
#: never stored: credentials and cookies
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
HEALTHZ_TIMEOUT_S = 5.0
#: a batch item that writes nothing but proves the store takes a write (``/healthz``)
_CHECK = "check"


class ReceiverConfigError(RuntimeError):
    """The receiver's settings do not allow it to start (e.g. no webhook key outside the sandbox)."""


def webhook_api_key(environ: dict[str, str] | None = None) -> str:
    """``VPP_WEBHOOK_API_KEY`` from ``environ`` (default ``os.environ``), checked.

    Outside the sandbox (``LEAP_API_BASE_URL`` set) a missing key or the public local default raises
    :class:`ReceiverConfigError`: anyone who read this repository could post dispatches. With the
    sandbox the public default is used when the key is unset, with a warning."""
    environ = os.environ if environ is None else environ
    key = (environ.get("VPP_WEBHOOK_API_KEY") or "").strip()
    sandbox = not (environ.get("LEAP_API_BASE_URL") or "").strip()
    if sandbox:
        if not key:
            log.warning(
                "VPP_WEBHOOK_API_KEY is unset: using the public sandbox key %r (local sandbox only)",
                DEFAULT_WEBHOOK_API_KEY,
            )
        return key or DEFAULT_WEBHOOK_API_KEY
    if not key:
        raise ReceiverConfigError(
            "VPP_WEBHOOK_API_KEY is not set: the receiver will not accept dispatches without a key"
            " outside the local sandbox (LEAP_API_BASE_URL is set). Set it to the secret registered"
            " with Leap's dispatch webhook (PUT /v2/dispatch/{meter|group}/webhook)."
        )
    if key == DEFAULT_WEBHOOK_API_KEY:
        raise ReceiverConfigError(
            f"VPP_WEBHOOK_API_KEY is the public sandbox key {DEFAULT_WEBHOOK_API_KEY!r}: refused"
            " outside the local sandbox (LEAP_API_BASE_URL is set). Use a secret of your own."
        )
    return key


def _env_int(name: str, default: int) -> int:
    raw = settings.env(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ReceiverConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise ReceiverConfigError(f"{name}={raw!r} must be at least 1")
    return value


@dataclass(frozen=True)
class ReceiverSettings:
    """What the receiver checks and where it stores. ``api_key`` has no default on purpose."""

    api_key: str
    header_name: str = DEFAULT_HEADER_NAME
    signing_secret: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    #: the ops store: PostgreSQL when ``ops_db_url`` is set, else the SQLite file ``ops_db_path``
    ops_db_path: str | None = None
    ops_db_url: str | None = None
    #: ``/healthz`` answers 503 when its write to the store takes longer than this
    healthz_timeout_s: float = HEALTHZ_TIMEOUT_S
    #: request line + headers (bytes) before a 431; nested JSON levels before a 422
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    #: where an event's start and end may lie around its arrival (else 422 ``TIME_OUT_OF_WINDOW``)
    time_window: TimeWindow = field(default_factory=TimeWindow)

    @property
    def ops_store(self) -> str | None:
        """The ops store's location (URL or path), None for the environment's."""
        return self.ops_db_url or self.ops_db_path

    @classmethod
    def from_env(cls) -> ReceiverSettings:
        """From the environment; raises :class:`ReceiverConfigError` (see :func:`webhook_api_key`)."""
        return cls(
            api_key=webhook_api_key(),
            header_name=settings.env("VPP_WEBHOOK_HEADER_NAME", DEFAULT_HEADER_NAME).lower(),
            signing_secret=settings.env("VPP_WEBHOOK_SIGNING_SECRET", "") or None,
            ops_db_path=str(ops_db_path()),
            ops_db_url=settings.env("VPP_OPS_DB_URL", "") or None,
            max_head_bytes=_env_int("VPP_RECEIVER_MAX_HEAD_BYTES", DEFAULT_MAX_HEAD_BYTES),
            max_json_depth=_env_int("VPP_RECEIVER_MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH),
            time_window=TimeWindow(
                past=timedelta(days=_env_int("VPP_DISPATCH_WINDOW_PAST_DAYS", 7)),
                future=timedelta(days=_env_int("VPP_DISPATCH_WINDOW_FUTURE_DAYS", 60)),
            ),
        )


def _problem(status: int, reason_code: str, detail: str) -> JSONResponse:
    # a detail may quote client text: escape what UTF-8 cannot encode (a lone surrogate) so the reply
    # itself never fails
    safe = detail.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"status": status, "reason_code": reason_code, "detail": safe}, status)


class _BodyTooLarge(Exception):
    pass


class InboxCommitter:
    """A writer thread that commits queued inbox rows / dead letters in batches (one fsync per batch) and
    resolves each request's future once its row is durable."""

    def __init__(self, store: OpsStore, max_batch: int = 256) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="inbox-committer", daemon=True)
        self._known: frozenset[str] = frozenset()
        self._known_at = 0.0
        self._thread.start()

    @property
    def known_meter_ids(self) -> frozenset[str]:
        return self._known

    async def commit(self, kind: str, row: dict) -> int:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((kind, row, loop, future))
        return await future

    async def check_write(self) -> None:
        """Commit a write through the same writer and checks as a delivery (raises when it fails)."""
        await self.commit(_CHECK, {})

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        writer = self.store.writer()
        try:
            self._refresh_known(writer)
            while True:
                item = self._queue.get()
                if item is None:
                    return
                batch = [item]
                while len(batch) < self.max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._queue.put(None)
                        break
                    batch.append(nxt)
                self._commit(writer, batch)
                self._refresh_known(writer)
        finally:
            writer.close()

    def _commit(self, writer, batch: list) -> None:
        """Commit ``batch`` in one transaction; when that fails, each item alone, so that a row the
        store refuses fails only its own request (a store that is down fails them all)."""
        rows = [(kind, row) for kind, row, _, _ in batch if kind != _CHECK]
        try:
            ids = iter(writer.append(rows, check_write=len(rows) < len(batch)))
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc, OpsStoreError):
                log.warning(
                    "group commit of %d rows failed (%s: %s); committing them one by one",
                    len(batch),
                    type(exc).__name__,
                    exc,
                )
                for item in batch:
                    self._commit(writer, [item])
                return
            log.error("inbox commit failed: %s: %s", type(exc).__name__, exc)
            for _, _, loop, future in batch:
                loop.call_soon_threadsafe(_set_exception, future, exc)
            return
        for kind, _, loop, future in batch:
            loop.call_soon_threadsafe(_set_result, future, None if kind == _CHECK else next(ids))

    def _refresh_known(self, writer) -> None:
        # the site inventory changes every few minutes at most: a 10-second-old view is fine
        if time.monotonic() - self._known_at > 10:
            try:
                self._known = writer.known_meter_ids()
            except Exception:
                log.exception("could not read the site inventory")
            self._known_at = time.monotonic()


def _set_result(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


_SIGNATURE_TOKEN = re.compile(r"^v[0-9]+,[A-Za-z0-9+/]+={0,2}$")


def _malformed_signature(header: str) -> str | None:
    """Why a ``webhook-signature`` header is not a space-separated list of ``v<n>,<base64>``, or None."""
    for token in header.split(" "):
        if not _SIGNATURE_TOKEN.match(token):
            return f"signature {token[:20]!r} is not 'v<n>,<base64>'"
        try:
            base64.b64decode(token.split(",", 1)[1], validate=True)
        except binascii.Error:
            return f"signature {token[:20]!r} is not valid base64"
    return None


def _verify_signature(verifier: Webhook, body: bytes, headers) -> Response | None:
    present = {name: headers.get(name) for name in SIGNATURE_HEADERS}
    missing = [name for name, value in present.items() if not value]
    if missing:
        return _problem(
            400, "SIGNATURE_HEADERS_MISSING", f"missing header(s): {', '.join(missing)}"
        )
    malformed = _malformed_signature(present["webhook-signature"])
    if malformed:
        return _problem(400, "SIGNATURE_HEADERS_MALFORMED", malformed)
    try:
        verifier.verify(body, present, json_parse=False)
    except WebhookVerificationError as exc:
        text = str(exc)
        if "timestamp" in text.lower() and "Invalid" not in text:
            return _problem(401, "SIGNATURE_TIMESTAMP_OUT_OF_TOLERANCE", text)
        if text == "Invalid Signature Headers":
            return _problem(400, "SIGNATURE_HEADERS_MALFORMED", "webhook-timestamp is not a number")
        return _problem(401, "SIGNATURE_INVALID", text)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        # the library's own parsing errors on malformed input: a client error, never a 500
        return _problem(400, "SIGNATURE_HEADERS_MALFORMED", f"{type(exc).__name__}: {exc}")
    return None


def create_receiver_app(config: ReceiverSettings | None = None) -> Starlette:
    """The receiver ASGI app (see the module docstring); ``config`` defaults to the environment."""
    config = config or ReceiverSettings.from_env()
    # an existing store, checked: a missing, emptied or replaced one stops the receiver here
    store = OpsStore(config.ops_store)
    expected_key = config.api_key.encode()
    header_name = config.header_name.lower()
    verifier = Webhook(config.signing_secret) if config.signing_secret else None
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app):
        state["committer"] = InboxCommitter(store)
        try:
            yield
        finally:
            state.pop("committer").close()

    def committer() -> InboxCommitter:
        if "committer" not in state:  # served without lifespan (tests with lifespan="off")
            state["committer"] = InboxCommitter(store)
        return state["committer"]

    async def healthz(request: Request) -> Response:
        """200 only when a write through the delivery path commits to the store this receiver opened."""
        about = {
            "ops_store": store.display,
            "store_id": store.store_id,
            "schema_version": store.schema_version,
        }
        try:
            await asyncio.wait_for(committer().check_write(), config.healthz_timeout_s)
        except OpsStoreError as exc:
            reason, detail = exc.reason_code, exc.detail
        except TimeoutError:
            reason = "OPS_STORE_NOT_WRITABLE"
            detail = f"no write committed within {config.healthz_timeout_s} s (locked or slow)"
        except Exception as exc:
            reason, detail = "OPS_STORE_NOT_WRITABLE", f"{type(exc).__name__}: {exc}"
        else:
            return JSONResponse({"status": "ok", **about})
        return JSONResponse(
            {"status": "error", "reason_code": reason, "detail": detail, **about}, 503
        )

    def _validated(body: bytes, received_at: datetime) -> tuple[object, list[dict]]:
        """The payload and its normalized events; ``NotificationError`` (a 422) for anything Leap's
        schema, its bounds or the time window refuse; a plain ``ValueError`` when it is not JSON."""
        payload = load_strict_json(body, config.max_json_depth)
        events = parse_notification(payload)
        check_time_window(events, received_at, config.time_window)
        return payload, events

    async def dead_letter(
        reason_code: str, detail: str, body: bytes, headers: dict, received_at: datetime
    ) -> Response:
        row = {
            "received_at": iso(received_at),
            "reason_code": reason_code,
            "detail": detail,
            "body": body,
            "headers": headers,
        }
        try:
            await committer().commit("dead_letter", row)
        except Exception as exc:
            why = exc.reason_code if isinstance(exc, OpsStoreError) else type(exc).__name__
            return _problem(
                503, "STORE_UNAVAILABLE", f"could not store the refused notification ({why}); retry"
            )
        return _problem(422, reason_code, detail)

    async def dispatch(request: Request) -> Response:
        received_at = datetime.now(UTC)
        supplied = request.headers.get(header_name)
        if supplied is None:
            return _problem(401, "AUTH_MISSING", f"missing header {header_name!r}")
        if not hmac.compare_digest(supplied.encode(), expected_key):
            return _problem(401, "AUTH_INVALID", f"header {header_name!r} does not match")
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > config.max_body_bytes:
                    return _problem(
                        413, "BODY_TOO_LARGE", f"limit is {config.max_body_bytes} bytes"
                    )
            except ValueError:
                return _problem(400, "BAD_CONTENT_LENGTH", "Content-Length is not a number")
        try:
            body = await _read_limited(request, config.max_body_bytes)
        except _BodyTooLarge:
            return _problem(413, "BODY_TOO_LARGE", f"limit is {config.max_body_bytes} bytes")
        except ClientDisconnect:
            return Response(status_code=400)
        if verifier is not None:
            refused = _verify_signature(verifier, body, request.headers)
            if refused is not None:
                return refused
        headers = {
            k: v
            for k, v in request.headers.items()
            if k not in SECRET_HEADERS and k != header_name and not k.startswith("x-vpp-")
        }
        if verifier is not None:
            headers[SIGNATURE_MARK] = "verified"  # webhook-id dedup applies to verified bodies only
        try:
            payload, events = _validated(body, received_at)
        except ValueError as exc:
            if not isinstance(exc, NotificationError):
                return _problem(400, "BODY_NOT_JSON", "the body is not valid JSON")
            return await dead_letter(exc.reason_code, exc.detail, body, headers, received_at)
        except Exception as exc:
            # a bug in validation must not become a 500 that Leap retries for 50 minutes
            log.exception("validating a delivery failed unexpectedly")
            return await dead_letter(
                "INVALID_NOTIFICATION",
                f"{type(exc).__name__} while validating",
                body,
                headers,
                received_at,
            )
        level = events[0]["level"]
        try:
            inbox_id = await committer().commit(
                "inbox",
                {
                    "received_at": iso(received_at),
                    "level": level,
                    "body": body,
                    "headers": headers,
                    "body_sha256": hashlib.sha256(body).hexdigest(),
                },
            )
        except Exception as exc:
            # not stored: make Leap retry
            why = exc.reason_code if isinstance(exc, OpsStoreError) else type(exc).__name__
            return _problem(
                503, "STORE_UNAVAILABLE", f"could not store the notification ({why}); retry"
            )
        known = committer().known_meter_ids
        unknown = [m for m in meter_ids_of(payload) if m not in known] if known else []
        return JSONResponse(
            {
                "status": "accepted",
                "inbox_id": inbox_id,
                "events": len(events),
                "unknown_meter_ids": unknown,
            }
        )

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/leap/dispatch", dispatch, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.ops_store = f"{store.display} (store {store.store_id})"
    return app
