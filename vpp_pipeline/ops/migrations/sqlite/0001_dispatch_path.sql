-- Ops store schema version 1 (SQLite): the dispatch path's tables as first released.
-- Rule: every statement is idempotent (IF NOT EXISTS), because stores created before the schema was
-- versioned already hold these tables and are adopted by running this file, then stamped version 1.
-- Times: UTC ISO-8601 text with microseconds ('2025-06-01T17:00:00.000000+00:00'): text order is time
-- order. JSON columns hold text. Units: kW.

CREATE TABLE IF NOT EXISTS inbox (
    inbox_id      INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a cursor never skips
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
