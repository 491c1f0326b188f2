"""The multi-receiver drill at a chosen size, on a PostgreSQL ops store (a temporary database).

    .venv/bin/python bench/bench_drill.py [--deliveries 5000] [--receivers 2]
        [--workers 2] [--duplicates 0.3] [--kill-after 0.4] [--seed 14]

Two (or more) ``vpp receiver`` processes and dispatch workers share one store; deliveries (duplicates,
updates, cancellations) go over all receivers and one receiver is SIGKILLed after ``--kill-after`` of
them were acknowledged (see ``vpp_pipeline.sandbox.drill``). Prints the drill's figures as JSON; exits 1
when a check failed. ``VPP_BENCH_POSTGRES_URL`` names the server (default the local one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vpp_pipeline.sandbox.drill import run_drill


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--receivers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--kill-after", type=float, default=0.4)
    parser.add_argument("--meters", type=int, default=120)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    admin_url = os.environ.get(
        "VPP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"vpp_bench_drill_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        location = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
        result = run_drill(
            location,
            deliveries=args.deliveries,
            duplicate_share=args.duplicates,
            receivers=args.receivers,
            workers=args.workers,
            kill_after_share=args.kill_after,
            meters=args.meters,
            seed=args.seed,
        )
    finally:
        from vpp_pipeline.ops.postgres_backend import close_pools

        close_pools()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps({"cores": os.cpu_count(), **vars(args), **result}, indent=2))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
