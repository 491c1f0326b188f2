"""``vpp dispatch-quarantine``: read and release what the dispatch path set aside (docs/dispatch-ordering.md)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def _cmd_quarantine(args: argparse.Namespace) -> int:
    from vpp_pipeline.ops import OpsStore

    store = OpsStore()
    if args.release is not None:
        with store.session() as s:
            try:
                entry = s.release_quarantined(args.release, datetime.now(UTC))
            except (KeyError, ValueError) as exc:
                print(f"vpp dispatch-quarantine: {exc.args[0]}")
                return 2
        if entry["released_as"] is not None:
            print(
                f"released {entry['quarantine_id']}: inbox row {entry['inbox_id']} queued again as"
                f" inbox row {entry['released_as']} (the next dispatch_job run applies it)"
            )
        else:
            print(
                f"released {entry['quarantine_id']} ({entry['kind']}): the next run that touches it"
                " tries again (and quarantines it again if it still cannot be processed)"
            )
        return 0
    entries = store.quarantined(include_released=args.all)
    print(
        f"ops store {store.display}: {len(entries)} quarantine entr{'y' if len(entries) == 1 else 'ies'}"
    )
    for e in entries:
        ref = ", ".join(
            f"{name} {e[name]}"
            for name in ("inbox_id", "event_key", "action_id")
            if e[name] is not None
        )
        released = f"  released {e['released_at'][:19]}" if e["released_at"] else ""
        print(
            f"  #{e['quarantine_id']} {e['kind']:<6} {e['reason_code']:<18} {ref}"
            f"  at {e['quarantined_at'][:19]}Z{released}\n      {e['detail']}"
        )
    return 0


def add_quarantine_command(sub) -> None:
    """Add ``dispatch-quarantine`` to the ``vpp`` parser's subparsers."""
    parser = sub.add_parser(
        "dispatch-quarantine",
        help="inbox rows, events and site commands the dispatch path set aside, and releasing them",
    )
    parser.add_argument("--all", action="store_true", help="include released entries")
    parser.add_argument(
        "--release", type=int, metavar="ID", help="release entry ID (an inbox row is queued again)"
    )
    parser.set_defaults(func=_cmd_quarantine)
