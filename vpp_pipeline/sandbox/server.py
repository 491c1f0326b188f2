"""Run the sandbox app with uvicorn: in a background thread (``SandboxServer``) or in the foreground
(``serve_forever``, for the ``vpp sandbox`` CLI command)."""

from __future__ import annotations

from datetime import datetime

from vpp_pipeline.http_server import BackgroundServer, bind_socket, serve_in_foreground

from .app import create_app
from .faults import FaultInjector
from .portfolio import Portfolio, build_portfolio
from .state import DEFAULT_API_KEY, SandboxState


class SandboxServer(BackgroundServer):
    """A Leap-compatible sandbox on 127.0.0.1, served by uvicorn in a daemon thread.

    ``port=0`` picks a free port. Use as a context manager (``with SandboxServer() as sandbox: ...``) or call
    ``start()``/``stop()``. ``base_url`` is e.g. ``http://127.0.0.1:54321``; ``state``, ``portfolio``,
    ``faults`` and ``requests`` expose the live sandbox to tests.
    """

    server_name = "leap-sandbox"

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
        super().__init__(host=host, port=port)
        self.state = state or SandboxState(
            build_portfolio(seed=seed, n_meters=n_meters, history_days=history_days, anchor=anchor),
            api_key,
            dispatch_page_limit=dispatch_page_limit,
        )

    def build_app(self):
        return create_app(self.state)

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
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    print(
        f"Leap sandbox on http://{host}:{bound}  (API key: {api_key}; seed {seed}; {n_meters} meters; "
        f"{history_days} days of dispatch history)",
        flush=True,
    )
    serve_in_foreground(create_app(state), sock)
