"""A bound on the size of a request's head (request line + headers) for the receiver's uvicorn.

uvicorn's httptools protocol has no such bound, and httptools grows a header value by concatenating
each received chunk onto it: a 128 MiB header from an unauthenticated client keeps the event loop busy
for seconds, and every other delivery waits. The protocol below counts the bytes of each request's
head as they arrive and, past ``max_head_bytes``, answers ``431 Request Header Fields Too Large`` and
closes the connection before the parser sees the rest. Without httptools, uvicorn's h11 protocol is
used with h11's own bound (``h11_max_incomplete_event_size``), which answers 400.
"""

from __future__ import annotations

import json
from typing import Any

#: Leap's deliveries carry a dozen short headers (well under 2 KiB); 32 KiB leaves room for proxies.
DEFAULT_MAX_HEAD_BYTES = 32 * 1024
_HEAD_END = b"\r\n\r\n"


def _refusal(limit: int) -> bytes:
    body = json.dumps(
        {
            "status": 431,
            "reason_code": "HEADERS_TOO_LARGE",
            "detail": f"request line and headers exceed {limit} bytes",
        }
    ).encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


def bounded_http_protocol(max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES) -> dict[str, Any]:
    """uvicorn options that bound the request head to ``max_head_bytes``."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: h11 enforces its own bound (answering 400)
        return {"http": "h11", "h11_max_incomplete_event_size": max_head_bytes}

    refusal = _refusal(max_head_bytes)

    class BoundedHeadProtocol(HttpToolsProtocol):
        """httptools, refusing a request whose head grows past ``max_head_bytes`` (431)."""

        def connection_made(self, transport) -> None:  # type: ignore[override]
            self._in_head = True
            self._head_bytes = 0
            self._tail = b""
            self._refused = False
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._in_head:
                # count up to the blank line that ends the head (it may straddle two chunks)
                end = (self._tail + data).find(_HEAD_END)
                self._head_bytes += len(data) if end < 0 else end - len(self._tail)
                self._tail = data[-3:]
                if self._head_bytes > max_head_bytes:
                    self._refused = True
                    self.transport.write(refusal)
                    self.transport.close()
                    return
                if end >= 0:
                    self._in_head = False
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._in_head = False  # also for a pipelined request parsed within one chunk
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            # keep-alive: the next request on this connection starts with a new head
            self._in_head, self._head_bytes, self._tail = True, 0, b""

    return {"http": BoundedHeadProtocol}
