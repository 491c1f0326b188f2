"""``vpp`` subcommands of the dispatch path (added to the parser by ``vpp_pipeline.cli``):

vpp receiver [--host 127.0.0.1] [--port 8780]        the webhook receiver (uvicorn)
vpp site-controller [--port 8790]                    the sandbox site controller
vpp send-test-dispatch --program CCA [--meter ID ...] [--level meter|group] [--register-url URL]
                                                     Leap's integration-test endpoint with the program's
                                                     example (fresh ids and times); sandbox by default,
                                                     Leap when LEAP_API_BASE_URL is set
vpp dispatch-status [--limit 20]                     site commands still owed to site controllers
                                                     (failed, stranded, in flight), then recent events
                                                     (scheduled / active / ended / cancelled) and their
                                                     site commands: received, planned, sent and
                                                     acknowledged times and the latency
vpp ops-init                                         create the ops store (VPP_OPS_DB_URL, else
                                                     VPP_OPS_DB_PATH) if there is none, else upgrade
                                                     it; prints its backend, store id and schema
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from vpp_pipeline import settings


def _cmd_receiver(args: argparse.Namespace) -> int:
    import sys

    from vpp_pipeline.receiver import ReceiverConfigError, ReceiverSettings, serve_forever

    try:
        config = ReceiverSettings.from_env()
    except ReceiverConfigError as exc:
        print(f"vpp receiver: not started: {exc}", file=sys.stderr, flush=True)
        return 2
    serve_forever(host=args.host, port=args.port, config=config)
    return 0


def _cmd_site_controller(args: argparse.Namespace) -> int:
    from vpp_pipeline.dispatch.delivery import DEFAULT_SITE_CONTROLLER_TOKEN
    from vpp_pipeline.sandbox.site_controller import serve_forever

    token = settings.env("SITE_CONTROLLER_TOKEN", DEFAULT_SITE_CONTROLLER_TOKEN)
    serve_forever(port=args.port, token=token)
    return 0


def _cmd_send_test_dispatch(args: argparse.Namespace) -> int:
    from vpp_pipeline.dispatch.demo import enrolled_meter, register_webhook, send_integration_test
    from vpp_pipeline.dispatch.examples import examples_for, integration_test_payload
    from vpp_pipeline.receiver import ReceiverSettings

    examples = examples_for(args.example or args.program)
    if not examples:
        print(f"no Leap example for program {args.program!r}")
        return 2
    example = examples[0]
    base_url, api_key = settings.leap_api_base_url(), settings.leap_api_key()
    if args.register_url:
        from vpp_pipeline.receiver import ReceiverConfigError

        try:
            receiver = ReceiverSettings.from_env()
        except ReceiverConfigError as exc:
            print(f"not registered: {exc}")
            return 2
        register_webhook(
            base_url, api_key, args.level, args.register_url, receiver.header_name, receiver.api_key
        )
    meters = args.meter or [enrolled_meter(base_url, api_key, example.programs[0])]
    if meters == [None]:
        print(f"no meter given and none ACTIVE in {example.programs[0]}; pass --meter")
        return 2
    payload = integration_test_payload(example, level=args.level, meter_ids=meters)
    print(f"{example.name} -> {base_url} ({args.level} level, meters {', '.join(meters)})")
    response = send_integration_test(base_url, api_key, args.level, payload)
    print(json.dumps(response, indent=2))
    status = response.get("http_status")
    return 0 if status is not None and 200 <= status < 300 else 1


def _ago(seconds: float) -> str:
    return f"in {seconds:.0f} s" if seconds > 0 else "now"


def _print_undelivered(store) -> None:

    from vpp_pipeline.dispatch.outbox import find_undelivered

    now = datetime.now(UTC)
    commands = find_undelivered(store, now)
    outstanding = [c for c in commands if c.outstanding]
    counts = {
        state: sum(1 for c in commands if c.state == state and not c.ended)
        for state in ("failed", "stranded", "in_flight")
    }
    ended = sum(1 for c in commands if c.ended and c.state != "in_flight")
    print(
        f"OUTSTANDING site commands: {len(outstanding)} ({counts['failed']} failed,"
        f" {counts['stranded']} stranded); {counts['in_flight']} in flight;"
        f" {ended} ended (to be marked expired)"
    )
    for c in commands:
        if c.ended and c.state != "in_flight":
            next_step = "EXPIRES (schedule ended; not sent)"
        elif c.state == "in_flight":
            next_step = f"stranded {_ago((c.due_at - now).total_seconds())} if nothing happens"
        else:
            next_step = f"re-send due {_ago((c.due_at - now).total_seconds())}"
        end = c.schedule_end_at.strftime("%Y-%m-%dT%H:%MZ") if c.schedule_end_at else "?"
        print(
            f"  {c.state.upper():<9} {c.command:<6} {c.meter_id}/{c.schedule_id}  rev {c.revision}"
            f"  action {c.action_id} (round {c.retry_round}, {c.attempts} attempt(s),"
            f" last http {c.http_status}, {c.error or 'no error'})  ends {end}  -> {next_step}"
        )


def _print_quarantine(store) -> None:
    """One line per open quarantine entry: what the dispatch path set aside and why."""
    entries = store.quarantined()
    if not entries:
        return
    print(f"QUARANTINED: {len(entries)} open entr{'y' if len(entries) == 1 else 'ies'}"
          " (not dispatched; `vpp dispatch-quarantine` shows them whole, --release ID re-queues)")  # fmt: skip
    for e in entries:
        where = e.get("event_key") or f"inbox row {e.get('inbox_id')}"
        print(f"  #{e['quarantine_id']} {e['kind']} {where}: {e['reason_code']}")


def _cmd_ops_init(args: argparse.Namespace) -> int:
    from vpp_pipeline.ops import OpsStore

    store = OpsStore.initialize()
    state = "created" if store.created else "exists"
    print(
        f"ops store {store.display}: {state}; backend {store.backend}, store id {store.store_id},"
        f" schema version {store.schema_version}, {store.max_inbox_id()} inbox rows"
    )
    if store.created:
        print(f"  pin it for every process with VPP_OPS_STORE_ID={store.store_id}")
    return 0


def _cmd_dispatch_status(args: argparse.Namespace) -> int:

    from vpp_pipeline.ops import OpsStore

    store = OpsStore()
    now = datetime.now(UTC)
    events = store.recent_events(args.limit)
    print(f"ops store {store.display} (store {store.store_id}): {store.max_inbox_id()} inbox rows")
    _print_undelivered(store)
    _print_quarantine(store)
    if not events:
        print("no dispatch events yet")
        return 0
    print(
        f"recent events (state at {now.strftime('%Y-%m-%dT%H:%M:%SZ')}); per site command: received"
        " -> planned -> sent -> acknowledged (UTC) and the latency received -> acknowledged"
    )
    for event in events:
        # one unreadable row (a value written by an older version, a bad timeslot) is reported and
        # skipped: the operator still sees every other event
        try:
            print(format_event(event, now))
            actions = store.actions(event["event_key"])
            attempts = store.attempts_of(a["action_id"] for a in actions)
            for action in actions:
                own = [t for t in attempts if t["action_id"] == action["action_id"]]
                print(format_action(action, own, now))
        except Exception as exc:
            print(f"{event.get('event_key', '?')}  (unreadable: {type(exc).__name__}: {exc})")
    return 0


def _parse_time(value) -> datetime | None:

    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def event_state(slot: dict, now: datetime) -> str:
    """CANCELLED, ENDED (its end passed), ACTIVE (running now) or SCHEDULED (not started)."""
    if slot.get("cancelled"):
        return "CANCELLED"
    start, end = _parse_time(slot.get("start_time")), _parse_time(slot.get("end_time"))
    if start is None and end is None:
        return "UNKNOWN (no times)"
    if end is not None and end <= now:
        return "ENDED"
    if start is not None and start <= now:
        return "ACTIVE"
    return "SCHEDULED"


def format_event(event: dict, now: datetime) -> str:
    """One line per event: key, revision, programs, window, kW, priority, state, flags, source."""
    slot = json.loads(event["timeslot"]) if event.get("timeslot") else {}
    flags = " TEST" if event.get("integration_test") else ""
    programs = ",".join(str(p) for p in slot.get("programs") or []) or "?"
    window = f"{str(slot.get('start_time', '?'))[:16]} -> {str(slot.get('end_time', '?'))[:16]}"
    return (
        f"{event['event_key']}  rev {event.get('revision')}  {programs}  {window}"
        f"  energy_kw={slot.get('energy_kw')}  prio {slot.get('priority')}"
        f"  {event_state(slot, now)}{flags}  ({event.get('source')})"
    )


def _clock(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z" if at else "-"


def format_action(action: dict, attempts: list[dict], now: datetime) -> str:
    """Two lines per site command: what and how it went, then its times and latency."""
    retry = f", re-sends action {action['retry_of']}" if action.get("retry_of") else ""
    received = _parse_time(action.get("received_at"))
    planned = _parse_time(action.get("planned_at"))
    sent = _parse_time(attempts[0]["started_at"]) if attempts else None
    acked = next(
        (_parse_time(t["finished_at"]) for t in attempts if t.get("outcome") == "ok"), None
    )
    if acked is None and action.get("status") == "delivered":
        acked = _parse_time(action.get("finished_at"))
    if acked is not None and received is not None:
        latency = f"latency {(acked - received).total_seconds():.3f} s"
    elif received is not None and action.get("status") in ("planned", "failed", "stranded"):
        latency = f"not acknowledged, {(now - received).total_seconds():.0f} s since received"
    else:
        latency = "latency -"
    return (
        f"    {action.get('command')!s:<6} {action.get('meter_id')}/{action.get('schedule_id')}"
        f"  {action.get('status')} ({action.get('reason_code')}, {action.get('attempts')}"
        f" attempt(s), http {action.get('http_status')}{retry})\n"
        f"           received {_clock(received)}  planned {_clock(planned)}  sent {_clock(sent)}"
        f"  acknowledged {_clock(acked)}  {latency}"
    )


def add_dispatch_commands(sub) -> None:
    """Add the dispatch subcommands to the ``vpp`` parser's subparsers."""
    from vpp_pipeline.receiver import DEFAULT_RECEIVER_PORT
    from vpp_pipeline.sandbox.site_controller import DEFAULT_SITE_CONTROLLER_PORT

    receiver = sub.add_parser("receiver", help="serve the dispatch webhook receiver")
    receiver.add_argument("--host", default="127.0.0.1")
    receiver.add_argument("--port", type=int, default=DEFAULT_RECEIVER_PORT)
    receiver.set_defaults(func=_cmd_receiver)

    site = sub.add_parser("site-controller", help="serve the sandbox site controller")
    site.add_argument("--port", type=int, default=DEFAULT_SITE_CONTROLLER_PORT)
    site.set_defaults(func=_cmd_site_controller)

    test = sub.add_parser("send-test-dispatch", help="trigger Leap's dispatch integration test")
    test.add_argument("--program", default="CCA", help="program_identifier, e.g. CCA, ELRP")
    test.add_argument(
        "--example", default=None, help="Leap example name, e.g. 'CAISO - CCA Market Award'"
    )
    test.add_argument("--meter", action="append", help="meter id (repeatable)")
    test.add_argument("--level", choices=("meter", "group"), default="meter")
    test.add_argument("--register-url", default=None, help="first register this webhook URL")
    test.set_defaults(func=_cmd_send_test_dispatch)

    status = sub.add_parser(
        "dispatch-status", help="recent dispatch events and their site commands"
    )
    status.add_argument("--limit", type=int, default=20)
    status.set_defaults(func=_cmd_dispatch_status)

    init = sub.add_parser(
        "ops-init", help="create the ops store if there is none (else upgrade it) and show its id"
    )
    init.set_defaults(func=_cmd_ops_init)
