"""Run the sandbox app with uvicorn: in a background thread (``SandboxServer``) or in the foreground
(``serve_forever``, for the ``vpp sandbox`` CLI command)."""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime

import uvicorn

from .app import create_app
from .faults import FaultInjector
from .portfolio import Portfolio, build_portfolio
from .state import DEFAULT_API_KEY, SandboxState


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _config(app, host: str) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, log_level="warning", access_log=False, lifespan="off", ws="none"
    )


class SandboxServer:
    """A Leap-compatible sandbox on 127.0.0.1, served by uvicorn in a daemon thread.

    ``port=0`` picks a free port. Use as a context manager (``with SandboxServer() as sandbox: ...``) or call
    ``start()``/``stop()``. ``base_url`` is e.g. ``http://127.0.0.1:54321``; ``state``, ``portfolio``,
    ``faults`` and ``requests`` expose the live sandbox to tests.
    """

    def __init__(
        self,
        seed: int = 7,
        api_key: str = DEFAULT_API_KEY,
        port: int = 0,
        n_meters: int = 72,
        history_days: int = 90,
        anchor: datetime | None = None,
        *,
        host: str = "127.0.0.1",
        dispatch_page_limit: int = 500,
        state: SandboxState | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.state = state or SandboxState(
            build_portfolio(seed=seed, n_meters=n_meters, history_days=history_days, anchor=anchor),
            api_key,
            dispatch_page_limit=dispatch_page_limit,
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def portfolio(self) -> Portfolio:
        return self.state.portfolio

    @property
    def faults(self) -> FaultInjector:
        return self.state.faults

    @property
    def requests(self) -> list[dict]:
        return self.state.requests

    @property
    def api_key(self) -> str:
        return self.state.api_key

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SandboxServer:
        if self._thread is not None:
            return self
        self._sock = _bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(_config(create_app(self.state), self.host))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"leap-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._cleanup()
                raise RuntimeError("sandbox server thread exited during startup")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sandbox server did not start within {timeout} s")
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

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(
    port: int = 8765,
    seed: int = 7,
    api_key: str = DEFAULT_API_KEY,
    n_meters: int = 72,
    history_days: int = 90,
    anchor: datetime | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Serve the sandbox in the foreground until interrupted (Ctrl-C). Prints the URL and API key on start."""
    state = SandboxState(
        build_portfolio(seed=seed, n_meters=n_meters, history_days=history_days, anchor=anchor),
        api_key,
    )
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    print(
        f"Leap sandbox on http://{host}:{bound}  (API key: {api_key}; seed {seed}; {n_meters} meters; "
        f"{history_days} days of dispatch history)",
        flush=True,
    )
    try:
        uvicorn.Server(_config(create_app(state), host)).run(sockets=[sock])
    finally:
        sock.close()
