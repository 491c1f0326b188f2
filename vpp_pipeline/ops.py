"""The operational store (SQLite, WAL, ``synchronous=FULL``): every SQL statement of the dispatch path.

The dispatch path (receiver -> inbox -> sensor -> dispatch job -> site controllers) keeps its state here,
never in DuckDB, so no analytics work can hold a dispatch up. Everything goes through :class:`OpsStore`
and :class:`OpsSession`, so a PostgreSQL store can replace this module for multi-host deployments.

Tables (all times are UTC ISO-8601 text with microseconds, ``2025-06-01T17:00:00.000000+00:00``, so text
order is time order):

- ``inbox``: one row per accepted webhook delivery (raw body bytes, received time, non-secret headers) or
  per reconciliation batch; ``processed_at`` is set by the dispatch job that applied it.
- ``dead_letters``: JSON bodies that were not a Leap notification (``reason_code``), kept so nothing is lost.
- ``dispatch_events``: the current state of each meter_event_id / market_group_event_id
  (``event_key`` = ``meter:<id>`` / ``group:<id>``); ``dispatch_event_revisions`` keeps every revision.
- ``site_schedules``: what each site controller was last told per schedule (the desired state the
  planner diffs against).
- ``dispatch_actions``: each planned site command (PUT/DELETE, or a skipped one with a reason code);
  ``dispatch_attempts``: each delivery attempt and its outcome. A command that was not delivered (failed
  after retries, or stranded by a crashed run) is re-sent as a new action with ``retry_of`` pointing at
  it (``vpp_pipeline.dispatch.outbox``).
- ``schedule_send_locks``: who is sending to a schedule right now (one sender per ``(meter_id,
  schedule_id)``, so two runs' commands for one schedule never cross on the wire; see ``dispatch.outbox``).
- ``sites`` / ``site_nominations``: the small site inventory the planner needs (battery kW, nominations),
  refreshed from Leap's API by the reconciliation job.

Multi-process safety: WAL lets readers run beside the single writer; writers use ``BEGIN IMMEDIATE`` and a
busy timeout, so concurrent processes (receiver, sensor, runs) queue instead of failing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vpp_pipeline import settings

DEFAULT_OPS_DB_PATH = "data/ops.sqlite"
BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    inbox_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at   TEXT NOT NULL,
    source        TEXT NOT NULL,           -- 'webhook' | 'reconciliation'
    level         TEXT NOT NULL,           -- 'meter' | 'group'
    body          BLOB NOT NULL,           -- the raw body bytes, as received
    headers       TEXT NOT NULL,           -- JSON object of the non-secret headers
    body_sha256   TEXT NOT NULL,
    processed_at  TEXT,
    process_run   TEXT
);
CREATE TABLE IF NOT EXISTS dead_letters (
    dead_letter_id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at    TEXT NOT NULL,
    reason_code    TEXT NOT NULL,
    detail         TEXT NOT NULL,
    body           BLOB NOT NULL,
    headers        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dispatch_events (
    event_key          TEXT PRIMARY KEY,   -- 'meter:<meter_event_id>' | 'group:<market_group_event_id>'
    level              TEXT NOT NULL,
    event_id           TEXT NOT NULL,
    recipient_id       TEXT NOT NULL,      -- meter_id or market_group_id
    meter_ids          TEXT NOT NULL,      -- JSON list
    timeslot           TEXT NOT NULL,      -- JSON, normalized Leap timeslot
    content_sha256     TEXT NOT NULL,
    revision           INTEGER NOT NULL,
    integration_test   INTEGER NOT NULL,
    communication_test INTEGER NOT NULL,
    source             TEXT NOT NULL,
    inbox_id           INTEGER NOT NULL,
    first_received_at  TEXT NOT NULL,
    received_at        TEXT NOT NULL,      -- when the current revision was received
    updated_at         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dispatch_event_revisions (
    event_key          TEXT NOT NULL,
    revision           INTEGER NOT NULL,
    meter_ids          TEXT NOT NULL,
    timeslot           TEXT NOT NULL,
    content_sha256     TEXT NOT NULL,
    integration_test   INTEGER NOT NULL,
    communication_test INTEGER NOT NULL,
    source             TEXT NOT NULL,
    inbox_id           INTEGER NOT NULL,
    received_at        TEXT NOT NULL,
    PRIMARY KEY (event_key, revision)
);
CREATE TABLE IF NOT EXISTS site_schedules (
    meter_id       TEXT NOT NULL,
    schedule_id    TEXT NOT NULL,
    event_key      TEXT NOT NULL,
    payload        TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL,
    state          TEXT NOT NULL,          -- 'active' | 'deleted'
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (meter_id, schedule_id)
);
CREATE TABLE IF NOT EXISTS dispatch_actions (
    action_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    event_key    TEXT NOT NULL,
    meter_id     TEXT NOT NULL,
    schedule_id  TEXT NOT NULL,
    command      TEXT NOT NULL,            -- 'put' | 'delete' | 'none'
    payload      TEXT,                     -- JSON body of a PUT
    revision     INTEGER NOT NULL,
    reason_code  TEXT NOT NULL,            -- why: NEW_EVENT, EVENT_UPDATED, EVENT_CANCELLED, UNKNOWN_METER, ...
    received_at  TEXT NOT NULL,            -- when the notification behind it was received
    planned_at   TEXT NOT NULL,
    status       TEXT NOT NULL,            -- 'planned' | 'delivered' | 'failed' | 'skipped' | 'expired'
                                           -- | 'stranded' | 'superseded' (see dispatch.outbox)
    attempts     INTEGER NOT NULL DEFAULT 0,
    http_status  INTEGER,
    error        TEXT,
    finished_at  TEXT,
    run_id       TEXT,
    retry_of     INTEGER,                  -- the action this one re-sends (NULL: planned from an event)
    retry_round  INTEGER NOT NULL DEFAULT 0 -- 0 for a planned command, n for its n-th re-send
);
CREATE INDEX IF NOT EXISTS dispatch_actions_event ON dispatch_actions (event_key);
-- the outbox queries: "latest command per schedule" and "not yet delivered" stay cheap as history grows
CREATE INDEX IF NOT EXISTS dispatch_actions_schedule
    ON dispatch_actions (meter_id, schedule_id, action_id);
-- partial: only the commands not yet delivered, a handful at any time
CREATE INDEX IF NOT EXISTS dispatch_actions_undelivered ON dispatch_actions (status)
    WHERE status IN ('planned', 'failed');
CREATE TABLE IF NOT EXISTS dispatch_attempts (
    action_id    INTEGER NOT NULL,
    attempt      INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    http_status  INTEGER,
    outcome      TEXT NOT NULL,            -- 'ok' | 'retryable' | 'rejected'
    error        TEXT,
    PRIMARY KEY (action_id, attempt)
);
-- one sender per schedule at a time (dispatch.outbox): held_at is refreshed at every attempt; a lock
-- not refreshed for the retry policy's stale_after_s belongs to a dead run and is taken over
CREATE TABLE IF NOT EXISTS schedule_send_locks (
    meter_id     TEXT NOT NULL,
    schedule_id  TEXT NOT NULL,
    action_id    INTEGER NOT NULL,          -- the command being sent
    held_at      TEXT NOT NULL,
    PRIMARY KEY (meter_id, schedule_id)
);
CREATE TABLE IF NOT EXISTS sites (
    meter_id            TEXT PRIMARY KEY,
    partner_reference   TEXT,
    transmission_region TEXT,
    meter_type          TEXT,
    battery_power_kw    REAL,
    refreshed_at        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS site_nominations (
    meter_id           TEXT NOT NULL,
    program_identifier TEXT NOT NULL,
    start_time         TEXT NOT NULL,
    end_time           TEXT,               -- NULL = open-ended
    nomination_kw      REAL NOT NULL,
    PRIMARY KEY (meter_id, program_identifier, start_time)
);
"""

#: Columns added after the first release: (table, column, definition). Stores created earlier get them on
#: open (SQLite's ``CREATE TABLE IF NOT EXISTS`` leaves an existing table as it is).
ADDED_COLUMNS = (
    ("dispatch_actions", "retry_of", "INTEGER"),
    ("dispatch_actions", "retry_round", "INTEGER NOT NULL DEFAULT 0"),
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime) -> str:
    """UTC ISO-8601 text with microseconds (fixed width, so text order is time order)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass UTC-aware times")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def ops_db_path() -> Path:
    """``VPP_OPS_DB_PATH``, default ``data/ops.sqlite``."""
    return Path(settings.env("VPP_OPS_DB_PATH", DEFAULT_OPS_DB_PATH))


@dataclass(frozen=True)
class InboxRow:
    inbox_id: int
    received_at: str
    source: str
    level: str
    body: bytes
    headers: dict
    processed_at: str | None


@dataclass(frozen=True)
class SiteInfo:
    """What the planner knows about a site: battery power (kW) and its nominations."""

    meter_id: str
    battery_power_kw: float | None
    #: (program_identifier, start, end or None, nomination_kw)
    nominations: tuple[tuple[str, datetime, datetime | None, float], ...]

    def nomination_kw(self, programs: Iterable[str], at: datetime) -> float | None:
        """Sum of this site's nominations (kW) in force at ``at`` for any of ``programs``."""
        wanted = set(programs)
        values = [
            kw
            for program, start, end, kw in self.nominations
            if program in wanted and start <= at and (end is None or at < end)
        ]
        return sum(values) if values else None


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, ``synchronous=FULL``."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit is on disk before we answer 2xx, even if the machine loses power
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    def missing() -> list[tuple[str, str, str]]:
        have = {
            (table, row[1])
            for table in {t for t, _, _ in ADDED_COLUMNS}
            for row in conn.execute(f"PRAGMA table_info({table})")
        }
        return [c for c in ADDED_COLUMNS if (c[0], c[1]) not in have]

    if not missing():
        return
    conn.execute("BEGIN IMMEDIATE")  # another process may be migrating the same file: check again
    try:
        for table, column, definition in missing():
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class OpsStore:
    """The ops store at ``path`` (created with its schema on first use). Cheap to construct; each call
    opens a short-lived connection unless you hold one with :meth:`session`."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else ops_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as conn:
            conn.executescript(SCHEMA)
            _add_missing_columns(conn)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = connect(self.path)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[OpsSession]:
        """One transaction (``BEGIN IMMEDIATE`` when ``write``: serializes writers across processes)."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield OpsSession(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def writer(self) -> InboxWriter:
        """A long-lived connection for the receiver's group commits."""
        return InboxWriter(connect(self.path))

    # -- convenience reads (own short transaction) ---------------------------------------

    def max_inbox_id(self) -> int:
        with self.session(write=False) as s:
            return s.max_inbox_id()

    def pending_inbox_ids(self, after: int, limit: int = 10_000) -> list[int]:
        with self.session(write=False) as s:
            return s.pending_inbox_ids(after, limit)

    def inbox(self, after: int = 0, limit: int = 100_000) -> list[InboxRow]:
        with self.session(write=False) as s:
            return s.inbox_rows(after, None, limit)

    def dead_letters(self) -> list[dict]:
        with self.session(write=False) as s:
            return s.rows("SELECT * FROM dead_letters ORDER BY dead_letter_id")

    def known_meter_ids(self) -> frozenset[str]:
        with self.session(write=False) as s:
            return frozenset(r[0] for r in s.conn.execute("SELECT meter_id FROM sites"))

    def events(self) -> list[dict]:
        with self.session(write=False) as s:
            return s.rows("SELECT * FROM dispatch_events ORDER BY first_received_at, event_key")

    def event_revisions(self, event_key: str) -> list[dict]:
        with self.session(write=False) as s:
            return s.rows(
                "SELECT * FROM dispatch_event_revisions WHERE event_key = ? ORDER BY revision",
                (event_key,),
            )

    def actions(self, event_key: str | None = None) -> list[dict]:
        with self.session(write=False) as s:
            if event_key is None:
                return s.rows("SELECT * FROM dispatch_actions ORDER BY action_id")
            return s.rows(
                "SELECT * FROM dispatch_actions WHERE event_key = ? ORDER BY action_id",
                (event_key,),
            )

    def attempts(self) -> list[dict]:
        with self.session(write=False) as s:
            return s.rows("SELECT * FROM dispatch_attempts ORDER BY action_id, attempt")

    def undelivered_actions(self) -> list[dict]:
        with self.session(write=False) as s:
            return s.undelivered_actions()

    def recent_events(self, limit: int = 20) -> list[dict]:
        with self.session(write=False) as s:
            return s.rows(
                "SELECT * FROM dispatch_events ORDER BY received_at DESC LIMIT ?", (limit,)
            )


class InboxWriter:
    """Appends inbox rows and dead letters on one connection; each ``append_*`` batch is one commit."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def append(self, rows: list[tuple[str, Any]]) -> list[int]:
        """Write ``("inbox"|"dead_letter", dict)`` items in one transaction; return their row ids."""
        ids: list[int] = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for kind, row in rows:
                if kind == "inbox":
                    cur = self.conn.execute(
                        "INSERT INTO inbox (received_at, source, level, body, headers, body_sha256)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            row["received_at"],
                            row.get("source", "webhook"),
                            row["level"],
                            row["body"],
                            json.dumps(row["headers"], sort_keys=True),
                            row["body_sha256"],
                        ),
                    )
                else:
                    cur = self.conn.execute(
                        "INSERT INTO dead_letters (received_at, reason_code, detail, body, headers)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (
                            row["received_at"],
                            row["reason_code"],
                            row["detail"],
                            row["body"],
                            json.dumps(row["headers"], sort_keys=True),
                        ),
                    )
                ids.append(int(cur.lastrowid))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return ids

    def known_meter_ids(self) -> frozenset[str]:
        return frozenset(r[0] for r in self.conn.execute("SELECT meter_id FROM sites"))

    def close(self) -> None:
        self.conn.close()


class OpsSession:
    """Reads and writes inside one transaction (see :meth:`OpsStore.session`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: tuple = ()) -> list[dict]:
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # -- inbox -------------------------------------------------------------------------------

    def max_inbox_id(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(inbox_id), 0) FROM inbox").fetchone()[0])

    def pending_inbox_ids(self, after: int, limit: int) -> list[int]:
        """Unprocessed inbox ids above ``after``, in order."""
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT inbox_id FROM inbox WHERE inbox_id > ? AND processed_at IS NULL"
                " ORDER BY inbox_id LIMIT ?",
                (after, limit),
            )
        ]

    def inbox_rows(
        self, after: int, up_to: int | None, limit: int = 100_000, *, unprocessed: bool = False
    ) -> list[InboxRow]:
        sql = "SELECT inbox_id, received_at, source, level, body, headers, processed_at FROM inbox WHERE inbox_id > ?"
        params: list[Any] = [after]
        if up_to is not None:
            sql += " AND inbox_id <= ?"
            params.append(up_to)
        if unprocessed:
            sql += " AND processed_at IS NULL"
        sql += " ORDER BY inbox_id LIMIT ?"
        params.append(limit)
        return [
            InboxRow(r[0], r[1], r[2], r[3], bytes(r[4]), json.loads(r[5]), r[6])
            for r in self.conn.execute(sql, params)
        ]

    def insert_inbox(
        self, *, received_at: datetime, source: str, level: str, body: bytes, headers: dict
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO inbox (received_at, source, level, body, headers, body_sha256)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                iso(received_at),
                source,
                level,
                body,
                json.dumps(headers, sort_keys=True),
                hashlib.sha256(body).hexdigest(),
            ),
        )
        return int(cur.lastrowid)

    def mark_processed(self, inbox_ids: list[int], run_id: str | None, at: datetime) -> None:
        self.conn.executemany(
            "UPDATE inbox SET processed_at = ?, process_run = ? WHERE inbox_id = ?",
            [(iso(at), run_id, i) for i in inbox_ids],
        )

    # -- events ------------------------------------------------------------------------------

    def event(self, event_key: str) -> dict | None:
        found = self.rows("SELECT * FROM dispatch_events WHERE event_key = ?", (event_key,))
        return found[0] if found else None

    def save_event(self, event: dict) -> None:
        """Insert or replace the current state of an event and append its revision."""
        self.conn.execute(
            "INSERT OR REPLACE INTO dispatch_events (event_key, level, event_id, recipient_id,"
            " meter_ids, timeslot, content_sha256, revision, integration_test, communication_test,"
            " source, inbox_id, first_received_at, received_at, updated_at)"
            " VALUES (:event_key, :level, :event_id, :recipient_id, :meter_ids, :timeslot,"
            " :content_sha256, :revision, :integration_test, :communication_test, :source,"
            " :inbox_id, :first_received_at, :received_at, :updated_at)",
            event,
        )
        self.conn.execute(
            "INSERT INTO dispatch_event_revisions (event_key, revision, meter_ids, timeslot,"
            " content_sha256, integration_test, communication_test, source, inbox_id, received_at)"
            " VALUES (:event_key, :revision, :meter_ids, :timeslot, :content_sha256,"
            " :integration_test, :communication_test, :source, :inbox_id, :received_at)",
            event,
        )

    def events_touching_meters(self, meter_ids: Iterable[str]) -> list[dict]:
        """Current events whose meters include any of ``meter_ids``."""
        wanted = sorted(set(meter_ids))
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        return self.rows(
            "SELECT DISTINCT e.* FROM dispatch_events e, json_each(e.meter_ids) m"
            f" WHERE m.value IN ({marks}) ORDER BY e.event_key",
            tuple(wanted),
        )

    def all_event_hashes(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT event_key, content_sha256 FROM dispatch_events"))

    # -- schedules and actions -----------------------------------------------------------------

    def schedules_for_meters(self, meter_ids: Iterable[str]) -> list[dict]:
        wanted = sorted(set(meter_ids))
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        return self.rows(
            f"SELECT * FROM site_schedules WHERE meter_id IN ({marks}) ORDER BY meter_id, schedule_id",
            tuple(wanted),
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
        self.conn.execute(
            "INSERT OR REPLACE INTO site_schedules VALUES (?, ?, ?, ?, ?, ?, ?)",
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

    def add_action(self, action: dict) -> int:
        """Insert a site command (``retry_of``/``retry_round`` optional: a re-send of an earlier one)."""
        cur = self.conn.execute(
            "INSERT INTO dispatch_actions (event_key, meter_id, schedule_id, command, payload,"
            " revision, reason_code, received_at, planned_at, status, run_id, retry_of, retry_round)"
            " VALUES (:event_key, :meter_id, :schedule_id, :command, :payload, :revision,"
            " :reason_code, :received_at, :planned_at, :status, :run_id, :retry_of, :retry_round)",
            {
                "retry_of": None,
                "retry_round": 0,
                **action,
                "payload": json.dumps(action["payload"]) if action["payload"] else None,
            },
        )
        return int(cur.lastrowid)

    def has_skip(self, event_key: str, meter_id: str, revision: int, reason_code: str) -> bool:
        return bool(
            self.conn.execute(
                "SELECT 1 FROM dispatch_actions WHERE event_key = ? AND meter_id = ? AND revision = ?"
                " AND reason_code = ? AND status = 'skipped'",
                (event_key, meter_id, revision, reason_code),
            ).fetchall()
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
        self.conn.execute(
            "INSERT INTO dispatch_attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (action_id, attempt, iso(started_at), iso(finished_at), http_status, outcome, error),
        )
        self.conn.execute(
            "UPDATE dispatch_actions SET attempts = ?, http_status = ?, error = ? WHERE action_id = ?",
            (attempt, http_status, error, action_id),
        )

    def finish_action(self, action_id: int, status: str, at: datetime) -> None:
        self.conn.execute(
            "UPDATE dispatch_actions SET status = ?, finished_at = ? WHERE action_id = ?",
            (status, iso(at), action_id),
        )

    def unfinished_actions(self) -> list[dict]:
        return self.rows(
            "SELECT * FROM dispatch_actions WHERE status = 'planned' ORDER BY action_id"
        )

    def undelivered_actions(self) -> list[dict]:
        """PUT/DELETE commands still owed to a site controller: status ``planned`` or ``failed`` and the
        latest command for their ``(meter_id, schedule_id)`` (a later one replaces them). Each row adds
        ``last_activity_at`` (latest of planned_at, finished_at and its last attempt's finished_at) and
        ``schedule_end_time`` (the PUT's ``end_time``, or for a DELETE that of the schedule it removes;
        the contract's ``...Z`` text). Uses the partial index on undelivered statuses."""
        return self.rows(
            "SELECT a.*,"
            " max(a.planned_at, coalesce(a.finished_at, ''),"
            "     coalesce((SELECT max(t.finished_at) FROM dispatch_attempts t"
            "               WHERE t.action_id = a.action_id), '')) AS last_activity_at,"
            " coalesce(json_extract(a.payload, '$.end_time'), json_extract(s.payload, '$.end_time'))"
            "   AS schedule_end_time"
            " FROM dispatch_actions a"
            " LEFT JOIN site_schedules s ON s.meter_id = a.meter_id AND s.schedule_id = a.schedule_id"
            " WHERE a.status IN ('planned', 'failed') AND a.command IN ('put', 'delete')"
            " AND NOT EXISTS (SELECT 1 FROM dispatch_actions b WHERE b.meter_id = a.meter_id"
            "   AND b.schedule_id = a.schedule_id AND b.command IN ('put', 'delete')"
            "   AND b.action_id > a.action_id)"
            " ORDER BY a.action_id"
        )

    def take_send_lock(
        self, meter_id: str, schedule_id: str, action_id: int, now: datetime, stale_before: datetime
    ) -> bool:
        """Take the schedule's send lock for ``action_id``: free, already ours, or held since before
        ``stale_before`` (its holder stopped refreshing it). False while another sender holds it."""
        cur = self.conn.execute(
            "INSERT INTO schedule_send_locks (meter_id, schedule_id, action_id, held_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (meter_id, schedule_id) DO UPDATE"
            " SET action_id = excluded.action_id, held_at = excluded.held_at"
            " WHERE schedule_send_locks.action_id = excluded.action_id"
            " OR schedule_send_locks.held_at < ?",
            (meter_id, schedule_id, action_id, iso(now), iso(stale_before)),
        )
        return cur.rowcount > 0

    def refresh_send_lock(
        self, meter_id: str, schedule_id: str, action_id: int, now: datetime
    ) -> None:
        self.conn.execute(
            "UPDATE schedule_send_locks SET held_at = ?"
            " WHERE meter_id = ? AND schedule_id = ? AND action_id = ?",
            (iso(now), meter_id, schedule_id, action_id),
        )

    def release_send_lock(self, meter_id: str, schedule_id: str, action_id: int) -> None:
        self.conn.execute(
            "DELETE FROM schedule_send_locks WHERE meter_id = ? AND schedule_id = ? AND action_id = ?",
            (meter_id, schedule_id, action_id),
        )

    def is_superseded(self, action_id: int, meter_id: str, schedule_id: str) -> bool:
        """Whether a later PUT/DELETE was planned for the same schedule (so this one must not be sent)."""
        return bool(
            self.conn.execute(
                "SELECT 1 FROM dispatch_actions WHERE meter_id = ? AND schedule_id = ?"
                " AND command IN ('put', 'delete') AND action_id > ? LIMIT 1",
                (meter_id, schedule_id, action_id),
            ).fetchall()
        )

    # -- sites ---------------------------------------------------------------------------------

    def sites(self, meter_ids: Iterable[str]) -> dict[str, SiteInfo]:
        wanted = sorted(set(meter_ids))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        noms: dict[str, list] = {}
        for meter_id, program, start, end, kw in self.conn.execute(
            "SELECT meter_id, program_identifier, start_time, end_time, nomination_kw"
            f" FROM site_nominations WHERE meter_id IN ({marks})",
            tuple(wanted),
        ):
            noms.setdefault(meter_id, []).append((program, parse_iso(start), parse_iso(end), kw))
        return {
            meter_id: SiteInfo(meter_id, battery_kw, tuple(noms.get(meter_id, ())))
            for meter_id, battery_kw in self.conn.execute(
                f"SELECT meter_id, battery_power_kw FROM sites WHERE meter_id IN ({marks})",
                tuple(wanted),
            )
        }

    def upsert_sites(self, sites: list[dict], nominations: list[dict], at: datetime) -> None:
        """Replace the inventory of the given meters (``sites``: meter_id, partner_reference,
        transmission_region, meter_type, battery_power_kw; ``nominations``: meter_id,
        program_identifier, start_time, end_time, nomination_kw with datetimes)."""
        ids = [(s["meter_id"],) for s in sites]
        self.conn.executemany("DELETE FROM site_nominations WHERE meter_id = ?", ids)
        self.conn.executemany(
            "INSERT OR REPLACE INTO sites VALUES (?, ?, ?, ?, ?, ?)",
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
        self.conn.executemany(
            "INSERT OR REPLACE INTO site_nominations VALUES (?, ?, ?, ?, ?)",
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
