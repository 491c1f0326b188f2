"""Serve an ASGI app with uvicorn on 127.0.0.1: in a daemon thread (tests, the demo) or in
the foreground (the ``vpp sandbox`` / ``vpp receiver`` / ``vpp site-controller`` commands).

One place for what every local server here needs: binding the socket first (``port=0``
picks a free port, known before uvicorn starts), waiting until uvicorn is accepting, and a
clean stop.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Self

import uvicorn


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def uvicorn_config(app: Any, host: str, **options: Any) -> uvicorn.Config:
    """Quiet uvicorn settings (warnings only, no access log, no websockets)."""
    settings = {"log_level": "warning", "access_log": False, "lifespan": "off", "ws": "none"}
    return uvicorn.Config(app, host=host, **(settings | options))


def serve_in_foreground(app: Any, sock: socket.socket, **options: Any) -> None:
    """Run uvicorn on an already bound socket until interrupted; closes the socket."""
    host = sock.getsockname()[0]
    try:
        uvicorn.Server(uvicorn_config(app, host, **options)).run(sockets=[sock])
    finally:
        sock.close()


class BackgroundServer:
    """An ASGI app served by uvicorn in a daemon thread. Subclasses implement ``build_app``.

    Use as a context manager, or call ``start()`` / ``stop()``; ``base_url`` is e.g.
    ``http://127.0.0.1:54321`` once started.
    """

    #: Thread name prefix, and the name used in start-up errors.
    server_name = "server"
    #: Extra uvicorn.Config options of this kind of server.
    uvicorn_options: dict[str, Any] = {}  # noqa: RUF012 (read-only class default)

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def build_app(self) -> Any:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            return self
        app = self.build_app()  # first: an app that cannot be built leaves no socket behind
        self._sock = bind_socket(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(app, self.host, **self.uvicorn_options))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"{self.server_name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._cleanup()
                raise RuntimeError(f"{self.server_name} thread exited during start-up")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.server_name} did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
