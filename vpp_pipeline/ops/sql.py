"""The ops store's SQL dialect and the two things every backend shares: a connection in a transaction
(:class:`Db`) and the transaction modes.

Statements are written once, for both backends, with psycopg's placeholders (``%s``, ``%(name)s``) and
only SQL that SQLite 3.35+ and PostgreSQL 12+ both run (``INSERT ... ON CONFLICT ... DO UPDATE``,
``RETURNING``, no JSON functions); the SQLite backend rewrites the placeholders to ``?`` / ``:name``.
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache
from typing import Any


class Mode(Enum):
    """What a transaction may do, and so which lock it takes first (see ``OpsStore``)."""

    #: a consistent snapshot, no writes
    READ = "read"
    #: planning, claims and every other write: one at a time per store
    WRITE = "write"
    #: inbox and dead-letter appends (the receivers): one at a time per store, beside WRITE
    APPEND = "append"
    #: schema creation and upgrades
    MIGRATE = "migrate"


_NAMED = re.compile(r"%\((\w+)\)s")


@lru_cache(maxsize=512)
def to_qmark(sql: str) -> str:
    """psycopg placeholders -> sqlite3 placeholders (``%s`` -> ``?``, ``%(x)s`` -> ``:x``)."""
    return _NAMED.sub(r":\1", sql).replace("%s", "?").replace("%%", "%")


def statements(script: str) -> list[str]:
    """The statements of a migration file: ``--`` comments dropped, split on ``;`` (the files hold
    plain DDL and INSERT ... SELECT, no string literal contains ``;`` or ``--``)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class Db:
    """One connection inside one transaction, speaking the store's dialect.

    ``execute`` returns the driver's cursor (``fetchall``, ``fetchone``, ``rowcount``)."""

    def __init__(self, conn: Any, translate) -> None:
        self.conn = conn
        self._translate = translate

    def execute(self, sql: str, params: tuple | list | dict | None = None):
        if not params:
            return self.conn.execute(self._translate(sql))
        return self.conn.execute(self._translate(sql), params)

    def executemany(self, sql: str, seq: list) -> None:
        if not seq:
            return
        cursor = self.conn.cursor()
        try:
            cursor.executemany(self._translate(sql), seq)
        finally:
            cursor.close()

    def insert_returning(self, sql: str, seq: list) -> list[int]:
        """Run an ``INSERT ... RETURNING <id>`` once per parameter set; the ids in order. psycopg
        sends them all in one pipelined round trip; sqlite3 runs them in process."""
        if not seq:
            return []
        cursor = self.conn.cursor()
        try:
            if hasattr(cursor, "results"):  # psycopg 3
                cursor.executemany(self._translate(sql), seq, returning=True)
                return [int(result.fetchone()[0]) for result in cursor.results()]
            return [int(cursor.execute(self._translate(sql), p).fetchall()[0][0]) for p in seq]
        finally:
            cursor.close()

    def rows(self, sql: str, params: tuple | list | dict | None = None) -> list[dict]:
        cursor = self.execute(sql, params)
        names = [getattr(d, "name", None) or d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def scalar(self, sql: str, params: tuple | list | dict | None = None) -> Any:
        found = self.execute(sql, params).fetchall()
        return found[0][0] if found else None
