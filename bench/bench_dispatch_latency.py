"""Webhook -> site-controller latency with ``dagster dev`` (webserver + daemon) running.

    .venv/bin/python bench/bench_dispatch_latency.py [--events 20] [--gap-s 7]

Starts, as separate processes on free ports: the sandbox (Leap), the sandbox site controller, the receiver
and ``dagster dev`` over ``workspace.yaml`` with a temporary DAGSTER_HOME (QueuedRunCoordinator, dequeue
every second; sensor daemon threads). Registers the receiver as the sandbox's meter webhook, waits for one
warm-up event to make it through, then publishes ``--events`` new dispatch events through the sandbox
(``/_sandbox/dispatch/publish``, which pushes them to the webhook like Leap), ``--gap-s`` apart with
jitter so arrivals fall anywhere in the sensor's 5-second interval. Latency per event = the site
controller's receipt of the PUT minus the receiver's ``received_at`` (same host clock). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DAGSTER_YAML = """
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
concurrency:
  pools:
    default_limit: 1
sensors:
  use_threads: true
  num_workers: 4
telemetry:
  enabled: false
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def _publish(sandbox: str, meter_id: str, start: datetime) -> str:
    response = httpx.post(
        f"{sandbox}/_sandbox/dispatch/publish",
        json={
            "level": "meter",
            "recipient_id": meter_id,
            "timeslot": {
                "start_time": start.isoformat(),
                "end_time": (start + timedelta(hours=1)).isoformat(),
                "energy_kw": 8.0,
                "nomination_kw": 10.0,
                "programs": ["CCA"],
                "priority": 2,
                "is_voluntary": False,
                "performance_compensation_cap": "up-to-site-load",
                "dispatch_event_types": ["day-ahead"],
            },
        },
        timeout=30,
    )
    response.raise_for_status()
    delivery = response.json()["delivery"]
    if delivery.get("http_status") != 200:
        raise RuntimeError(f"webhook delivery failed: {delivery}")
    return response.json()["event_id"]


def _site_requests(site: str) -> dict[str, float]:
    rows = httpx.get(f"{site}/_site/requests", timeout=10).json()["requests"]
    return {r["schedule_id"]: r["received_unix"] for r in rows if r["method"] == "PUT"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--gap-s", type=float, default=7.0)
    args = parser.parse_args()
    ports = {name: _free_port() for name in ("sandbox", "site", "receiver", "dagster")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
        db = Path(tmp) / "ops.sqlite"
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "LEAP_API_BASE_URL": urls["sandbox"],
            "LEAP_API_KEY": "sandbox-key",
            "SITE_CONTROLLER_URL": urls["site"],
            "VPP_OPS_DB_PATH": str(db),
            "VPP_WEBHOOK_API_KEY": "bench-key",
            "VPP_DUCKDB_PATH": str(Path(tmp) / "vpp.duckdb"),
        }
        vpp = [sys.executable, "-m", "vpp_pipeline.cli"]
        subprocess.run([*vpp, "ops-init"], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        logs = open(Path(tmp) / "dagster.log", "w")  # noqa: SIM115
        try:
            for cmd in (
                [*vpp, "sandbox", "--port", str(ports["sandbox"])],
                [*vpp, "site-controller", "--port", str(ports["site"])],
                [*vpp, "receiver", "--port", str(ports["receiver"])],
            ):
                procs.append(
                    subprocess.Popen(
                        cmd,
                        env=env,
                        cwd=ROOT,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "dagster",
                        "dev",
                        "-w",
                        "workspace.yaml",
                        "-p",
                        str(ports["dagster"]),
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=logs,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            for name in ("sandbox", "site", "receiver"):
                _wait(urls[name])
            httpx.put(
                f"{urls['sandbox']}/v2/dispatch/meter/webhook",
                json={"url": f"{urls['receiver']}/leap/dispatch", "headers": [{"name": "x-api-key", "value": "bench-key"}]},
                headers={"Authorization": "Bearer sandbox-key"},
            ).raise_for_status()  # fmt: skip
            _wait(f"{urls['dagster']}/server_info", timeout=180)
            with httpx.Client() as client:
                body = client.post(
                    f"{urls['sandbox']}/v2/meters/search",
                    json={"page_size": 50},
                    headers={"Authorization": "Bearer sandbox-key"},
                ).json()
            meters = [
                m["meter_id"] for m in body["meters"] if "BATTERY_STORAGE" not in m["load_types"]
            ]
            base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=3)
            # warm-up: the daemon loads the code location and starts ticking
            warm = _publish(urls["sandbox"], meters[0], base)
            deadline = time.monotonic() + 240
            while warm not in _site_requests(urls["site"]):
                if time.monotonic() > deadline:
                    raise RuntimeError("warm-up event never reached the site controller")
                time.sleep(0.5)
            rng = random.Random(1)
            sent: list[str] = []
            for i in range(args.events):
                sent.append(
                    _publish(
                        urls["sandbox"],
                        meters[(i + 1) % len(meters)],
                        base + timedelta(hours=i % 20),
                    )
                )
                time.sleep(args.gap_s + rng.uniform(-2, 2))
            deadline = time.monotonic() + 120
            while (
                not set(sent) <= set(_site_requests(urls["site"])) and time.monotonic() < deadline
            ):
                time.sleep(0.5)
            arrived = _site_requests(urls["site"])
            sys.path.insert(0, str(ROOT))
            from vpp_pipeline.ops import OpsStore

            received = {}
            for row in OpsStore(db).inbox():
                note = json.loads(row.body)
                for recipient in note.get("meter_dispatches", []):
                    for slot in recipient["timeslots"]:
                        received.setdefault(
                            slot["meter_event_id"],
                            datetime.fromisoformat(row.received_at).timestamp(),
                        )
            latencies = sorted(
                arrived[e] - received[e] for e in sent if e in arrived and e in received
            )
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGINT)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
            logs.close()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

    print(json.dumps({
        "events": args.events,
        "measured": len(latencies),
        "p50_s": pct(0.50) if latencies else None,
        "p95_s": pct(0.95) if latencies else None,
        "min_s": round(latencies[0], 2) if latencies else None,
        "max_s": round(latencies[-1], 2) if latencies else None,
        "mean_s": round(statistics.fmean(latencies), 2) if latencies else None,
        "all_s": [round(v, 2) for v in latencies],
    }, indent=2))  # fmt: skip
    return 0 if len(latencies) == args.events else 1


if __name__ == "__main__":
    sys.exit(main())
