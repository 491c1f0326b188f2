"""The webhook receiver: ``POST /leap/dispatch`` (Leap's meter- and group-level dispatch notifications) and
``GET /healthz``, as a Starlette ASGI app.

Per request, in order:

1. auth: the static header Leap sends (name ``VPP_WEBHOOK_HEADER_NAME``, default ``x-api-key``; Leap sends
   header names lower-cased), compared in constant time -> 401 ``AUTH_MISSING`` / ``AUTH_INVALID``;
2. size: a Content-Length over the limit (1 MiB) -> 413 before reading; the body is counted while streaming
   and reading stops at the limit -> 413 ``BODY_TOO_LARGE``;
3. signature, when ``VPP_WEBHOOK_SIGNING_SECRET`` is set: Standard Webhooks (``webhook-id``,
   ``webhook-timestamp``, ``webhook-signature``; 5-minute tolerance; several space-separated signatures for
   key rotation) verified by the ``standardwebhooks`` library -> 400 for missing/malformed headers, 401 for a
   bad signature or a timestamp outside the tolerance;
4. JSON -> 400 ``BODY_NOT_JSON``; not a Leap notification -> 422 and a dead letter (nothing is lost);
5. the raw body, received time and non-secret headers are committed to the ops store (group commit: a
   writer thread commits whatever arrived together in one fsync) and only then the 200 goes out:
   ``{"status": "accepted", "inbox_id", "events", "unknown_meter_ids"}``. Unknown meters are accepted.

The reply never waits for Dagster; the inbox sensor picks the row up.

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
import json
import logging
import queue
import re
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vpp_pipeline import settings
from vpp_pipeline.dispatch.notifications import NotificationError, meter_ids_of, parse_notification
from vpp_pipeline.dispatch.ordering import SIGNATURE_MARK
from vpp_pipeline.ops import OpsStore, OpsStoreError, iso, ops_db_path

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
DEFAULT_HEADER_NAME = "x-api-key"
#: Local default only (the sandbox registers it); set VPP_WEBHOOK_API_KEY in any real deployment.
DEFAULT_WEBHOOK_API_KEY = "local-webhook-key"
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
#: never stored: credentials and cookies
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
HEALTHZ_TIMEOUT_S = 5.0
#: a batch item that writes nothing but proves the store takes a write (``/healthz``)
_CHECK = "check"


@dataclass(frozen=True)
class ReceiverSettings:
    api_key: str = DEFAULT_WEBHOOK_API_KEY
    header_name: str = DEFAULT_HEADER_NAME
    signing_secret: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    #: the ops store: PostgreSQL when ``ops_db_url`` is set, else the SQLite file ``ops_db_path``
    ops_db_path: str | None = None
    ops_db_url: str | None = None
    #: ``/healthz`` answers 503 when its write to the store takes longer than this
    healthz_timeout_s: float = HEALTHZ_TIMEOUT_S

    @property
    def ops_store(self) -> str | None:
        """The ops store's location (URL or path), None for the environment's."""
        return self.ops_db_url or self.ops_db_path

    @classmethod
    def from_env(cls) -> ReceiverSettings:
        return cls(
            api_key=settings.env("VPP_WEBHOOK_API_KEY", DEFAULT_WEBHOOK_API_KEY),
            header_name=settings.env("VPP_WEBHOOK_HEADER_NAME", DEFAULT_HEADER_NAME).lower(),
            signing_secret=settings.env("VPP_WEBHOOK_SIGNING_SECRET", "") or None,
            ops_db_path=str(ops_db_path()),
            ops_db_url=settings.env("VPP_OPS_DB_URL", "") or None,
        )


def _problem(status: int, reason_code: str, detail: str) -> JSONResponse:
    return JSONResponse({"status": status, "reason_code": reason_code, "detail": detail}, status)


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
                rows = [(kind, row) for kind, row, _, _ in batch if kind != _CHECK]
                try:
                    ids = iter(writer.append(rows, check_write=len(rows) < len(batch)))
                except Exception as exc:
                    log.error("inbox commit failed: %s: %s", type(exc).__name__, exc)
                    for _, _, loop, future in batch:
                        loop.call_soon_threadsafe(_set_exception, future, exc)
                    continue
                for kind, _, loop, future in batch:
                    loop.call_soon_threadsafe(
                        _set_result, future, None if kind == _CHECK else next(ids)
                    )
                self._refresh_known(writer)
        finally:
            writer.close()

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
            payload = json.loads(body)
        except ValueError:
            return _problem(400, "BODY_NOT_JSON", "the body is not valid JSON")
        try:
            events = parse_notification(payload)
        except NotificationError as exc:
            await committer().commit(
                "dead_letter",
                {
                    "received_at": iso(received_at),
                    "reason_code": exc.reason_code,
                    "detail": exc.detail,
                    "body": body,
                    "headers": headers,
                },
            )
            return _problem(422, exc.reason_code, exc.detail)
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
