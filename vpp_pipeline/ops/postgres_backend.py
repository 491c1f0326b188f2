"""The server backend: PostgreSQL through psycopg 3, for several receivers and dispatch workers on
several hosts sharing one ops store.

Locks (all transaction-scoped advisory locks, released by COMMIT/ROLLBACK or when the connection dies):

- every ``Mode.WRITE`` transaction first takes the store's *writer* lock, so planning, retry claims and
  send-lock changes run one at a time per store, exactly as SQLite's single writer does. Planning reads
  a set of events and schedules and writes commands derived from all of them; row locks could not
  cover rows that do not exist yet (a second run inserting the same new event), and SERIALIZABLE would
  turn the same conflict into retries. These transactions last milliseconds and never wait on HTTP.
- every ``Mode.APPEND`` transaction (the receivers' inbox and dead-letter commits) and every inbox insert
  in a WRITE transaction take the store's *inbox* lock: ids come from a sequence, and without the lock
  id 11 could commit before id 10, and a sensor whose cursor passed 11 would never see 10. With it,
  inbox ids become visible in id order, which is what the sensor's cursor relies on. Receivers do not
  wait for the writer lock, so a long plan never delays an acknowledgement.
- ``Mode.MIGRATE`` takes a lock of its own, so processes starting together upgrade the schema once.

Lock keys are derived from the store id (the migration key from the schema name), so two stores in one
database never contend. ``Mode.READ`` is ``REPEATABLE READ READ ONLY``: one snapshot, like SQLite.
Connections come from one psycopg_pool pool per process and URL (checked before use, so a restarted
server costs one failed check, not a failed transaction).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from vpp_pipeline.ops import errors
from vpp_pipeline.ops.sql import Mode

#: Connections per process: a dispatch run delivers to 8 meters at once, each needing one briefly.
POOL_MAX_SIZE = 12
CONNECT_TIMEOUT_S = 10

_pools: dict[tuple[int, str], ConnectionPool] = {}
_pools_lock = threading.Lock()


def advisory_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for ``parts``."""
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def masked(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _pool(url: str) -> ConnectionPool:
    key = (os.getpid(), url)  # a pool never crosses a fork
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=POOL_MAX_SIZE,
                kwargs={
                    "autocommit": True,
                    "connect_timeout": CONNECT_TIMEOUT_S,
                    "application_name": "vpp-ops",
                },
                check=ConnectionPool.check_connection,
                timeout=CONNECT_TIMEOUT_S,
                name="vpp-ops-store",
                open=True,
            )
            _pools[key] = pool
        return pool


def close_pools() -> None:
    """Close this process's pools (at exit, and in tests that drop their databases)."""
    with _pools_lock:
        pools = [p for (pid, _), p in _pools.items() if pid == os.getpid()]
        _pools.clear()
    for pool in pools:
        pool.close()


atexit.register(close_pools)


class PostgresBackend:
    kind = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url
        self.display = masked(url)

    @staticmethod
    def translate(sql: str) -> str:
        return sql

    def _unreachable(self, exc: BaseException) -> errors.OpsStoreError:
        return errors.OpsStoreError(
            errors.OPS_STORE_UNREACHABLE,
            f"cannot reach the ops store at {self.display}: {type(exc).__name__}: {exc}",
        )

    # -- connections ---------------------------------------------------------------------------

    @contextmanager
    def connection(self, *, create: bool = False) -> Iterator[psycopg.Connection]:
        try:
            pool = _pool(self.url)
            conn = pool.getconn()
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise self._unreachable(exc) from exc
        try:
            yield conn
        finally:
            pool.putconn(conn)

    def dedicated(self) -> psycopg.Connection:
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="vpp-receiver",
            )
        except psycopg.OperationalError as exc:
            raise self._unreachable(exc) from exc

    @staticmethod
    def is_broken(conn: psycopg.Connection) -> bool:
        return conn.closed or conn.broken

    # -- transactions --------------------------------------------------------------------------

    def begin(self, conn: psycopg.Connection, mode: Mode, lock_key: int | None = None) -> None:
        if mode is Mode.READ:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return
        if lock_key is None:
            conn.execute("BEGIN")
        else:
            # one round trip: a receiver's commit thread waits for the GIL after each one
            conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({int(lock_key)})")

    @staticmethod
    def lock(conn: psycopg.Connection, key: int) -> None:
        """Wait for the transaction-scoped advisory lock ``key`` (released at COMMIT/ROLLBACK)."""
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))

    @staticmethod
    def commit(conn: psycopg.Connection) -> None:
        conn.execute("COMMIT")

    @staticmethod
    def rollback(conn: psycopg.Connection) -> None:
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")

    # -- what is at the location ---------------------------------------------------------------

    def preflight(self, *, create: bool) -> bool:
        """Nothing to check before connecting (a missing store is a database without its tables)."""
        return False

    @staticmethod
    def file_identity() -> None:
        return None

    def migration_key(self, conn: psycopg.Connection) -> int:
        return advisory_key(
            "vpp-ops-migrate", conn.execute("SELECT current_schema()").fetchone()[0] or ""
        )

    @staticmethod
    def table_names(conn: psycopg.Connection) -> set[str]:
        return {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
            ).fetchall()
        }

    @staticmethod
    def add_legacy_columns(conn: psycopg.Connection) -> None:
        """No PostgreSQL store predates the versioned schema."""

    @staticmethod
    def is_missing_table(exc: BaseException) -> bool:
        """``exc`` says a table (or the schema) is not there: the store was dropped."""
        return isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName)
