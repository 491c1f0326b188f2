"""The ops store: where it is, opening it (identity and schema checks), transactions, the receivers'
inbox writer.

Where: ``VPP_OPS_DB_URL`` (``postgresql://...``) selects PostgreSQL; otherwise the SQLite file
``VPP_OPS_DB_PATH`` (default ``data/ops.sqlite``). A location string is either a file path or such a URL.

Opening never creates a store: a missing file, a 0-byte file or a database without the store's tables is
an :class:`~vpp_pipeline.ops.errors.OpsStoreError`. Creation is explicit, by :meth:`OpsStore.initialize`
(``vpp ops-init``, and the sandbox commands that own a store: ``vpp dev``, ``vpp demo``, tests). Opening
upgrades the schema in place when the code is newer (``vpp_pipeline.ops.schema``). Each store has an id;
``VPP_OPS_STORE_ID``, when set, must match it, so a replaced store stops every process at start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vpp_pipeline import settings
from vpp_pipeline.ops import errors, schema
from vpp_pipeline.ops.records import InboxRow, iso
from vpp_pipeline.ops.session import OpsSession, insert_dead_letters, insert_inbox_rows
from vpp_pipeline.ops.sql import Db, Mode, statements
from vpp_pipeline.ops.sqlite_backend import SqliteBackend

DEFAULT_OPS_DB_PATH = "data/ops.sqlite"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def ops_location() -> str:
    """``VPP_OPS_DB_URL`` when set, else ``VPP_OPS_DB_PATH`` (default ``data/ops.sqlite``)."""
    return settings.env("VPP_OPS_DB_URL", "") or settings.env(
        "VPP_OPS_DB_PATH", DEFAULT_OPS_DB_PATH
    )


def is_postgres(location: str | Path) -> bool:
    return str(location).startswith(POSTGRES_SCHEMES)


def ops_db_path() -> Path:
    """``VPP_OPS_DB_PATH``, default ``data/ops.sqlite`` (the SQLite location only)."""
    return Path(settings.env("VPP_OPS_DB_PATH", DEFAULT_OPS_DB_PATH))


def _backend(location: str | Path):
    text = str(location)
    if is_postgres(text):
        from vpp_pipeline.ops.postgres_backend import PostgresBackend

        return PostgresBackend(text)
    if "://" in text:
        raise errors.OpsStoreError(
            errors.OPS_STORE_BAD_LOCATION,
            f"{text.split('://')[0]}:// is not an ops store location: use a SQLite file path or a"
            " postgresql:// URL",
        )
    return SqliteBackend(text)


class OpsStore:
    """An existing ops store at ``location`` (default :func:`ops_location`), checked and upgraded.

    Cheap enough to construct per use; each :meth:`session` is one short transaction on a pooled
    (PostgreSQL) or fresh (SQLite) connection. ``store_id`` and ``schema_version`` say which store it is.
    ``expect_store_id`` (default ``VPP_OPS_STORE_ID``) makes any other store an error."""

    def __init__(
        self,
        location: str | Path | None = None,
        *,
        expect_store_id: str | None = None,
        _create: bool = False,
    ) -> None:
        self.location = str(location) if location is not None else ops_location()
        self._backend = _backend(self.location)
        self.created = False
        self.identity = self._open(create=_create)
        expected = expect_store_id or settings.env("VPP_OPS_STORE_ID", "") or None
        if expected is not None and expected != self.identity.store_id:
            raise errors.OpsStoreError(
                errors.OPS_STORE_REPLACED,
                f"{self.display} holds store {self.identity.store_id}, not the expected"
                f" {expected} (VPP_OPS_STORE_ID): it was replaced or the location is wrong",
            )
        self._file = self._backend.file_identity()
        if self.backend == "postgres":
            from vpp_pipeline.ops.postgres_backend import advisory_key

            self._writer_key = advisory_key(self.store_id, "writer")
            self._inbox_key = advisory_key(self.store_id, "inbox")
        else:
            self._writer_key = self._inbox_key = None

    @classmethod
    def initialize(cls, location: str | Path | None = None) -> OpsStore:
        """Create the store at ``location`` when there is none (no file, a 0-byte file, or a database
        without any ops table), else open it; ``.created`` says which. The explicit first creation."""
        return cls(location, _create=True)

    # -- identity ------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgres``."""
        return self._backend.kind

    @property
    def display(self) -> str:
        """Where the store is, safe to print (no password)."""
        return self._backend.display

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on PostgreSQL)."""
        return getattr(self._backend, "path", None)

    @property
    def store_id(self) -> str:
        return self.identity.store_id

    @property
    def schema_version(self) -> int:
        return self.identity.schema_version

    def _open(self, *, create: bool) -> schema.StoreIdentity:
        backend = self._backend
        new_file = backend.preflight(create=create)
        latest = schema.latest_version(backend.kind)
        with backend.connection(create=new_file) as conn:
            db = Db(conn, backend.translate)
            found = schema.read_identity(db, backend.table_names(conn))
            if found is not None and found.schema_version == latest:
                return found
            backend.begin(conn, Mode.MIGRATE, backend.migration_key(conn))
            try:
                identity = self._create_or_upgrade(db, conn, create=create, latest=latest)
                backend.commit(conn)
            except BaseException:
                backend.rollback(conn)
                raise
        return identity

    def _create_or_upgrade(self, db: Db, conn: Any, *, create: bool, latest: int):
        backend = self._backend
        tables = backend.table_names(conn)  # again, under the lock: another process may have won
        found = schema.read_identity(db, tables)
        if found is None:
            if tables & schema.OPS_TABLES:
                if backend.kind != "sqlite":
                    raise errors.OpsStoreError(
                        errors.OPS_STORE_UNREADABLE,
                        f"{self.display} holds ops tables but no ops_meta: not a store this code"
                        " made; restore it from a backup or move the tables away",
                    )
                # a SQLite store from before the schema was versioned: adopt it as version 1
                first = schema.migrations("sqlite")[0]
                for statement in statements(first.sql):
                    db.execute(statement)
                backend.add_legacy_columns(conn)
                schema.create_meta(db)
                schema.stamp(db, first.version, first.name)
                version = first.version
            elif create:
                schema.create_meta(db)
                self.created = True
                version = 0
            else:
                raise errors.OpsStoreError(
                    errors.OPS_STORE_NOT_INITIALIZED,
                    f"{self.display} holds no ops store; create one with `vpp ops-init` (or point"
                    " VPP_OPS_DB_URL / VPP_OPS_DB_PATH at the existing store)",
                )
        else:
            version = found.schema_version
        if version > latest:
            raise errors.OpsStoreError(
                errors.OPS_STORE_TOO_NEW,
                f"{self.display} has schema version {version}; this code knows up to {latest}:"
                " upgrade the code (a store is never downgraded)",
            )
        schema.upgrade(db, backend.kind, version)
        identity = schema.read_identity(db, backend.table_names(conn))
        assert identity is not None
        return identity

    def verify_file(self) -> None:
        """SQLite: the path still names the file this process opened (an open connection keeps
        writing to a removed file, where nobody would ever read it)."""
        if self._file is None:
            return
        self._backend.check_not_empty()
        if self._backend.file_identity() != self._file:
            raise errors.OpsStoreError(
                errors.OPS_STORE_REPLACED,
                f"{self.display} is not the file this process opened (replaced or restored while"
                " running); restart the process to open the store that is there now",
            )

    def verify(self, db: Db | None = None) -> None:
        """Check that the location still holds this store (the same SQLite file, the same store id);
        raises :class:`OpsStoreError` (``OPS_STORE_MISSING`` / ``OPS_STORE_REPLACED``) when not.
        ``db``: check inside that transaction."""
        self.verify_file()
        query = "SELECT value FROM ops_meta WHERE key = 'store_id'"
        try:
            if db is None:
                with self.session(write=False) as s:
                    now_id = s._db.scalar(query)
            else:
                now_id = db.scalar(query)
        except Exception as exc:
            if not self._backend.is_missing_table(exc):
                raise
            raise errors.OpsStoreError(
                errors.OPS_STORE_MISSING,
                f"{self.display} no longer holds the store's tables ({type(exc).__name__}: {exc})",
            ) from exc
        if now_id != self.store_id:
            raise errors.OpsStoreError(
                errors.OPS_STORE_REPLACED,
                f"{self.display} now holds store {now_id}, not {self.store_id} that this process"
                " opened; restart the process to open the store that is there now",
            )

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, mode: Mode, lock_key: int | None) -> Iterator[tuple[Db, Any]]:
        backend = self._backend
        with backend.connection() as conn:
            backend.begin(conn, mode, lock_key)
            try:
                yield Db(conn, backend.translate), conn
                backend.commit(conn)
            except BaseException:
                backend.rollback(conn)
                raise

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[OpsSession]:
        """One transaction. ``write``: one writer per store at a time, on every backend and host
        (planning, claims, send locks); otherwise a read-only snapshot."""
        mode = Mode.WRITE if write else Mode.READ
        with self._transaction(mode, self._writer_key) as (db, conn):
            yield OpsSession(db, lambda: self._lock_inbox(conn))

    def _lock_inbox(self, conn: Any) -> None:
        if self._inbox_key is not None:
            self._backend.lock(conn, self._inbox_key)

    def writer(self) -> InboxWriter:
        """A long-lived connection for the receiver's group commits."""
        return InboxWriter(self)

    # -- convenience reads (own short transaction) ---------------------------------------

    def _read(self, fn):
        with self.session(write=False) as s:
            return fn(s)

    def max_inbox_id(self) -> int:
        return self._read(lambda s: s.max_inbox_id())

    def pending_inbox_ids(self, after: int, limit: int = 10_000) -> list[int]:
        return self._read(lambda s: s.pending_inbox_ids(after, limit))

    def inbox(self, after: int = 0, limit: int = 100_000) -> list[InboxRow]:
        return self._read(lambda s: s.inbox_rows(after, None, limit))

    def dead_letters(self) -> list[dict]:
        return self._read(lambda s: s.dead_letters())

    def known_meter_ids(self) -> frozenset[str]:
        return self._read(lambda s: s.known_meter_ids())

    def events(self) -> list[dict]:
        return self._read(
            lambda s: s.rows("SELECT * FROM dispatch_events ORDER BY first_received_at, event_key")
        )

    def event_revisions(self, event_key: str) -> list[dict]:
        return self._read(lambda s: s.event_revisions(event_key))

    def actions(self, event_key: str | None = None) -> list[dict]:
        return self._read(lambda s: s.actions(event_key))

    def attempts(self) -> list[dict]:
        return self._read(lambda s: s.attempts())

    def attempts_of(self, action_ids) -> list[dict]:
        return self._read(lambda s: s.attempts_of(action_ids))

    def undelivered_actions(self) -> list[dict]:
        return self._read(lambda s: s.undelivered_actions())

    def quarantined(self, *, include_released: bool = False) -> list[dict]:
        """The dispatch quarantine (open entries unless ``include_released``)."""
        return self._read(lambda s: s.quarantined(include_released=include_released))

    def recent_events(self, limit: int = 20) -> list[dict]:
        return self._read(lambda s: s.recent_events(limit))


class _LostBeforeCommit(Exception):
    """The writer's connection died before COMMIT was sent: nothing of the batch was stored."""


class InboxWriter:
    """The receiver's writer: appends inbox rows and dead letters on one long-lived connection, each
    :meth:`append` batch one commit, and first checks that the location still holds the store it
    opened (a removed or replaced store fails the batch, so nothing is acknowledged into it)."""

    def __init__(self, store: OpsStore) -> None:
        self.store = store
        self._conn = None

    def _connection(self):
        backend = self.store._backend
        if self._conn is not None and backend.is_broken(self._conn):
            self.close()
        if self._conn is None:
            self._conn = backend.dedicated()
        return self._conn

    def append(self, rows: list[tuple[str, Any]], *, check_write: bool = False) -> list[int]:
        """Write ``("inbox"|"dead_letter", dict)`` items in one transaction; return their row ids.
        ``check_write`` also records the time in ``ops_meta`` (a health check's proof of a write).

        A connection found dead before COMMIT was sent (a database restart or failover) is replaced
        and the batch written once more: nothing of it was stored. Dead during COMMIT, the outcome is
        unknown, so the batch fails (the sender retries; a second copy is a duplicate, which changes
        nothing)."""
        self.store.verify_file()
        try:
            return self._append_once(rows, check_write)
        except _LostBeforeCommit:
            return self._append_once(rows, check_write)

    def _append_once(self, rows: list[tuple[str, Any]], check_write: bool) -> list[int]:
        store, backend = self.store, self.store._backend
        conn = self._connection()
        committing = False
        try:
            backend.begin(conn, Mode.APPEND, store._inbox_key)
            db = Db(conn, backend.translate)
            store.verify(db)
            # one statement batch per kind (one round trip on PostgreSQL), ids back in input order
            inbox = iter(insert_inbox_rows(db, [r for k, r in rows if k == "inbox"]))
            dead = iter(insert_dead_letters(db, [r for k, r in rows if k != "inbox"]))
            ids = [next(inbox) if kind == "inbox" else next(dead) for kind, _ in rows]
            if check_write:
                db.execute(
                    "INSERT INTO ops_meta (key, value) VALUES ('last_write_check_at', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (iso(datetime.now(UTC)),),
                )
            committing = True
            backend.commit(conn)
        except Exception as exc:
            if backend.is_broken(conn):
                self.close()
                if not committing:
                    raise _LostBeforeCommit from exc
                raise
            try:
                backend.rollback(conn)
            except Exception:  # the connection is gone: reopened on the next batch
                self.close()
            raise
        return ids

    def known_meter_ids(self) -> frozenset[str]:
        conn = self._connection()
        db = Db(conn, self.store._backend.translate)
        return frozenset(r[0] for r in db.execute("SELECT meter_id FROM sites").fetchall())

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
