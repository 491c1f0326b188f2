"""The outbox: site commands on their way to the site controllers (docs/dispatch.md, docs/site-controller.md).

:func:`deliver_actions` sends planned commands (PUT/DELETE) and records every attempt. A command can still
end up not delivered:

- ``failed``: the site controller kept failing through all of the client's attempts;
- ``stranded``: the run that planned it (commands are committed before delivery) crashed or was killed
  before it finished delivering: status ``planned`` and nothing happened to it (no attempt) for
  ``RetryPolicy.stale_after_s``.

Such a command is *outstanding* while it is the latest PUT/DELETE for its ``(meter_id, schedule_id)`` (a
newer plan replaces it) and its schedule has not ended. :func:`redeliver_outstanding` re-sends outstanding
commands through the same delivery code, as a new action (``reason_code`` ``RETRY_FAILED`` or
``RETRY_STRANDED``, ``retry_of`` = the action it re-sends, the same payload and revision: PUT and DELETE
are idempotent per the contract). Commands whose schedule has ended are marked ``expired`` and not sent.
The claim (select + insert of the new actions) is one ``BEGIN IMMEDIATE`` transaction, so two overlapping
runs never send the same command twice.

One sender per schedule: a command is sent while holding its ``(meter_id, schedule_id)`` send lock in the
ops store (refreshed at every attempt; taken over when not refreshed for ``stale_after_s``, i.e. its run
died). Holding it, a command that a newer plan replaced is marked ``superseded`` instead of being sent. So
when two runs deliver different revisions of one schedule, the older one either finishes all its attempts
before the newer one starts or is never sent: a site never ends on an older revision because two runs'
requests crossed on the wire (or an older command's retry came after a newer command).

A command that cannot be sent at all (its stored payload cannot be read or encoded, e.g. a JSON ``Infinity``
written by an older version) is marked ``quarantined`` with a ``dispatch_quarantine`` entry: it is never
retried, and the other commands of the run are sent (docs/dispatch-ordering.md).

Failed commands wait between retry rounds: the first re-send is due at once (the failing run already backed
off across its attempts), then ``backoff_initial_s x 2^(round-1)`` capped at ``backoff_max_s``. Times are
UTC; durations in seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vpp_pipeline.dispatch.delivery import Attempt, SiteControllerClient
from vpp_pipeline.dispatch.planning import payload_hash
from vpp_pipeline.dispatch.quarantine import SEND_FAILED
from vpp_pipeline.ops import OpsStore, iso, parse_iso

log = logging.getLogger(__name__)

#: Outcome of one delivery: the action's final status.
DELIVERED, FAILED, SUPERSEDED = "delivered", "failed", "superseded"
#: a command that cannot be sent (see the module docstring); never retried
QUARANTINED = "quarantined"


@dataclass(frozen=True)
class RetryPolicy:
    """When undelivered commands are re-sent (seconds).

    ``stale_after_s`` must exceed the longest gap between two attempts of one delivery (the client's
    ``timeout_s + backoff_max_s``), or a slow but live delivery would be taken for a stranded one (harmless:
    the re-send is idempotent, but it is a second PUT)."""

    stale_after_s: float = 60.0
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 60.0

    def wait_s(self, retry_round: int) -> float:
        """Seconds to wait after a failure of round ``retry_round`` (0 = the planned command itself)."""
        if retry_round <= 0:
            return 0.0
        return min(self.backoff_initial_s * 2 ** (retry_round - 1), self.backoff_max_s)


DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(frozen=True)
class UndeliveredCommand:
    """A PUT/DELETE owed to a site controller.

    ``state``: ``failed`` (gave up after retries), ``stranded`` (planned, no activity for
    ``stale_after_s``) or ``in_flight`` (planned, a live run is presumably delivering it). ``due_at``: when
    a re-send is allowed (for ``in_flight``: when it would count as stranded). ``ended``: its schedule's
    end time has passed (it is expired, never sent)."""

    action_id: int
    event_key: str
    meter_id: str
    schedule_id: str
    command: str
    payload: dict | None
    revision: int
    reason_code: str
    received_at: str
    status: str
    attempts: int
    http_status: int | None
    error: str | None
    retry_round: int
    state: str
    last_activity_at: datetime
    due_at: datetime
    schedule_end_at: datetime | None
    ended: bool

    @property
    def outstanding(self) -> bool:
        """Not delivered, not being delivered, and still worth sending."""
        return self.state != "in_flight" and not self.ended

    def is_due(self, at: datetime) -> bool:
        return self.outstanding and self.due_at <= at


def _end_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def classify(
    rows: Iterable[dict],
    now: datetime,
    policy: RetryPolicy,
    unreadable: list[tuple[dict, str]] | None = None,
) -> list[UndeliveredCommand]:
    """Turn ``OpsSession.undelivered_actions()`` rows into :class:`UndeliveredCommand` as of ``now``.

    A row that cannot be read (payload or times) is left out, and appended with the reason to
    ``unreadable`` when given (so one bad row never stops a sensor or a retry pass)."""
    out = []
    for row in rows:
        try:
            out.append(_classify_one(row, now, policy))
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            log.warning("unreadable site command %s: %s", row.get("action_id"), exc)
            if unreadable is not None:
                unreadable.append((row, f"{type(exc).__name__}: {exc}"))
    return out


def _classify_one(row: dict, now: datetime, policy: RetryPolicy) -> UndeliveredCommand:
    last = parse_iso(row["last_activity_at"])
    if row["status"] == "failed":
        state = "failed"
        due = last + timedelta(seconds=policy.wait_s(row["retry_round"]))
    else:
        due = last + timedelta(seconds=policy.stale_after_s)
        state = "stranded" if due <= now else "in_flight"
    end = _end_time(row["schedule_end_time"])
    return UndeliveredCommand(
        action_id=row["action_id"],
        event_key=row["event_key"],
        meter_id=row["meter_id"],
        schedule_id=row["schedule_id"],
        command=row["command"],
        payload=json.loads(row["payload"]) if row["payload"] else None,
        revision=row["revision"],
        reason_code=row["reason_code"],
        received_at=row["received_at"],
        status=row["status"],
        attempts=row["attempts"],
        http_status=row["http_status"],
        error=row["error"],
        retry_round=row["retry_round"],
        state=state,
        last_activity_at=last,
        due_at=due,
        schedule_end_at=end,
        ended=end is not None and end <= now,
    )


def find_undelivered(
    store: OpsStore, now: datetime | None = None, policy: RetryPolicy = DEFAULT_RETRY_POLICY
) -> list[UndeliveredCommand]:
    """Every command owed to a site controller, as of ``now`` (read only; one cheap query, safe from a
    sensor)."""
    return classify(store.undelivered_actions(), now or datetime.now(UTC), policy)


def retry_run_key(due: Iterable[UndeliveredCommand]) -> str:
    """A run key for re-sending ``due``: the same outstanding set with the same attempt counts gives the
    same key (so a sensor does not request it twice); any re-send makes new action ids, so a new key."""
    ident = ";".join(f"{c.action_id}:{c.attempts}:{c.retry_round}" for c in due)
    return "dispatch-retry-" + hashlib.sha256(ident.encode()).hexdigest()[:16]


def redeliver_outstanding(
    store: OpsStore,
    client: SiteControllerClient,
    *,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    run_id: str | None = None,
    exclude_action_ids: Collection[int] = (),
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    log_fn: Callable[[str], None] = log.info,
) -> dict:
    """Expire ended outstanding commands, claim the due ones, re-send them and record every attempt.

    ``exclude_action_ids``: commands this run just tried itself (not retried again in the same run).
    Returns counts: ``outstanding`` (before this pass), ``expired``, ``retried`` (claimed and sent),
    ``redelivered``, ``retry_failed``, ``superseded``, ``not_due`` (outstanding, waiting for backoff).
    """
    at = now()
    excluded = set(exclude_action_ids)
    with store.session() as s:
        unreadable: list[tuple[dict, str]] = []
        commands = classify(s.undelivered_actions(), at, policy, unreadable)
        for row, why in unreadable:
            s.finish_action(row["action_id"], QUARANTINED, at)
            s.quarantine("action", SEND_FAILED, why, at, action_id=row["action_id"], run_id=run_id)
        expired = [c for c in commands if c.ended and c.state != "in_flight"]
        for command in expired:
            s.finish_action(command.action_id, "expired", at)
        due = [c for c in commands if c.is_due(at) and c.action_id not in excluded]
        actions = []
        for command in due:
            action = {
                "event_key": command.event_key,
                "meter_id": command.meter_id,
                "schedule_id": command.schedule_id,
                "command": command.command,
                "payload": command.payload,
                "revision": command.revision,
                "reason_code": "RETRY_FAILED" if command.state == "failed" else "RETRY_STRANDED",
                "received_at": command.received_at,
                "planned_at": iso(at),
                "status": "planned",
                "run_id": run_id,
                "retry_of": command.action_id,
                "retry_round": command.retry_round + 1,
            }
            action["action_id"] = s.add_action(action)
            if command.state == "stranded":
                # its run is gone; should it still finish, its own finish overwrites this
                s.finish_action(command.action_id, "stranded", at)
            actions.append(action)
    outstanding = [c for c in commands if c.outstanding]
    summary = {
        "outstanding": len(outstanding),
        "expired": len(expired),
        "retried": len(actions),
        "redelivered": 0,
        "retry_failed": 0,
        "superseded": 0,
        "not_due": sum(1 for c in outstanding if c.action_id not in excluded and not c.is_due(at)),
        "retry_quarantined": len(unreadable),
    }
    for command in expired:
        log_fn(
            f"EXPIRED {command.command} {command.meter_id}/{command.schedule_id} rev"
            f" {command.revision}: schedule ended at {command.schedule_end_at}, not sent"
        )
    if actions:
        log_fn(f"re-sending {len(actions)} undelivered site command(s)")
        statuses = deliver_actions(store, client, actions, lock_stale_after_s=policy.stale_after_s)
        summary["redelivered"] = statuses.count(DELIVERED)
        summary["retry_failed"] = statuses.count(FAILED)
        summary["superseded"] = statuses.count(SUPERSEDED)
        summary["retry_quarantined"] += statuses.count(QUARANTINED)
    return summary


# --- delivery -------------------------------------------------------------------------------------------


def deliver_actions(
    store: OpsStore,
    client: SiteControllerClient,
    actions: list[dict],
    max_workers: int = 8,
    lock_stale_after_s: float = DEFAULT_RETRY_POLICY.stale_after_s,
) -> list[str]:
    """Deliver planned actions (dicts with ``action_id``, ``command``, ``meter_id``, ``schedule_id``,
    ``payload``): meters in parallel, each meter's commands in order, each under its schedule's send lock
    (waiting for another run's delivery to the same schedule to finish; a lock not refreshed for
    ``lock_stale_after_s`` seconds is taken over). Records every attempt; returns each action's final
    status (``delivered``, ``failed``, ``superseded`` or ``quarantined``) in the order given."""
    by_meter: dict[str, list[int]] = {}
    for index, action in enumerate(actions):
        by_meter.setdefault(action["meter_id"], []).append(index)
    statuses: list[str] = [""] * len(actions)

    def run_meter(indexes: list[int]) -> None:
        for index in indexes:
            with _send_lock(store, actions[index], lock_stale_after_s):
                statuses[index] = _deliver_one(store, client, actions[index])

    if len(by_meter) == 1:
        run_meter(next(iter(by_meter.values())))
    else:
        with ThreadPoolExecutor(max_workers=min(max_workers, len(by_meter))) as pool:
            list(pool.map(run_meter, by_meter.values()))
    return statuses


@contextmanager
def _send_lock(store: OpsStore, action: dict, stale_after_s: float) -> Iterator[None]:
    """Hold the send lock of the action's schedule (polling while another sender holds it)."""
    key = (action["meter_id"], action["schedule_id"], action["action_id"])
    poll_s, waited = 0.02, False
    while True:
        now = datetime.now(UTC)
        with store.session() as s:
            if s.take_send_lock(*key, now, now - timedelta(seconds=stale_after_s)):
                break
        if not waited:
            log.info("waiting for another run's delivery to %s/%s to finish", *key[:2])
            waited = True
        time.sleep(poll_s)
        poll_s = min(poll_s * 2, 0.25)
    try:
        yield
    finally:
        with store.session() as s:
            s.release_send_lock(*key)


def _deliver_one(store: OpsStore, client: SiteControllerClient, action: dict) -> str:
    with store.session(write=False) as s:
        superseded = s.is_superseded(action["action_id"], action["meter_id"], action["schedule_id"])
    if superseded:
        # a newer plan for this schedule exists (another run): sending this one could undo it
        with store.session() as s:
            s.finish_action(action["action_id"], SUPERSEDED, datetime.now(UTC))
        return SUPERSEDED

    def record(attempt: Attempt) -> None:
        with store.session() as s:
            # the lock stays ours while attempts go on (a stale lock means a dead sender)
            s.refresh_send_lock(
                action["meter_id"], action["schedule_id"], action["action_id"], datetime.now(UTC)
            )
            s.record_attempt(
                action["action_id"],
                attempt.attempt,
                attempt.started_at,
                attempt.finished_at,
                attempt.http_status,
                attempt.outcome,
                attempt.error,
            )

    try:
        result = client.send(
            action["command"], action["meter_id"], action["schedule_id"], action["payload"], record
        )
    except Exception as exc:
        # not an HTTP or network failure (those are results): the command itself cannot be sent,
        # e.g. a payload with a non-finite number; retrying would fail the same way
        why = f"{type(exc).__name__}: {exc}"
        log.warning("quarantined site command %s: %s", action["action_id"], why)
        with store.session() as s:
            s.finish_action(action["action_id"], QUARANTINED, datetime.now(UTC))
            s.quarantine(
                "action",
                SEND_FAILED,
                why,
                datetime.now(UTC),
                action_id=action["action_id"],
                run_id=action.get("run_id"),
            )
        return QUARANTINED
    status = DELIVERED if result.delivered else FAILED
    with store.session() as s:
        s.finish_action(action["action_id"], status, datetime.now(UTC))
        if result.delivered and action["command"] == "put":
            s.mark_schedule_held(
                action["meter_id"], action["schedule_id"], payload_hash(action["payload"])
            )
    return status
