"""The webhook key is required outside the sandbox: ``vpp receiver`` refuses to start without
``VPP_WEBHOOK_API_KEY`` or with the public default, and says why; with the local sandbox the default
still works, said out loud. Issue 11, "What was measured" item 4."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from vpp_pipeline.ops import OpsStore
from vpp_pipeline.receiver import (
    DEFAULT_WEBHOOK_API_KEY,
    ReceiverConfigError,
    ReceiverSettings,
    webhook_api_key,
)

LEAP = "https://api.leap.example"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VPP_", "LEAP_"))}
    db = tmp_path / "ops.sqlite"
    if not db.exists():
        OpsStore.initialize(str(db))
    return {**env, "VPP_OPS_DB_PATH": str(db), **extra}


def _run_receiver(env: dict, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vpp_pipeline.cli", "receiver", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("key", [None, "", "   ", DEFAULT_WEBHOOK_API_KEY])
def test_outside_the_sandbox_the_receiver_refuses_to_start_without_a_real_key(tmp_path, key):
    extra = {"LEAP_API_BASE_URL": LEAP}
    if key is not None:
        extra["VPP_WEBHOOK_API_KEY"] = key
    port = _free_port()
    result = _run_receiver(_env(tmp_path, **extra), port)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "VPP_WEBHOOK_API_KEY" in result.stderr and "not started" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(httpx.ConnectError):  # nothing listens
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_outside_the_sandbox_a_key_of_ones_own_starts_it(tmp_path):
    env = _env(tmp_path, LEAP_API_BASE_URL=LEAP, VPP_WEBHOOK_API_KEY="a-secret-of-ours")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "vpp_pipeline.cli", "receiver", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/leap/dispatch"
        wrong = httpx.post(url, content=b"{}", headers={"x-api-key": DEFAULT_WEBHOOK_API_KEY})
        assert wrong.status_code == 401
    finally:
        process.terminate()
        process.wait(20)


def test_sandbox_default_is_used_with_a_warning(caplog):
    with caplog.at_level("WARNING"):
        assert webhook_api_key({}) == DEFAULT_WEBHOOK_API_KEY
    assert "VPP_WEBHOOK_API_KEY is unset" in caplog.text
    assert webhook_api_key({"VPP_WEBHOOK_API_KEY": "mine"}) == "mine"


def test_from_env_raises_a_clear_error(monkeypatch):
    monkeypatch.setenv("LEAP_API_BASE_URL", LEAP)
    monkeypatch.delenv("VPP_WEBHOOK_API_KEY", raising=False)
    with pytest.raises(ReceiverConfigError, match="VPP_WEBHOOK_API_KEY is not set"):
        ReceiverSettings.from_env()


def test_settings_have_no_default_key():
    with pytest.raises(TypeError):
        ReceiverSettings()  # type: ignore[call-arg]
