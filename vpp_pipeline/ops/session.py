"""Every statement of the dispatch path, inside one transaction (:meth:`OpsStore.session`).

The same SQL runs on both backends (see ``vpp_pipeline.ops.sql``). Callers never see a connection: they
call these methods, so a change of backend, or of a statement, stays in this module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from vpp_pipeline.ops.records import InboxRow, SiteInfo, iso, parse_iso
from vpp_pipeline.ops.sql import Db

_EVENT_COLUMNS = (
    "event_key, level, event_id, recipient_id, meter_ids, timeslot, content_sha256, revision,"
    " integration_test, communication_test, source, inbox_id, first_received_at, received_at,"
    " updated_at"
)


def safe_text(text: str) -> str:
    """``text`` as storable UTF-8: lone surrogates (which JSON allows and UTF-8 does not) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


def _upsert(table: str, columns: list[str], key: list[str]) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` every other column (SQLite 3.24+ and PostgreSQL)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_marks(len(columns))})"
        f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


_UPSERT_SCHEDULE = _upsert(
    "site_schedules",
    ["meter_id", "schedule_id", "event_key", "payload", "payload_sha256", "state", "updated_at"],
    ["meter_id", "schedule_id"],
)
_UPSERT_SITE = _upsert(
    "sites",
    [
        "meter_id",
        "partner_reference",
        "transmission_region",
        "meter_type",
        "battery_power_kw",
        "refreshed_at",
    ],
    ["meter_id"],
)
_UPSERT_NOMINATION = _upsert(
    "site_nominations",
    ["meter_id", "program_identifier", "start_time", "end_time", "nomination_kw"],
    ["meter_id", "program_identifier", "start_time"],
)
_UPSERT_EVENT = _upsert(
    "dispatch_events", [c.strip() for c in _EVENT_COLUMNS.split(",")], ["event_key"]
)


class OpsSession:
    """Reads and writes inside one transaction. ``lock_inbox`` is called before an inbox insert (the
    PostgreSQL backend takes the store's inbox lock there, so inbox ids commit in id order)."""

    def __init__(self, db: Db, lock_inbox: Callable[[], None] = lambda: None) -> None:
        self._db = db
        self._lock_inbox = lock_inbox

    def rows(self, sql: str, params: tuple | dict | None = None) -> list[dict]:
        """A read-only query written for both backends (``%s`` placeholders), as dicts. For reports and
        tests; the dispatch path uses the named methods below."""
        return self._db.rows(sql, params)

    # -- inbox -------------------------------------------------------------------------------

    def max_inbox_id(self) -> int:
        return int(self._db.scalar("SELECT coalesce(max(inbox_id), 0) FROM inbox"))

    def pending_inbox_ids(self, after: int, limit: int) -> list[int]:
        """Unprocessed inbox ids above ``after``, in order."""
        return [
            int(r[0])
            for r in self._db.execute(
                "SELECT inbox_id FROM inbox WHERE inbox_id > %s AND processed_at IS NULL"
                " ORDER BY inbox_id LIMIT %s",
                (after, limit),
            ).fetchall()
        ]

    def inbox_rows(
        self, after: int, up_to: int | None, limit: int = 100_000, *, unprocessed: bool = False
    ) -> list[InboxRow]:
        sql = (
            "SELECT inbox_id, received_at, source, level, body, headers, processed_at FROM inbox"
            " WHERE inbox_id > %s"
        )
        params: list[Any] = [after]
        if up_to is not None:
            sql += " AND inbox_id <= %s"
            params.append(up_to)
        if unprocessed:
            sql += " AND processed_at IS NULL"
        sql += " ORDER BY inbox_id LIMIT %s"
        params.append(limit)
        return [
            InboxRow(int(r[0]), r[1], r[2], r[3], bytes(r[4]), json.loads(r[5]), r[6])
            for r in self._db.execute(sql, params).fetchall()
        ]

    def insert_inbox(
        self, *, received_at: datetime, source: str, level: str, body: bytes, headers: dict
    ) -> int:
        self._lock_inbox()
        return insert_inbox_row(
            self._db,
            {
                "received_at": iso(received_at),
                "source": source,
                "level": level,
                "body": body,
                "headers": headers,
                "body_sha256": hashlib.sha256(body).hexdigest(),
            },
        )

    def mark_processed(self, inbox_ids: list[int], run_id: str | None, at: datetime) -> None:
        self._db.executemany(
            "UPDATE inbox SET processed_at = %s, process_run = %s WHERE inbox_id = %s",
            [(iso(at), run_id, i) for i in inbox_ids],
        )

    def dead_letters(self) -> list[dict]:
        return self._db.rows("SELECT * FROM dead_letters ORDER BY dead_letter_id")

    @contextmanager
    def savepoint(self, name: str = "item") -> Iterator[None]:
        """Run a block as one unit inside the transaction: when it raises, its writes are undone and the
        exception propagates, the transaction's other writes stay (so one bad row cannot undo a batch)."""
        self._db.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._db.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self._db.execute(f"RELEASE SAVEPOINT {name}")
            raise
        self._db.execute(f"RELEASE SAVEPOINT {name}")

    # -- signed-delivery dedup -------------------------------------------------------------------

    def claim_webhook_id(self, webhook_id: str, inbox_id: int, at: datetime) -> bool:
        """Record a verified ``webhook-id`` as applied; False when an earlier inbox row carried it (a
        replay: Leap's retry of a delivery already taken, or a replayed older signed delivery)."""
        cur = self._db.execute(
            "INSERT INTO webhook_deliveries (webhook_id, inbox_id, seen_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (webhook_id) DO NOTHING",
            (webhook_id, inbox_id, iso(at)),
        )
        if cur.rowcount > 0:
            return True
        first = self._db.scalar(
            "SELECT inbox_id FROM webhook_deliveries WHERE webhook_id = %s", (webhook_id,)
        )
        return first is not None and int(first) == inbox_id

    # -- quarantine --------------------------------------------------------------------------------

    def quarantine(
        self,
        kind: str,
        reason_code: str,
        detail: str,
        at: datetime,
        *,
        inbox_id: int | None = None,
        event_key: str | None = None,
        action_id: int | None = None,
        run_id: str | None = None,
    ) -> int | None:
        """Quarantine an inbox row, event or site command (``kind``) with its reason; None when the same
        thing is already quarantined for the same reason and not released (recorded once)."""
        key = None if event_key is None else safe_text(event_key)
        open_same = self._db.scalar(
            "SELECT quarantine_id FROM dispatch_quarantine WHERE kind = %s AND reason_code = %s"
            " AND released_at IS NULL AND coalesce(inbox_id, -1) = %s"
            " AND coalesce(event_key, '') = %s AND coalesce(action_id, -1) = %s",
            (kind, reason_code, inbox_id or -1, key or "", action_id or -1),
        )
        if open_same is not None:
            return None
        return int(
            self._db.execute(
                "INSERT INTO dispatch_quarantine (kind, inbox_id, event_key, action_id, reason_code,"
                " detail, quarantined_at, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING quarantine_id",
                (kind, inbox_id, key, action_id, reason_code, safe_text(detail), iso(at), run_id),
            ).fetchall()[0][0]
        )

    def quarantined(self, *, include_released: bool = False) -> list[dict]:
        """Quarantine entries, oldest first (open ones only unless ``include_released``)."""
        where = "" if include_released else " WHERE released_at IS NULL"
        return self._db.rows(f"SELECT * FROM dispatch_quarantine{where} ORDER BY quarantine_id")

    def release_quarantined(self, quarantine_id: int, at: datetime) -> dict:
        """Release one entry: the body of the inbox row it names (kinds ``inbox`` and ``event``) is queued
        again as a new inbox row (``source`` ``'released'``, so the sensor picks it up); other entries are
        retried by the next run that touches them. Either is quarantined again if it still cannot be
        processed. Returns the entry."""
        found = self._db.rows(
            "SELECT * FROM dispatch_quarantine WHERE quarantine_id = %s", (quarantine_id,)
        )
        if not found:
            raise KeyError(f"no quarantine entry {quarantine_id}")
        entry = found[0]
        if entry["released_at"] is not None:
            raise ValueError(
                f"quarantine entry {quarantine_id} was released at {entry['released_at']}"
            )
        released_as = None
        if entry["kind"] in ("inbox", "event") and entry["inbox_id"] is not None:
            (row,) = self.inbox_rows(int(entry["inbox_id"]) - 1, int(entry["inbox_id"]))
            released_as = self.insert_inbox(
                received_at=parse_iso(row.received_at),
                source="released",
                level=row.level,
                body=row.body,
                # not a signed delivery any more: an operator's re-queue is never a webhook-id replay
                headers={
                    **{k: v for k, v in row.headers.items() if k != "x-vpp-signature"},
                    "x-vpp-released-from": str(row.inbox_id),
                },
            )
        self._db.execute(
            "UPDATE dispatch_quarantine SET released_at = %s, released_as = %s"
            " WHERE quarantine_id = %s",
            (iso(at), released_as, quarantine_id),
        )
        return {**entry, "released_at": iso(at), "released_as": released_as}

    # -- events ------------------------------------------------------------------------------

    def event(self, event_key: str) -> dict | None:
        found = self._db.rows("SELECT * FROM dispatch_events WHERE event_key = %s", (event_key,))
        return found[0] if found else None

    def save_event(self, event: dict) -> None:
        """Insert or replace the current state of an event, append its revision and rewrite the
        meters it names (``meter_ids`` is a JSON list)."""
        columns = [c.strip() for c in _EVENT_COLUMNS.split(",")]
        self._db.execute(_UPSERT_EVENT, [event[c] for c in columns])
        self._db.execute(
            "INSERT INTO dispatch_event_revisions (event_key, revision, meter_ids, timeslot,"
            " content_sha256, integration_test, communication_test, source, inbox_id, received_at)"
            " VALUES (%(event_key)s, %(revision)s, %(meter_ids)s, %(timeslot)s, %(content_sha256)s,"
            " %(integration_test)s, %(communication_test)s, %(source)s, %(inbox_id)s,"
            " %(received_at)s)",
            event,
        )
        self._db.execute(
            "DELETE FROM dispatch_event_meters WHERE event_key = %s", (event["event_key"],)
        )
        self._db.executemany(
            "INSERT INTO dispatch_event_meters (meter_id, event_key) VALUES (%s, %s)",
            [(m, event["event_key"]) for m in sorted(set(json.loads(event["meter_ids"])))],
        )

    def events_by_key(self, event_keys: Iterable[str]) -> dict[str, dict]:
        """The current rows of the given events that exist, by event key (one query)."""
        wanted = sorted(set(event_keys))
        if not wanted:
            return {}
        rows = self._db.rows(
            f"SELECT * FROM dispatch_events WHERE event_key IN ({_marks(len(wanted))})", wanted
        )
        return {r["event_key"]: r for r in rows}

    def has_revision_content(self, event_key: str, content_sha256: str) -> bool:
        """Whether any revision of the event (current or earlier) had this content."""
        return bool(
            self._db.execute(
                "SELECT 1 FROM dispatch_event_revisions WHERE event_key = %s"
                " AND content_sha256 = %s LIMIT 1",
                (event_key, content_sha256),
            ).fetchall()
        )

    def events_touching_meters(self, meter_ids: Iterable[str]) -> list[dict]:
        """Current events whose meters include any of ``meter_ids``."""
        wanted = sorted(set(meter_ids))
        if not wanted:
            return []
        return self._db.rows(
            "SELECT * FROM dispatch_events WHERE event_key IN (SELECT event_key FROM"
            f" dispatch_event_meters WHERE meter_id IN ({_marks(len(wanted))})) ORDER BY event_key",
            wanted,
        )

    def all_event_hashes(self) -> dict[str, str]:
        return dict(
            self._db.execute("SELECT event_key, content_sha256 FROM dispatch_events").fetchall()
        )

    def events(self) -> list[dict]:
        """Every event's current state, by event key."""
        return self._db.rows("SELECT * FROM dispatch_events ORDER BY event_key")

    def event_revisions(self, event_key: str) -> list[dict]:
        return self._db.rows(
            "SELECT * FROM dispatch_event_revisions WHERE event_key = %s ORDER BY revision",
            (event_key,),
        )

    def recent_events(self, limit: int) -> list[dict]:
        return self._db.rows(
            "SELECT * FROM dispatch_events ORDER BY received_at DESC, event_key LIMIT %s", (limit,)
        )

    # -- schedules and actions -----------------------------------------------------------------

    def schedules_for_meters(self, meter_ids: Iterable[str]) -> list[dict]:
        wanted = sorted(set(meter_ids))
        if not wanted:
            return []
        return self._db.rows(
            f"SELECT * FROM site_schedules WHERE meter_id IN ({_marks(len(wanted))})"
            " ORDER BY meter_id, schedule_id",
            wanted,
        )

    def set_schedule(
        self,
        meter_id: str,
        schedule_id: str,
        event_key: str,
        payload: dict,
        payload_sha256: str,
        state: str,
        at: datetime,
    ) -> None:
        self._db.execute(
            _UPSERT_SCHEDULE,
            (
                meter_id,
                schedule_id,
                event_key,
                json.dumps(payload, sort_keys=True),
                payload_sha256,
                state,
                iso(at),
            ),
        )

    def mark_schedule_held(self, meter_id: str, schedule_id: str, payload_sha256: str) -> None:
        """A PUT of this payload was delivered: a schedule a store written before the outbox marked
        ``failed`` is ``active`` again."""
        self._db.execute(
            "UPDATE site_schedules SET state = 'active' WHERE meter_id = %s AND schedule_id = %s"
            " AND state = 'failed' AND payload_sha256 = %s",
            (meter_id, schedule_id, payload_sha256),
        )

    def add_action(self, action: dict) -> int:
        """Insert a site command (``retry_of``/``retry_round`` optional: a re-send of an earlier one)."""
        row = {
            "retry_of": None,
            "retry_round": 0,
            **action,
            "payload": json.dumps(action["payload"]) if action["payload"] else None,
        }
        return int(
            self._db.execute(
                "INSERT INTO dispatch_actions (event_key, meter_id, schedule_id, command, payload,"
                " revision, reason_code, received_at, planned_at, status, run_id, retry_of,"
                " retry_round) VALUES (%(event_key)s, %(meter_id)s, %(schedule_id)s, %(command)s,"
                " %(payload)s, %(revision)s, %(reason_code)s, %(received_at)s, %(planned_at)s,"
                " %(status)s, %(run_id)s, %(retry_of)s, %(retry_round)s) RETURNING action_id",
                row,
            ).fetchall()[0][0]
        )

    def has_skip(self, event_key: str, meter_id: str, revision: int, reason_code: str) -> bool:
        return bool(
            self._db.execute(
                "SELECT 1 FROM dispatch_actions WHERE event_key = %s AND meter_id = %s"
                " AND revision = %s AND reason_code = %s AND status = 'skipped'",
                (event_key, meter_id, revision, reason_code),
            ).fetchall()
        )

    def actions(self, event_key: str | None = None) -> list[dict]:
        """Every site command (of one event when ``event_key`` is given), in action id order."""
        if event_key is None:
            return self._db.rows("SELECT * FROM dispatch_actions ORDER BY action_id")
        return self._db.rows(
            "SELECT * FROM dispatch_actions WHERE event_key = %s ORDER BY action_id", (event_key,)
        )

    def attempts(self) -> list[dict]:
        return self._db.rows("SELECT * FROM dispatch_attempts ORDER BY action_id, attempt")

    def attempts_of(self, action_ids: Iterable[int]) -> list[dict]:
        """The delivery attempts of ``action_ids``, in action and attempt order."""
        wanted = sorted(set(action_ids))
        if not wanted:
            return []
        return self._db.rows(
            f"SELECT * FROM dispatch_attempts WHERE action_id IN ({_marks(len(wanted))})"
            " ORDER BY action_id, attempt",
            wanted,
        )

    def record_attempt(
        self,
        action_id: int,
        attempt: int,
        started_at: datetime,
        finished_at: datetime,
        http_status: int | None,
        outcome: str,
        error: str | None,
    ) -> None:
        self._db.execute(
            "INSERT INTO dispatch_attempts (action_id, attempt, started_at, finished_at,"
            " http_status, outcome, error) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (action_id, attempt, iso(started_at), iso(finished_at), http_status, outcome, error),
        )
        self._db.execute(
            "UPDATE dispatch_actions SET attempts = %s, http_status = %s, error = %s"
            " WHERE action_id = %s",
            (attempt, http_status, error, action_id),
        )

    def finish_action(self, action_id: int, status: str, at: datetime) -> None:
        self._db.execute(
            "UPDATE dispatch_actions SET status = %s, finished_at = %s WHERE action_id = %s",
            (status, iso(at), action_id),
        )

    def unfinished_actions(self) -> list[dict]:
        return self._db.rows(
            "SELECT * FROM dispatch_actions WHERE status = 'planned' ORDER BY action_id"
        )

    def undelivered_actions(self) -> list[dict]:
        """PUT/DELETE commands still owed to a site controller: status ``planned`` or ``failed`` and the
        latest command for their ``(meter_id, schedule_id)`` (a later one replaces them). Each row adds
        ``last_activity_at`` (latest of planned_at, finished_at and its last attempt's finished_at) and
        ``schedule_end_time`` (the PUT's ``end_time``, or for a DELETE that of the schedule it removes;
        the contract's ``...Z`` text). Uses the partial index on undelivered statuses."""
        rows = self._db.rows(
            "SELECT a.*,"
            " (SELECT max(t.finished_at) FROM dispatch_attempts t"
            "  WHERE t.action_id = a.action_id) AS last_attempt_at,"
            " s.payload AS schedule_payload"
            " FROM dispatch_actions a"
            " LEFT JOIN site_schedules s ON s.meter_id = a.meter_id AND s.schedule_id = a.schedule_id"
            " WHERE a.status IN ('planned', 'failed') AND a.command IN ('put', 'delete')"
            " AND NOT EXISTS (SELECT 1 FROM dispatch_actions b WHERE b.meter_id = a.meter_id"
            "   AND b.schedule_id = a.schedule_id AND b.command IN ('put', 'delete')"
            "   AND b.action_id > a.action_id)"
            " ORDER BY a.action_id"
        )
        for row in rows:
            last_attempt, schedule = row.pop("last_attempt_at"), row.pop("schedule_payload")
            row["last_activity_at"] = max(
                row["planned_at"], row["finished_at"] or "", last_attempt or ""
            )
            try:
                own = json.loads(row["payload"]) if row["payload"] else {}
                held = json.loads(schedule) if schedule else {}
                row["schedule_end_time"] = own.get("end_time") or held.get("end_time")
            except (ValueError, AttributeError):
                # unreadable: outbox.classify reports (and a retry pass quarantines) the command
                row["schedule_end_time"] = None
        return rows

    def take_send_lock(
        self, meter_id: str, schedule_id: str, action_id: int, now: datetime, stale_before: datetime
    ) -> bool:
        """Take the schedule's send lock for ``action_id``: free, already ours, or held since before
        ``stale_before`` (its holder stopped refreshing it). False while another sender holds it."""
        cur = self._db.execute(
            "INSERT INTO schedule_send_locks (meter_id, schedule_id, action_id, held_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (meter_id, schedule_id) DO UPDATE"
            " SET action_id = excluded.action_id, held_at = excluded.held_at"
            " WHERE schedule_send_locks.action_id = excluded.action_id"
            " OR schedule_send_locks.held_at < %s",
            (meter_id, schedule_id, action_id, iso(now), iso(stale_before)),
        )
        return cur.rowcount > 0

    def refresh_send_lock(
        self, meter_id: str, schedule_id: str, action_id: int, now: datetime
    ) -> None:
        self._db.execute(
            "UPDATE schedule_send_locks SET held_at = %s"
            " WHERE meter_id = %s AND schedule_id = %s AND action_id = %s",
            (iso(now), meter_id, schedule_id, action_id),
        )

    def release_send_lock(self, meter_id: str, schedule_id: str, action_id: int) -> None:
        self._db.execute(
            "DELETE FROM schedule_send_locks WHERE meter_id = %s AND schedule_id = %s"
            " AND action_id = %s",
            (meter_id, schedule_id, action_id),
        )

    def send_lock_holder(self, meter_id: str, schedule_id: str) -> int | None:
        """The action holding the schedule's send lock, if any."""
        return self._db.scalar(
            "SELECT action_id FROM schedule_send_locks WHERE meter_id = %s AND schedule_id = %s",
            (meter_id, schedule_id),
        )

    def is_superseded(self, action_id: int, meter_id: str, schedule_id: str) -> bool:
        """Whether a later PUT/DELETE was planned for the same schedule (so this one must not be sent)."""
        return bool(
            self._db.execute(
                "SELECT 1 FROM dispatch_actions WHERE meter_id = %s AND schedule_id = %s"
                " AND command IN ('put', 'delete') AND action_id > %s LIMIT 1",
                (meter_id, schedule_id, action_id),
            ).fetchall()
        )

    # -- sites ---------------------------------------------------------------------------------

    def known_meter_ids(self) -> frozenset[str]:
        return frozenset(r[0] for r in self._db.execute("SELECT meter_id FROM sites").fetchall())

    def sites(self, meter_ids: Iterable[str]) -> dict[str, SiteInfo]:
        wanted = sorted(set(meter_ids))
        if not wanted:
            return {}
        marks = _marks(len(wanted))
        noms: dict[str, list] = {}
        for meter_id, program, start, end, kw in self._db.execute(
            "SELECT meter_id, program_identifier, start_time, end_time, nomination_kw"
            f" FROM site_nominations WHERE meter_id IN ({marks})",
            wanted,
        ).fetchall():
            noms.setdefault(meter_id, []).append((program, parse_iso(start), parse_iso(end), kw))
        return {
            meter_id: SiteInfo(meter_id, battery_kw, tuple(noms.get(meter_id, ())))
            for meter_id, battery_kw in self._db.execute(
                f"SELECT meter_id, battery_power_kw FROM sites WHERE meter_id IN ({marks})", wanted
            ).fetchall()
        }

    def upsert_sites(self, sites: list[dict], nominations: list[dict], at: datetime) -> None:
        """Replace the inventory of the given meters (``sites``: meter_id, partner_reference,
        transmission_region, meter_type, battery_power_kw; ``nominations``: meter_id,
        program_identifier, start_time, end_time, nomination_kw with datetimes)."""
        self._db.executemany(
            "DELETE FROM site_nominations WHERE meter_id = %s", [(s["meter_id"],) for s in sites]
        )
        self._db.executemany(
            _UPSERT_SITE,
            [
                (
                    s["meter_id"],
                    s.get("partner_reference"),
                    s.get("transmission_region"),
                    s.get("meter_type"),
                    s.get("battery_power_kw"),
                    iso(at),
                )
                for s in sites
            ],
        )
        self._db.executemany(
            _UPSERT_NOMINATION,
            [
                (
                    n["meter_id"],
                    n["program_identifier"],
                    iso(n["start_time"]),
                    iso(n["end_time"]) if n.get("end_time") else None,
                    n["nomination_kw"],
                )
                for n in nominations
            ],
        )


_INSERT_INBOX = (
    "INSERT INTO inbox (received_at, source, level, body, headers, body_sha256)"
    " VALUES (%s, %s, %s, %s, %s, %s) RETURNING inbox_id"
)
_INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letters (received_at, reason_code, detail, body, headers)"
    " VALUES (%s, %s, %s, %s, %s) RETURNING dead_letter_id"
)


def insert_inbox_rows(db: Db, rows: list[dict]) -> list[int]:
    """Insert inbox rows (``received_at`` text, ``source``, ``level``, ``body`` bytes, ``headers``
    dict, ``body_sha256``); returns their ids, in order. The caller holds the inbox lock."""
    return db.insert_returning(
        _INSERT_INBOX,
        [
            (
                row["received_at"],
                row.get("source", "webhook"),
                row["level"],
                row["body"],
                json.dumps(row["headers"], sort_keys=True),
                row["body_sha256"],
            )
            for row in rows
        ],
    )


def insert_inbox_row(db: Db, row: dict) -> int:
    return insert_inbox_rows(db, [row])[0]


def insert_dead_letters(db: Db, rows: list[dict]) -> list[int]:
    return db.insert_returning(
        _INSERT_DEAD_LETTER,
        [
            (
                row["received_at"],
                row["reason_code"],
                row["detail"],
                row["body"],
                json.dumps(row["headers"], sort_keys=True),
            )
            for row in rows
        ],
    )
