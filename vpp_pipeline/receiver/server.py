"""Serve the receiver with uvicorn: in a background thread (``ReceiverServer``, for tests and the demo) or in
the foreground (``serve_forever``, for ``vpp receiver``)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from vpp_pipeline.receiver.app import ReceiverSettings, create_receiver_app

DEFAULT_RECEIVER_PORT = 8780


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _config(app, host: str) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, log_level="warning", access_log=False, lifespan="on", ws="none",
        backlog=2048,
    )  # fmt: skip


class ReceiverServer:
    """The receiver on 127.0.0.1 in a daemon thread; ``port=0`` picks a free port. Context manager.

    ``url`` is the webhook URL (``http://127.0.0.1:<port>/leap/dispatch``).
    """

    def __init__(
        self, config: ReceiverSettings | None = None, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.config = config or ReceiverSettings.from_env()
        self.host, self.port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/leap/dispatch"

    def start(self, timeout: float = 10.0) -> ReceiverServer:
        self._sock = _bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(_config(create_receiver_app(self.config), self.host))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"vpp-receiver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> ReceiverServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(
    host: str = "127.0.0.1",
    port: int = DEFAULT_RECEIVER_PORT,
    config: ReceiverSettings | None = None,
) -> None:
    """Serve in the foreground until interrupted. Prints the webhook URL and the ops store path."""
    config = config or ReceiverSettings.from_env()
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    print(
        f"vpp receiver on http://{host}:{bound}/leap/dispatch (auth header {config.header_name!r};"
        f" signatures {'required' if config.signing_secret else 'off'}; ops store {config.ops_db_path})",
        flush=True,
    )
    try:
        uvicorn.Server(_config(create_receiver_app(config), host)).run(sockets=[sock])
    finally:
        sock.close()
