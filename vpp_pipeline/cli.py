"""The ``vpp`` command line.

vpp sandbox [--port 8765] [--seed 7]   serve the Leap-compatible sandbox on 127.0.0.1
vpp demo [--seed 7]                    run the main job end to end on the embedded defaults
vpp dev                                sandbox + `dagster dev` together; Ctrl-C stops both
                                       (creates the ops store first when there is none)
vpp backtest-bids [--days 30] [--seed 7] settle past bids against the sandbox's truth
vpp report [--open]                    print the performance report's path (and open it)
vpp sql ["SELECT ..."]                 query the analysts' read-only copy (no query: a prompt)
vpp data-dictionary [--write]          print (or write docs/data-dictionary.md) from sql/*.yml

A command that cannot use the ops store (missing, emptied, replaced, unreachable) exits with status 2
and one line naming the reason code.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from vpp_pipeline import settings


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from vpp_pipeline.sandbox import serve_forever

    serve_forever(port=args.port, seed=args.seed, api_key=args.api_key, n_meters=args.meters)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from vpp_pipeline.demo import run_demo

    return run_demo(seed=args.seed, duckdb_path=Path(args.duckdb) if args.duckdb else None)


def _cmd_backfill_intervals(args: argparse.Namespace) -> int:
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    from vpp_pipeline.demo import backfill_intervals

    end = (
        date.fromisoformat(args.end)
        if args.end
        else (datetime.now(ZoneInfo(settings.market_timezone())).date() - timedelta(days=1))
    )
    start = date.fromisoformat(args.start) if args.start else end - timedelta(days=args.days - 1)
    if start > end:
        print(f"error: start {start} is after end {end}", file=sys.stderr)
        return 2
    return backfill_intervals(start=start, end=end, fetch_api=not args.csv_only)


def _cmd_backtest_bids(args: argparse.Namespace) -> int:
    from datetime import date

    from vpp_pipeline.bidding.backtest import POLICIES, run_backtest
    from vpp_pipeline.bidding.backtest_report import report_text, write_outputs
    from vpp_pipeline.bidding.fleet import BidSettings
    from vpp_pipeline.bidding.offers import OFFER_MODES

    if args.days < 1:
        print("error: --days must be at least 1", file=sys.stderr)
        return 2
    if args.offer_mode not in OFFER_MODES:
        print(f"error: --offer-mode must be one of {OFFER_MODES}", file=sys.stderr)
        return 2
    try:
        end = date.fromisoformat(args.end) if args.end else None
    except ValueError:
        print(f"error: --end {args.end!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    unknown = sorted(set(policies) - set(POLICIES))
    if unknown:
        print(f"error: unknown policies {unknown}; choose from {POLICIES}", file=sys.stderr)
        return 2
    settings = BidSettings(peak_load_z=args.peak_load_z, offer_mode=args.offer_mode)

    def progress(message: str) -> None:
        print(f"\r  settling {message}", end="", file=sys.stderr, flush=True)

    result = run_backtest(
        args.seed, args.days, end, policies=policies, settings=settings, progress=progress
    )
    print(file=sys.stderr)
    print(report_text(result))
    write_outputs(
        result,
        Path(args.json) if args.json else None,
        Path(args.csv) if args.csv else None,
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from vpp_pipeline.report import report_path

    path = report_path().resolve()
    if not path.exists():
        print(
            f"error: no report at {path} yet: run `make demo`, or materialize performance_report "
            "in the Dagster UI (VPP_REPORT_DIR / VPP_DUCKDB_PATH decide where it is written)",
            file=sys.stderr,
        )
        return 1
    print(path)
    if args.open:
        import webbrowser

        if not webbrowser.open(path.as_uri()):
            print("note: no browser could be started here; open the path above", file=sys.stderr)
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    """Query the published read-only copy (never the pipeline's file: no lock meets a run)."""
    from vpp_pipeline.publish import PublishError, open_published

    path = Path(args.database) if args.database else settings.published_duckdb_path()
    try:
        conn = open_published(path)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    queries = [args.query] if args.query else None
    with conn:
        if queries is None:
            interactive = sys.stdin.isatty()
            if interactive:
                print(f"{path} (read-only). End statements with ';'. Ctrl-D quits.")
            queries = _read_statements(sys.stdin, prompt="vpp> " if interactive else "")
        status = 0
        for query in queries:
            try:
                for statement in conn.extract_statements(query):
                    relation = conn.sql(statement.query)
                    if relation is not None:
                        relation.show(max_rows=args.max_rows, max_width=200)
            except Exception as exc:  # an analyst's typo: say it, keep the session
                print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
                status = 1
    return status


def _read_statements(stream, prompt: str):
    buffer = ""
    while True:
        if prompt:
            print(prompt if not buffer else "...> ", end="", flush=True)
        line = stream.readline()
        if not line:
            break
        buffer += line
        if buffer.strip().endswith(";"):
            yield buffer.strip().rstrip(";")
            buffer = ""
    if buffer.strip():
        yield buffer.strip().rstrip(";")


def _cmd_data_dictionary(args: argparse.Namespace) -> int:
    from vpp_pipeline.data_dictionary import render_markdown

    text = render_markdown()
    if args.write:
        target = Path(args.write)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target}")
    else:
        print(text, end="")
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    """Start the local stack (sandbox, webhook receiver, sandbox site controller and
    `dagster dev`), register the receiver as the sandbox's dispatch webhook, and stop
    everything on Ctrl-C or when any part exits."""
    from vpp_pipeline.ops import OpsStore
    from vpp_pipeline.receiver import DEFAULT_RECEIVER_PORT, ReceiverSettings

    # the local stack owns its store: create it when there is none (the receiver never does)
    store = OpsStore.initialize()
    if store.created:
        print(
            f"vpp dev: created the ops store {store.display} (store {store.store_id})", flush=True
        )
    env = dict(os.environ)
    env.setdefault("LEAP_API_BASE_URL", f"http://127.0.0.1:{args.sandbox_port}")
    env.setdefault("LEAP_API_KEY", settings.DEFAULT_SANDBOX_API_KEY)
    env.setdefault("DAGSTER_HOME", str(Path("dagster_home").resolve()))
    env.setdefault("SITE_CONTROLLER_URL", f"http://127.0.0.1:{args.site_controller_port}")
    # LEAP_API_BASE_URL is set for the children, so the receiver requires a key: a fresh one per
    # run (registered with the sandbox below), never the public default
    if not env.get("VPP_WEBHOOK_API_KEY", "").strip():
        env["VPP_WEBHOOK_API_KEY"] = secrets.token_urlsafe(24)
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    vpp = [sys.executable, "-m", "vpp_pipeline.cli"]
    commands = {
        "sandbox": [*vpp, "sandbox", "--port", str(args.sandbox_port), "--seed", str(args.seed)],
        "receiver": [*vpp, "receiver", "--port", str(DEFAULT_RECEIVER_PORT)],
        "site-controller": [*vpp, "site-controller", "--port", str(args.site_controller_port)],
        "dagster": [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-w",
            "workspace.yaml",
            "-p",
            str(args.port),
        ],
    }
    # Each child leads its own process group so that stopping it stops its children too
    # (dagster dev runs a webserver and a daemon).
    children = {
        name: subprocess.Popen(command, env=env, start_new_session=True)
        for name, command in commands.items()
    }
    try:
        _register_dev_webhooks(
            env["LEAP_API_BASE_URL"],
            env["LEAP_API_KEY"],
            f"http://127.0.0.1:{DEFAULT_RECEIVER_PORT}/leap/dispatch",
            ReceiverSettings(
                api_key=env["VPP_WEBHOOK_API_KEY"],
                header_name=settings.env("VPP_WEBHOOK_HEADER_NAME", "x-api-key").lower(),
            ),
        )
        print(
            f"vpp dev: sandbox {env['LEAP_API_BASE_URL']}, receiver :{DEFAULT_RECEIVER_PORT}, "
            f"site controller {env['SITE_CONTROLLER_URL']}, Dagster UI http://127.0.0.1:{args.port}"
            "\n         try `vpp send-test-dispatch --program CCA`; Ctrl-C stops everything",
            flush=True,
        )
        while all(child.poll() is None for child in children.values()):
            time.sleep(0.5)
        exited = [name for name, child in children.items() if child.poll() is not None]
        print(f"vpp dev: {', '.join(exited)} exited; stopping the rest", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(children.values())
    print("vpp dev: stopped sandbox, receiver, site controller and dagster", flush=True)
    return 0


def _register_dev_webhooks(base_url: str, api_key: str, url: str, receiver) -> None:
    import httpx

    from vpp_pipeline.dispatch.demo import register_webhook

    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base_url}/_sandbox/health", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                print("vpp dev: the sandbox did not come up; webhooks not registered", flush=True)
                return
            time.sleep(0.3)
    for level in ("meter", "group"):
        register_webhook(base_url, api_key, level, url, receiver.header_name, receiver.api_key)


def _stop(children) -> None:
    children = list(children)
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGINT)
    deadline = time.monotonic() + 20
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vpp", description="vpp-pipeline command line")
    sub = parser.add_subparsers(dest="command", required=True)

    sandbox = sub.add_parser("sandbox", help="serve the Leap-compatible sandbox on 127.0.0.1")
    sandbox.add_argument("--port", type=int, default=settings.DEFAULT_SANDBOX_PORT)
    sandbox.add_argument("--seed", type=int, default=7)
    sandbox.add_argument("--api-key", default=settings.DEFAULT_SANDBOX_API_KEY)
    sandbox.add_argument(
        "--meters", type=int, default=72, help="number of meters (>= 60 by default)"
    )
    sandbox.set_defaults(func=_cmd_sandbox)

    demo = sub.add_parser("demo", help="run the main job end to end on the embedded defaults")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--duckdb", default=None, help="DuckDB file (default: VPP_DUCKDB_PATH)")
    demo.set_defaults(func=_cmd_demo)

    backfill = sub.add_parser(
        "backfill-intervals",
        help="materialize interval_reads for a range of market-local days as one run",
    )
    backfill.add_argument("--days", type=int, default=60, help="days ending --end (default 60)")
    backfill.add_argument("--start", help="first local day, YYYY-MM-DD (overrides --days)")
    backfill.add_argument("--end", help="last local day, YYYY-MM-DD (default: yesterday)")
    backfill.add_argument(
        "--csv-only", action="store_true", help="rebuild from landed files only; no API fetch"
    )
    backfill.set_defaults(func=_cmd_backfill_intervals)

    backtest = sub.add_parser(
        "backtest-bids",
        help="bid past trading days as the pipeline would have, settle against the sandbox",
        description=(
            "For each of the last --days trading days (ending --end) and every CAISO battery "
            "of the sandbox portfolio (--seed), build the bids as the pipeline would have at "
            "its decision time and settle them against the sandbox's truth, beside perfect "
            "foresight and a naive floor-price policy. Deterministic in its arguments."
        ),
    )
    backtest.add_argument("--days", type=int, default=30, help="trading days (default 30)")
    backtest.add_argument("--seed", type=int, default=7, help="sandbox portfolio seed")
    backtest.add_argument("--end", help="last trading day, YYYY-MM-DD (default: yesterday)")
    backtest.add_argument(
        "--policies", default="pipeline,perfect_foresight,naive", help="comma-separated"
    )
    backtest.add_argument(
        "--peak-load-z",
        type=float,
        default=2.0,
        help="like-day load spreads added when planning the peak (0 = the forecast alone)",
    )
    backtest.add_argument(
        "--offer-mode", default="surplus", help="surplus (default) or headroom (first policy)"
    )
    backtest.add_argument("--json", help="write the report as JSON to this file")
    backtest.add_argument("--csv", help="write every (policy, battery, day) row as CSV")
    backtest.set_defaults(func=_cmd_backtest_bids)

    dev = sub.add_parser("dev", help="start the sandbox and `dagster dev` together")
    dev.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    dev.add_argument("--sandbox-port", type=int, default=settings.DEFAULT_SANDBOX_PORT)
    dev.add_argument("--seed", type=int, default=7)
    dev.add_argument("--site-controller-port", type=int, default=8790)
    dev.set_defaults(func=_cmd_dev)

    report = sub.add_parser("report", help="print the performance report's path (--open opens it)")
    report.add_argument("--open", action="store_true", help="open it in the default browser")
    report.set_defaults(func=_cmd_report)

    sql = sub.add_parser(
        "sql", help="query the analysts' read-only copy of the DuckDB file (no query: a prompt)"
    )
    sql.add_argument("query", nargs="?", help="one SQL statement (default: read from stdin)")
    sql.add_argument(
        "--database", help="DuckDB file (default: VPP_PUBLISHED_DUCKDB_PATH, data/published/...)"
    )
    sql.add_argument("--max-rows", type=int, default=40)
    sql.set_defaults(func=_cmd_sql)

    dictionary = sub.add_parser(
        "data-dictionary", help="the data dictionary from sql/*.yml as markdown"
    )
    dictionary.add_argument(
        "--write",
        nargs="?",
        const="docs/data-dictionary.md",
        help="write it to a file (default docs/data-dictionary.md) instead of printing",
    )
    dictionary.set_defaults(func=_cmd_data_dictionary)

    from vpp_pipeline.dispatch.cli import add_dispatch_commands  # receiver, site-controller, ...

    add_dispatch_commands(sub)
    from vpp_pipeline.dispatch.quarantine_cli import add_quarantine_command

    add_quarantine_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vpp_pipeline.ops import OpsStoreError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OpsStoreError as exc:
        print(f"vpp {args.command}: ops store error {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
