"""The ops store's schema: versioned, upgraded in place when a process opens the store, and the store's
identity (a random store id, kept for the store's life).

Why a small versioned table rather than a migration tool: the ops store is ~12 tables on two dialects
and its upgrades must run inside the same lock every process takes when it opens the store (several
receivers and workers start at once). A migration is one plain SQL file per dialect and version in
``migrations/<sqlite|postgres>/NNNN_name.sql``, applied in order in one transaction under that lock and
recorded in ``ops_schema_versions``; ``ops_meta`` holds the store id and creation time. Alembic (which
Dagster brings) would add an environment script, a second version table and Python migration modules
for the same result.

Rules: a released migration file never changes (add the next number instead); both dialects have the
same versions; a store whose version is newer than this code refuses to open (``OPS_STORE_TOO_NEW``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources

from vpp_pipeline.ops import errors
from vpp_pipeline.ops.records import iso
from vpp_pipeline.ops.sql import Db, statements

#: The tables of the dispatch path (a database holding some of them is, or was, an ops store).
OPS_TABLES = frozenset(
    {
        "inbox",
        "dead_letters",
        "dispatch_events",
        "dispatch_event_revisions",
        "dispatch_event_meters",
        "site_schedules",
        "dispatch_actions",
        "dispatch_attempts",
        "schedule_send_locks",
        "sites",
        "site_nominations",
        "webhook_deliveries",
        "dispatch_quarantine",
    }
)

META_DDL = (
    "CREATE TABLE ops_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE ops_schema_versions (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " applied_at TEXT NOT NULL)",
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class StoreIdentity:
    """Who a store is: ``store_id`` (random, set at creation), its schema version, when it was made."""

    store_id: str
    schema_version: int
    created_at: str


@cache
def migrations(kind: str) -> tuple[Migration, ...]:
    """The migrations of dialect ``kind`` (``sqlite`` | ``postgres``), in version order."""
    folder = resources.files("vpp_pipeline.ops").joinpath("migrations", kind)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"ops store migrations for {kind} are not numbered 1..n: {found}")
    return tuple(found)


def latest_version(kind: str) -> int:
    return migrations(kind)[-1].version


def read_identity(db: Db, tables: set[str]) -> StoreIdentity | None:
    """The identity recorded in the store, or None when it has no ``ops_meta``."""
    if "ops_meta" not in tables:
        return None
    meta = dict(db.execute("SELECT key, value FROM ops_meta").fetchall())
    version = db.scalar("SELECT max(version) FROM ops_schema_versions") or 0
    if "store_id" not in meta:
        raise errors.OpsStoreError(errors.OPS_STORE_UNREADABLE, "ops_meta holds no store_id")
    return StoreIdentity(meta["store_id"], int(version), meta.get("created_at", ""))


def create_meta(db: Db) -> None:
    """Give a new (or adopted) store its identity: a fresh store id."""
    for ddl in META_DDL:
        db.execute(ddl)
    db.executemany(
        "INSERT INTO ops_meta (key, value) VALUES (%s, %s)",
        [("store_id", str(uuid.uuid4())), ("created_at", iso(datetime.now(UTC)))],
    )


def upgrade(db: Db, kind: str, from_version: int) -> int:
    """Apply every migration above ``from_version`` (inside the caller's transaction)."""
    version = from_version
    for migration in migrations(kind):
        if migration.version <= from_version:
            continue
        for statement in statements(migration.sql):
            db.execute(statement)
        db.execute(
            "INSERT INTO ops_schema_versions (version, name, applied_at) VALUES (%s, %s, %s)",
            (migration.version, migration.name, iso(datetime.now(UTC))),
        )
        version = migration.version
    return version


def stamp(db: Db, version: int, name: str) -> None:
    """Record ``version`` as applied without running it (an adopted pre-versioning store)."""
    db.execute(
        "INSERT INTO ops_schema_versions (version, name, applied_at) VALUES (%s, %s, %s)",
        (version, name, iso(datetime.now(UTC))),
    )
