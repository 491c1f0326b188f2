"""Serve the receiver with uvicorn: in a background thread (``ReceiverServer``, for tests and the demo) or in
the foreground (``serve_forever``, for ``vpp receiver``)."""

from __future__ import annotations

from vpp_pipeline.http_server import BackgroundServer, bind_socket, serve_in_foreground
from vpp_pipeline.receiver.app import (
    DEFAULT_WEBHOOK_API_KEY,
    ReceiverSettings,
    create_receiver_app,
)
from vpp_pipeline.receiver.header_limit import bounded_http_protocol

DEFAULT_RECEIVER_PORT = 8780
#: Startup runs the app's lifespan (the ops store); a deep backlog absorbs bursts of retries.
RECEIVER_UVICORN_OPTIONS = {"lifespan": "on", "backlog": 2048}


def receiver_uvicorn_options(config: ReceiverSettings) -> dict:
    """uvicorn options of a receiver: the lifespan, the backlog and the bound on request heads."""
    return {**RECEIVER_UVICORN_OPTIONS, **bounded_http_protocol(config.max_head_bytes)}


class ReceiverServer(BackgroundServer):
    """The receiver on 127.0.0.1 in a daemon thread; ``port=0`` picks a free port. Context manager.

    ``url`` is the webhook URL (``http://127.0.0.1:<port>/leap/dispatch``).
    """

    server_name = "vpp-receiver"
    uvicorn_options = RECEIVER_UVICORN_OPTIONS

    def __init__(
        self, config: ReceiverSettings | None = None, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(host=host, port=port)
        self.config = config or ReceiverSettings.from_env()
        self.uvicorn_options = receiver_uvicorn_options(self.config)

    def build_app(self):
        return create_receiver_app(self.config)

    @property
    def url(self) -> str:
        return f"{self.base_url}/leap/dispatch"


def serve_forever(
    host: str = "127.0.0.1",
    port: int = DEFAULT_RECEIVER_PORT,
    config: ReceiverSettings | None = None,
) -> None:
    """Serve in the foreground until interrupted. Prints the webhook URL and the ops store path."""
    config = config or ReceiverSettings.from_env()
    app = create_receiver_app(config)  # opens and checks the ops store first: no port without it
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    print(
        f"vpp receiver on http://{host}:{bound}/leap/dispatch (auth header {config.header_name!r}"
        f"{', PUBLIC SANDBOX KEY' if config.api_key == DEFAULT_WEBHOOK_API_KEY else ''};"
        f" signatures {'required' if config.signing_secret else 'off'}; ops store {app.state.ops_store})",
        flush=True,
    )
    serve_in_foreground(app, sock, **receiver_uvicorn_options(config))
