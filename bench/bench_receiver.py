"""Receiver throughput and ack latency at a sustained load, on each ops-store backend, next to a bare
uvicorn endpoint, in one run.

    .venv/bin/python bench/bench_receiver.py [--rate 500] [--seconds 10]
        [--concurrency 64] [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]

Every server runs as its own process under uvicorn on 127.0.0.1: a bare Starlette endpoint that returns
200 without reading the body, ``vpp receiver`` on a fresh SQLite ops store, and ``vpp receiver`` on a
fresh PostgreSQL ops store (a temporary database on the server at ``--postgres-url``, dropped after; skipped
with a note when no server answers). The load generator is an
open loop: request i is sent at t0 + i/rate whatever the previous ones did, each with a realistic Leap
notification (~0.6 kB, unique event id), and the ack latency is measured from the scheduled send time
(so queueing in the client counts against the server, not hidden). Then a closed loop with
``--concurrency`` requests in flight measures the maximum throughput. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vpp_pipeline.dispatch.examples import meter_notification

KEY = "bench-key"
#: the notifications' timeslot: tomorrow, inside the receiver's time window (it refuses 1970 or 2099)
SLOT_START = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def bare_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ok(request):
        await request.body()
        return JSONResponse({"status": "accepted"})

    return Starlette(routes=[Route("/leap/dispatch", ok, methods=["POST"])])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def body(i: int) -> bytes:
    payload = meter_notification(
        "dd21c76c-7126-4ef7-b0a6-f190fad300b2", str(uuid.uuid4()), SLOT_START
    )
    payload["meter_dispatches"][0]["partner_reference"] = f"site-{i % 50}"
    return json.dumps(payload).encode()


def start(kind: str, port: int, location: str) -> subprocess.Popen:
    env = {**os.environ, "VPP_WEBHOOK_API_KEY": KEY}
    env.pop("VPP_WEBHOOK_SIGNING_SECRET", None)
    env.pop("VPP_OPS_DB_URL", None)
    if kind == "receiver_postgres":
        env["VPP_OPS_DB_URL"] = location
    else:
        env["VPP_OPS_DB_PATH"] = location
    if kind.startswith("receiver"):
        from vpp_pipeline.ops import OpsStore

        OpsStore.initialize(location)
        cmd = [sys.executable, "-m", "vpp_pipeline.cli", "receiver", "--port", str(port)]
    else:
        cmd = [sys.executable, __file__, "--serve-bare", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/leap/dispatch", content=b"{}", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} did not start")


class Connection:
    """A minimal HTTP/1.1 keep-alive client connection (asyncio streams): far cheaper per request than
    httpx, so on a 2-core machine the load generator does not starve the server it measures."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.reader = self.writer = None

    async def post(self, payload: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {self.path} HTTP/1.1\r\nhost: {self.host}\r\nx-api-key: {KEY}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
        ).encode()
        self.writer.write(head + payload)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def open_loop(url: str, rate: float, seconds: float, connections: int = 64) -> dict:
    host, port, path = _split(url)
    n = int(rate * seconds)
    payloads = [body(i) for i in range(n)]
    latencies: list[float] = []
    errors = 0
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(host, port, path))
    t0 = time.perf_counter() + 0.2

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = await pool.get()
        try:
            ok = await conn.post(payloads[i]) == 200
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            conn.close()
            conn = Connection(host, port, path)
            ok = False
        pool.put_nowait(conn)
        if ok:
            latencies.append(time.perf_counter() - scheduled)
        else:
            errors += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    while not pool.empty():
        pool.get_nowait().close()
    return _summary(latencies, errors, elapsed, rate)


async def closed_loop(url: str, concurrency: int, seconds: float) -> dict:
    host, port, path = _split(url)
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    t0 = time.perf_counter()

    async def worker(w: int) -> None:
        nonlocal errors
        conn = Connection(host, port, path)
        i = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                ok = await conn.post(body(w * 100000 + i)) == 200
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                conn.close()
                conn = Connection(host, port, path)
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
            i += 1
        conn.close()

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return _summary(latencies, errors, time.perf_counter() - t0, None)


def _split(url: str) -> tuple[str, int, str]:
    parsed = httpx.URL(url)
    return parsed.host, parsed.port, parsed.path


def _summary(latencies: list[float], errors: int, elapsed: float, rate: float | None) -> dict:
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else float("nan")

    return {
        "offered_rate_per_s": rate,
        "acked": len(lat),
        "errors": errors,
        "throughput_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--serve-bare", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare is not None:
        import uvicorn

        uvicorn.run(bare_app(), host="127.0.0.1", port=args.serve_bare, log_level="warning",
                    access_log=False, backlog=2048)  # fmt: skip
        return 0
    results = {"cores": os.cpu_count()}
    pg_database = _create_database(args.postgres_url)
    if pg_database is None:
        results["receiver_postgres"] = f"skipped: no PostgreSQL server at {args.postgres_url}"
    kinds = ["bare_uvicorn", "receiver_sqlite"] + (["receiver_postgres"] if pg_database else [])
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            port = _free_port()
            location = (
                pg_database if kind == "receiver_postgres" else str(Path(tmp) / f"{kind}.sqlite")
            )
            proc = start(kind, port, location)
            url = f"http://127.0.0.1:{port}/leap/dispatch"
            try:
                asyncio.run(open_loop(url, 100, 1))  # warm up
                results[kind] = {
                    "sustained": asyncio.run(open_loop(url, args.rate, args.seconds)),
                    "closed_loop": asyncio.run(closed_loop(url, args.concurrency, 5)),
                }
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=10)
            if kind.startswith("receiver"):
                from vpp_pipeline.ops import OpsStore

                results[kind]["inbox_rows"] = OpsStore(location).max_inbox_id()
    if pg_database:
        _drop_database(args.postgres_url, pg_database)
    print(json.dumps(results, indent=2))
    return 0


def _create_database(admin_url: str) -> str | None:
    """A new database on the server (its URL), or None when the server cannot be reached."""
    import psycopg

    name = f"vpp_bench_receiver_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return None
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _drop_database(admin_url: str, url: str) -> None:
    import psycopg

    from vpp_pipeline.ops.postgres_backend import close_pools

    close_pools()
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
