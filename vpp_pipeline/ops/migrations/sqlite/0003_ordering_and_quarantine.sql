-- Ops store schema version 3 (SQLite): signed-delivery dedup and the quarantine (docs/dispatch-ordering.md).
-- webhook_deliveries: one row per verified Standard Webhooks `webhook-id` the dispatch job has applied, so a
-- replayed signed delivery (same id, inside the signature tolerance) changes nothing.
-- dispatch_quarantine: what the dispatch path could not process (an inbox row, an event, a site command),
-- with its reason; the rest of the batch went on. `released_at` is set when an operator releases it.

CREATE TABLE webhook_deliveries (
    webhook_id  TEXT PRIMARY KEY,
    inbox_id    INTEGER NOT NULL,          -- the first inbox row that carried it
    seen_at     TEXT NOT NULL
);

CREATE TABLE dispatch_quarantine (
    quarantine_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,          -- 'inbox' | 'event' | 'action'
    inbox_id       INTEGER,                -- the inbox row (kind 'inbox', or the row an event came in)
    event_key      TEXT,                   -- escaped text: a lone surrogate is stored as '\udcxx'
    action_id      INTEGER,                -- kind 'action'
    reason_code    TEXT NOT NULL,          -- e.g. NON_FINITE_VALUE, INVALID_TEXT, BAD_WINDOW, APPLY_FAILED
    detail         TEXT NOT NULL,
    quarantined_at TEXT NOT NULL,
    run_id         TEXT,
    released_at    TEXT,
    released_as    INTEGER                 -- the inbox id the released body was queued under
);
CREATE INDEX dispatch_quarantine_open ON dispatch_quarantine (kind, released_at);
