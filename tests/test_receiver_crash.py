"""Crash drill: ``vpp receiver`` (a real subprocess) is SIGKILLed in the middle of a burst of 1,000
deliveries; every delivery that got a 2xx must be in the inbox afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from vpp_pipeline.dispatch.examples import meter_notification
from vpp_pipeline.ops import OpsStore

KEY = "crash-drill-key"
TOTAL = 1000
KILL_AFTER_ACKS = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SLOT_START = (datetime.now(UTC) + timedelta(days=2)).replace(
    hour=0, minute=0, second=0, microsecond=0
)


def _body(event_id: str) -> bytes:
    return json.dumps(
        meter_notification("dd21c76c-7126-4ef7-b0a6-f190fad300b2", event_id, SLOT_START)
    ).encode()


async def _burst(url: str, proc: subprocess.Popen) -> tuple[set[str], int]:
    acked: set[str] = set()
    failed = 0
    killed = False
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(limits=limits, timeout=5) as client:
        sem = asyncio.Semaphore(32)

        async def one(event_id: str) -> None:
            nonlocal failed, killed
            async with sem:
                try:
                    response = await client.post(
                        url, content=_body(event_id), headers={"x-api-key": KEY}
                    )
                except httpx.HTTPError:
                    failed += 1
                    return
                if 200 <= response.status_code < 300:
                    acked.add(event_id)
                    if len(acked) >= KILL_AFTER_ACKS and not killed:
                        killed = True
                        os.kill(proc.pid, signal.SIGKILL)  # mid-burst, no chance to flush
                else:
                    failed += 1

        await asyncio.gather(*(one(str(uuid.uuid4())) for _ in range(TOTAL)))
    return acked, failed


def test_sigkill_mid_burst_loses_no_acknowledged_delivery(tmp_path):
    db = tmp_path / "ops.sqlite"
    OpsStore.initialize(db)
    port = _free_port()
    env = {**os.environ, "VPP_OPS_DB_PATH": str(db), "VPP_WEBHOOK_API_KEY": KEY}
    env.pop("VPP_WEBHOOK_SIGNING_SECRET", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpp_pipeline.cli", "receiver", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "receiver did not start"
            time.sleep(0.1)
        acked, failed = asyncio.run(_burst(f"{base}/leap/dispatch", proc))
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the kill happened mid-burst: some deliveries were acknowledged, some were not
    assert KILL_AFTER_ACKS <= len(acked) < TOTAL and failed > 0
    stored = {
        json.loads(row.body)["meter_dispatches"][0]["timeslots"][0]["meter_event_id"]
        for row in OpsStore(db).inbox()
    }
    assert acked <= stored, f"{len(acked - stored)} acknowledged deliveries lost"
