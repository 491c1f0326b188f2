"""The operational store: every SQL statement of the dispatch path, on SQLite or PostgreSQL.

The dispatch path (receiver -> inbox -> sensor -> dispatch job -> site controllers) keeps its state here,
never in DuckDB, so no analytics work can hold a dispatch up. Callers use :class:`OpsStore` (open,
:meth:`~OpsStore.session`, :meth:`~OpsStore.writer`) and the methods of :class:`OpsSession`; they never
see a connection or a dialect.

- ``store``: locations (``VPP_OPS_DB_URL`` / ``VPP_OPS_DB_PATH``), opening, identity, transactions, the
  receivers' inbox writer;
- ``session``: the statements (inbox, events, schedules, actions, attempts, send locks, sites);
- ``schema`` and ``migrations/<dialect>/NNNN_*.sql``: the tables and their versions (read the SQLite
  files for what each table and column holds);
- ``sqlite_backend`` / ``postgres_backend``: connections, transactions and the cross-process locks;
- ``errors``: :class:`OpsStoreError` and its reason codes.

Where the SQL lives: the schema in ``migrations/<sqlite|postgres>/NNNN_*.sql`` (DDL, one file per version
and dialect, read like ``sql/``'s models: what each table holds); the statements in ``session.py``, each
beside the code that binds its parameters and reads its result (ids, row counts). They are short
parameterized single-row operations of one transaction, written once for both dialects, not models run
whole like ``sql/``: a file per statement would split each operation in two places.

Changing it: a new column or table is a new migration file for *both* dialects with the next number (never
edit a released one); a new statement is a method of :class:`OpsSession` in portable SQL (``%s``
placeholders, ``ON CONFLICT``, ``RETURNING``, no JSON functions) with a test in ``tests/test_ops_store.py``,
which runs on both backends. A transaction that writes takes the store's writer lock (``session()``), so
keep HTTP calls outside it.

Tables (times are UTC ISO-8601 text with microseconds, so text order is time order):

- ``inbox``: one row per accepted webhook delivery (raw body bytes, received time, non-secret headers) or
  per reconciliation batch; ``processed_at`` is set by the dispatch job that applied it.
- ``dead_letters``: JSON bodies that were not a Leap notification (``reason_code``), kept so nothing is lost.
- ``dispatch_events``: the current state of each meter_event_id / market_group_event_id
  (``event_key`` = ``meter:<id>`` / ``group:<id>``); ``dispatch_event_revisions`` keeps every revision and
  ``dispatch_event_meters`` the meters each event names.
- ``site_schedules``: what each site controller was last told per schedule (the desired state the
  planner diffs against).
- ``dispatch_actions`` / ``dispatch_attempts``: each planned site command and each delivery attempt
  (see ``vpp_pipeline.dispatch.outbox``); ``schedule_send_locks``: one sender per schedule.
- ``sites`` / ``site_nominations``: the site inventory the planner needs (battery kW, nominations).
- ``ops_meta`` (store id, creation time) and ``ops_schema_versions``: the store's identity and schema.
"""

from vpp_pipeline.ops.errors import OpsStoreError
from vpp_pipeline.ops.records import InboxRow, SiteInfo, iso, parse_iso, utc_now
from vpp_pipeline.ops.session import OpsSession
from vpp_pipeline.ops.sqlite_backend import BUSY_TIMEOUT_MS, connect
from vpp_pipeline.ops.store import (
    DEFAULT_OPS_DB_PATH,
    InboxWriter,
    OpsStore,
    is_postgres,
    ops_db_path,
    ops_location,
)

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DEFAULT_OPS_DB_PATH",
    "InboxRow",
    "InboxWriter",
    "OpsSession",
    "OpsStore",
    "OpsStoreError",
    "SiteInfo",
    "connect",
    "is_postgres",
    "iso",
    "ops_db_path",
    "ops_location",
    "parse_iso",
    "utc_now",
]
