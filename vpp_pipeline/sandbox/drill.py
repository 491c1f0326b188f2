"""The multi-receiver drill: several ``vpp receiver`` processes and several dispatch workers share one
ops store (PostgreSQL in production) while a Leap-like sender delivers events, duplicates, updates and
cancellations over all receivers and one receiver is killed with SIGKILL mid-burst.

- **Plan** (:func:`build_plan`, seeded): meter-level events on synthetic meters (events of one meter never
  overlap in time, so each event is its own schedule); each event is a chain of versions (new, 0-2
  updates of ``energy_kw``, sometimes a cancellation); ``duplicate_share`` of all deliveries are
  re-sends of a version's exact bytes (Leap retrying).
- **Sender**: every chain runs concurrently. A version goes to a random receiver; a refused or failed
  request is retried on the next receiver (as Leap retries, behind a load balancer). Its duplicates
  follow once it is acknowledged, and the next version is sent once the previous revision has reached
  the site controller (the order Leap's updates arrive in: minutes apart).
- **Workers**: each worker process loops ``dispatch_job`` runs (in process, on an ephemeral Dagster
  instance) over the store's unprocessed inbox rows, as the sensor's runs would; several workers race
  for the same rows.
- **Checks** (:func:`run_drill` returns them): every acknowledged delivery (its inbox id and body hash)
  is in the store and processed (``lost``); the site controller received exactly one command per event
  revision, in revision order per schedule, and nothing else; no command failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from vpp_pipeline.dispatch.examples import meter_notification
from vpp_pipeline.ops import OpsStore, is_postgres
from vpp_pipeline.sandbox.site_controller import SiteControllerServer

DRILL_KEY = "drill-webhook-key"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclass
class Chain:
    """One event's deliveries: its versions in order (``cancel`` last when cancelled), and how many
    duplicates follow each version."""

    meter_id: str
    event_id: str
    versions: list[bytes]
    cancelled: bool
    duplicates: list[int]

    @property
    def deliveries(self) -> int:
        return len(self.versions) + sum(self.duplicates)


def build_plan(
    deliveries: int = 1000,
    duplicate_share: float = 0.3,
    meters: int = 40,
    seed: int = 14,
    now: datetime | None = None,
) -> list[Chain]:
    """Chains whose deliveries add up to ``deliveries``, ``duplicate_share`` of them duplicates."""
    rng = random.Random(seed)
    base = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    base += timedelta(hours=3)
    unique_target = round(deliveries * (1 - duplicate_share))
    chains: list[Chain] = []
    slot_of_meter = [0] * meters
    unique = 0
    while unique < unique_target:
        index = len(chains) % meters
        meter_id = f"drill-meter-{index:03d}"
        start = base + timedelta(hours=2 * slot_of_meter[index])
        slot_of_meter[index] += 1
        event_id = f"drill-{seed}-{len(chains):05d}"
        n_versions = min(rng.choice([1, 1, 2, 2, 3, 3, 4]), unique_target - unique)
        cancelled = n_versions > 1 and rng.random() < 0.35
        versions = []
        for v in range(n_versions):
            body = meter_notification(meter_id, event_id, start)
            slot = body["meter_dispatches"][0]["timeslots"][0]
            slot["energy_kw"] = 5.0 + v  # each update a new content
            if cancelled and v == n_versions - 1:
                slot["energy_kw"] = 5.0 + v - 1
                slot["cancelled"] = True
            versions.append(json.dumps(body).encode())
        chains.append(Chain(meter_id, event_id, versions, cancelled, [0] * n_versions))
        unique += n_versions
    for _ in range(deliveries - unique):
        chain = rng.choice(chains)
        chain.duplicates[rng.randrange(len(chain.versions))] += 1
    return chains


def site_inventory(chains: list[Chain]) -> list[dict]:
    return [
        {"meter_id": m, "battery_power_kw": 100.0, "meter_type": "drill"}
        for m in sorted({c.meter_id for c in chains})
    ]


# --- processes ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_receiver(location: str, port: int) -> subprocess.Popen:
    """``vpp receiver`` on ``port`` over the store at ``location``."""
    env = {**os.environ, "VPP_WEBHOOK_API_KEY": DRILL_KEY}
    env.pop("VPP_WEBHOOK_SIGNING_SECRET", None)
    env["VPP_OPS_DB_URL" if is_postgres(location) else "VPP_OPS_DB_PATH"] = location
    return subprocess.Popen(
        [sys.executable, "-m", "vpp_pipeline.cli", "receiver", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_healthy(port: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver on :{port} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"receiver on :{port} did not become healthy")


def dispatch_worker(location: str, site_url: str, site_token: str, stop, ready, results) -> None:
    """Loop dispatch_job runs over the store's unprocessed inbox rows until ``stop`` is set."""
    import dagster as dg

    from assets.dispatch import dispatch_job
    from vpp_pipeline.dispatch.resources import SiteControllerResource, ops_store_resource
    from vpp_pipeline.resources import LeapResource

    store = OpsStore(location)
    resources = {
        "ops_store": ops_store_resource(location),
        "site_controller": SiteControllerResource(
            base_url=site_url, token=site_token, timeout_s=10.0, backoff_initial_s=0.05
        ),
        # every drill meter is in the store's inventory: Leap is never asked
        "leap": LeapResource(base_url="http://127.0.0.1:9", api_key="unused"),
    }
    totals = {"runs": 0, "failed_runs": 0, "rows": 0, "duplicates": 0, "delivered": 0}
    with dg.DagsterInstance.ephemeral() as instance:
        ready.put(os.getpid())
        while not stop.is_set():
            pending = store.pending_inbox_ids(0)
            if not pending:
                time.sleep(0.05)
                continue
            config = {"after": pending[0] - 1, "up_to": pending[-1], "store_id": store.store_id}
            run = dispatch_job.execute_in_process(
                run_config={"ops": {"process_dispatch_inbox": {"config": config}}, **QUIET},
                resources=resources,
                instance=instance,
                raise_on_error=False,
            )
            totals["runs"] += 1
            if not run.success:
                totals["failed_runs"] += 1
                continue
            summary = run.output_for_node("process_dispatch_inbox")
            for key in ("rows", "duplicates", "delivered"):
                totals[key] += summary[key]
    results.put(totals)


# --- the sender ----------------------------------------------------------------------------------------------


@dataclass
class SendLog:
    acked: list[tuple[int, str]] = field(default_factory=list)  # (inbox_id, body sha256)
    ack_ms: list[float] = field(default_factory=list)
    failovers: int = 0
    gave_up: int = 0
    first_ack_at: float | None = None
    last_ack_at: float | None = None


async def _deliver(client, urls: list[str], body: bytes, log: SendLog, rng, on_ack) -> None:
    """POST until a receiver acknowledges (2xx), failing over to the next receiver."""
    start = rng.randrange(len(urls))
    deadline = time.monotonic() + 60
    attempt = 0
    while time.monotonic() < deadline:
        url = urls[(start + attempt) % len(urls)]
        began = time.perf_counter()
        try:
            response = await client.post(url, content=body, headers={"x-api-key": DRILL_KEY})
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 200:
            now = time.perf_counter()
            log.ack_ms.append((now - began) * 1000)
            log.acked.append((response.json()["inbox_id"], hashlib.sha256(body).hexdigest()))
            log.first_ack_at = log.first_ack_at or now
            log.last_ack_at = now
            on_ack()
            return
        log.failovers += 1
        attempt += 1
        await asyncio.sleep(min(0.05 * attempt, 0.5))
    log.gave_up += 1


async def _reached_site(site: SiteControllerServer, chain: Chain, revision: int) -> None:
    key = (chain.meter_id, chain.event_id)
    cancel = chain.cancelled and revision == len(chain.versions)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with site.state.lock:
            if cancel:
                done = any(
                    r["method"] == "DELETE" and (r["meter_id"], r["schedule_id"]) == key
                    for r in site.state.requests
                )
            else:
                done = site.state.schedules.get(key, {}).get("revision", 0) >= revision
        if done:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{chain.event_id} revision {revision} never reached the site")


async def _send_all(chains, urls, site, log: SendLog, on_ack, seed: int, concurrency: int):
    rng = random.Random(seed + 1)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def post(body: bytes) -> None:
            async with sem:
                await _deliver(client, urls, body, log, rng, on_ack)

        async def run_chain(chain: Chain) -> None:
            for version, body in enumerate(chain.versions, start=1):
                await post(body)
                await asyncio.gather(*(post(body) for _ in range(chain.duplicates[version - 1])))
                await _reached_site(site, chain, version)

        await asyncio.gather(*(run_chain(c) for c in chains))


# --- the drill -----------------------------------------------------------------------------------------------


def run_drill(
    location: str,
    *,
    deliveries: int = 1000,
    duplicate_share: float = 0.3,
    receivers: int = 2,
    workers: int = 2,
    kill_after_share: float = 0.4,
    meters: int = 40,
    concurrency: int = 64,
    seed: int = 14,
) -> dict:
    """Run the drill against the (new, empty) store at ``location``; returns figures and the problems
    found (empty when every check holds)."""
    store = OpsStore.initialize(location)
    chains = build_plan(deliveries, duplicate_share, meters=meters, seed=seed)
    with store.session() as s:
        s.upsert_sites(site_inventory(chains), [], datetime.now(UTC))
    ports = [_free_port() for _ in range(receivers)]
    procs = [start_receiver(location, p) for p in ports]
    ctx = multiprocessing.get_context("spawn")
    stop, ready, results = ctx.Event(), ctx.Queue(), ctx.Queue()
    log = SendLog()
    killed: dict = {}
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_healthy(port, proc)
        with SiteControllerServer(token="drill-site-token") as site:
            worker_procs = [
                ctx.Process(
                    target=dispatch_worker,
                    args=(location, site.base_url, site.token, stop, ready, results),
                )
                for _ in range(workers)
            ]
            for w in worker_procs:
                w.start()
            for _ in worker_procs:
                ready.get(timeout=120)
            kill_at = int(deliveries * kill_after_share)

            def on_ack() -> None:
                if kill_at and not killed and len(log.acked) >= kill_at:
                    os.kill(procs[0].pid, signal.SIGKILL)  # mid-burst: no chance to flush
                    killed.update(port=ports[0], after_acks=len(log.acked))

            urls = [f"http://127.0.0.1:{p}/leap/dispatch" for p in ports]
            started = time.perf_counter()
            asyncio.run(_send_all(chains, urls, site, log, on_ack, seed, concurrency))
            elapsed = time.perf_counter() - started
            stop.set()
            worker_totals = [results.get(timeout=120) for _ in worker_procs]
            for w in worker_procs:
                w.join(60)
            site_requests = list(site.state.requests)
    finally:
        stop.set()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return _check(store, chains, log, site_requests, worker_totals, killed, elapsed, procs)


def _check(store, chains, log, site_requests, worker_totals, killed, elapsed, procs) -> dict:
    problems: list[str] = []
    inbox = {row.inbox_id: row for row in store.inbox()}
    lost = [
        inbox_id
        for inbox_id, sha in log.acked
        if inbox_id not in inbox or hashlib.sha256(inbox[inbox_id].body).hexdigest() != sha
    ]
    if lost:
        problems.append(f"{len(lost)} acknowledged deliveries not in the store: {lost[:5]}")
    unprocessed = [i for i, row in inbox.items() if row.processed_at is None]
    if unprocessed:
        problems.append(f"{len(unprocessed)} inbox rows never processed: {unprocessed[:5]}")
    # the site's commands per schedule, against one command per revision in revision order
    seen: dict[tuple[str, str], list[str]] = {}
    for r in site_requests:
        key = (r["meter_id"], r["schedule_id"])
        mark = f"PUT {r['json']['revision']}" if r["method"] == "PUT" else "DELETE"
        seen.setdefault(key, []).append(f"{mark} {r['status']}")
    for chain in chains:
        expected = [f"PUT {v} 200" for v in range(1, len(chain.versions) + 1)]
        if chain.cancelled:
            expected[-1] = "DELETE 204"
        got = seen.pop((chain.meter_id, chain.event_id), [])
        if got != expected:
            problems.append(f"{chain.event_id}: site got {got}, expected {expected}")
    if seen:
        problems.append(f"commands for schedules no event asked for: {sorted(seen)[:5]}")
    failed = [a for a in store.actions() if a["status"] not in ("delivered",)]
    if failed:
        problems.append(f"{len(failed)} site commands not delivered: {failed[:3]}")
    if log.gave_up:
        problems.append(f"{log.gave_up} deliveries were never acknowledged by any receiver")
    if killed and procs[0].returncode != -signal.SIGKILL:
        problems.append(f"receiver :{killed['port']} was not killed ({procs[0].returncode})")
    revisions = sum(len(c.versions) for c in chains)
    ack_ms = sorted(log.ack_ms)
    burst_s = (log.last_ack_at - log.first_ack_at) if log.acked else 0.0
    return {
        "deliveries_planned": sum(c.deliveries for c in chains),
        "events": len(chains),
        "revisions": revisions,
        "cancellations": sum(c.cancelled for c in chains),
        "duplicates_planned": sum(sum(c.duplicates) for c in chains),
        "acked": len(log.acked),
        "inbox_rows": len(inbox),
        "duplicates_suppressed": len(inbox) - revisions,
        "site_commands": len(site_requests),
        "lost": len(lost),
        "failovers": log.failovers,
        "killed_receiver": killed,
        "workers": worker_totals,
        "elapsed_s": round(elapsed, 2),
        "acks_per_s": round(len(log.acked) / burst_s, 1) if burst_s else None,
        "ack_p50_ms": round(ack_ms[len(ack_ms) // 2], 1) if ack_ms else None,
        "ack_p99_ms": round(ack_ms[min(len(ack_ms) - 1, int(0.99 * len(ack_ms)))], 1)
        if ack_ms
        else None,
        "problems": problems,
    }
