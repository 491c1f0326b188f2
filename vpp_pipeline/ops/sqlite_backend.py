"""The embedded backend: one SQLite file (WAL, ``synchronous=FULL``).

Every write transaction is ``BEGIN IMMEDIATE``: SQLite has one writer per file, so planning, claims,
send-lock changes and inbox appends from any number of processes on this host queue on the file's
write lock (with a busy timeout) instead of failing, and inbox ids are assigned in commit order.
Connections other than the one that creates the store open the file with ``mode=rw``: a file that has
gone is an error, never a new empty database.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from vpp_pipeline.ops import errors
from vpp_pipeline.ops.sql import Mode, to_qmark

BUSY_TIMEOUT_MS = 30_000

#: Columns added to version 1 before the schema was versioned: stores from then gain them on adoption.
LEGACY_ADDED_COLUMNS = (
    ("dispatch_actions", "retry_of", "INTEGER"),
    ("dispatch_actions", "retry_round", "INTEGER NOT NULL DEFAULT 0"),
)


def connect(path: str | Path, *, create: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, ``synchronous=FULL``.
    Without ``create`` a missing file raises instead of becoming an empty database."""
    uri = f"file:{quote(str(Path(path).absolute()))}?mode={'rwc' if create else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.OperationalError as exc:
        raise errors.OpsStoreError(errors.OPS_STORE_MISSING, f"cannot open {path}: {exc}") from exc
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit is on disk before we answer 2xx, even if the machine loses power
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SqliteBackend:
    kind = "sqlite"
    translate = staticmethod(to_qmark)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.display = str(self.path)

    # -- connections ---------------------------------------------------------------------------

    @contextmanager
    def connection(self, *, create: bool = False) -> Iterator[sqlite3.Connection]:
        conn = connect(self.path, create=create)
        try:
            yield conn
        finally:
            conn.close()

    def dedicated(self) -> sqlite3.Connection:
        return connect(self.path)

    @staticmethod
    def is_broken(conn: sqlite3.Connection) -> bool:
        return False

    # -- transactions --------------------------------------------------------------------------

    @staticmethod
    def begin(conn: sqlite3.Connection, mode: Mode, lock_key: int | None = None) -> None:
        # the file's write lock serializes WRITE, APPEND and MIGRATE alike; lock_key is not needed
        conn.execute("BEGIN" if mode is Mode.READ else "BEGIN IMMEDIATE")

    @staticmethod
    def lock(conn: sqlite3.Connection, key: int) -> None:
        """Nothing to do: a SQLite write transaction already excludes every other writer."""

    @staticmethod
    def commit(conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    @staticmethod
    def rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    # -- what is at the location ---------------------------------------------------------------

    def preflight(self, *, create: bool) -> bool:
        """Check the file before any connection touches it; True when a new store may be created
        here (``create`` and no file, or a 0-byte one)."""
        if not self.path.exists():
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return True
            hint = "its folder is gone" if not self.path.parent.exists() else "no such file"
            raise errors.OpsStoreError(
                errors.OPS_STORE_MISSING,
                f"no ops store at {self.path} ({hint}); create one with `vpp ops-init`,"
                " or point VPP_OPS_DB_PATH / VPP_OPS_DB_URL at the existing store",
            )
        if self.path.stat().st_size == 0:
            if create:
                return True
            self.check_not_empty()
        return False

    def check_not_empty(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError as exc:
            raise errors.OpsStoreError(
                errors.OPS_STORE_MISSING, f"the ops store file {self.path} was removed"
            ) from exc
        if size == 0:
            raise errors.OpsStoreError(
                errors.OPS_STORE_EMPTY,
                f"the ops store file {self.path} is empty (0 bytes): it was truncated or replaced;"
                " restore it from a backup (its inbox holds acknowledged deliveries), or run"
                " `vpp ops-init` to start an empty store on purpose",
            )

    @staticmethod
    def migration_key(conn: sqlite3.Connection) -> None:
        """No key: ``BEGIN IMMEDIATE`` already makes a migration the only writer."""

    def file_identity(self) -> tuple[int, int]:
        """(device, inode) of the file now: another value than at open means it was replaced."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError as exc:
            raise errors.OpsStoreError(
                errors.OPS_STORE_MISSING, f"the ops store file {self.path} was removed"
            ) from exc
        return (st.st_dev, st.st_ino)

    def table_names(self, conn: sqlite3.Connection) -> set[str]:
        try:
            return {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as exc:  # "file is not a database"
            raise errors.OpsStoreError(
                errors.OPS_STORE_UNREADABLE, f"{self.path} is not a SQLite ops store: {exc}"
            ) from exc

    @staticmethod
    def add_legacy_columns(conn: sqlite3.Connection) -> None:
        """Give a store written before the schema was versioned the columns added since."""
        have = {
            (table, row[1])
            for table in {t for t, _, _ in LEGACY_ADDED_COLUMNS}
            for row in conn.execute(f"PRAGMA table_info({table})")
        }
        for table, column, definition in LEGACY_ADDED_COLUMNS:
            if (table, column) not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    @staticmethod
    def is_missing_table(exc: BaseException) -> bool:
        """``exc`` says a table is not there (an emptied file reads as an empty database)."""
        return isinstance(exc, sqlite3.DatabaseError) and (
            "no such table" in str(exc) or "not a database" in str(exc) or "malformed" in str(exc)
        )
