-- dispatch_events: every meter event the pipeline has ever read, one row each, for analysis
-- (baselines, performance). It accumulates: a refresh re-reads only its window
-- (VPP_DISPATCH_LOOKBACK_DAYS back, the lookahead ahead) and merges that read into the
-- stored rows; an event outside the window keeps the row it had, so its score stays and its
-- day stays excluded from later baselines (docs/methodology.md, "Event history").
--
-- Inputs: dispatch_reads (temp, sql/dispatch_reads.sql: this refresh's read, one row per
-- meter event) and the stored dispatch_events (created empty here on the first run);
-- variable now (TIMESTAMPTZ, UTC: when the refresh ran).
--
-- Merge rule, per meter_event_id:
--   * not read now: the stored row, unchanged;
--   * read now: the read replaces the stored row (latest revision wins: a later
--     cancellation or update overwrites), unless the read carries an ops-store revision
--     lower than the stored one (a stale copy; the stored row stays, last_seen_at moves);
--   * revision_count counts the versions seen: +1 when the read's content (times, kW,
--     flags, cancelled, ...) differs from the stored row's or its ops-store revision is
--     higher. Re-reading the same version changes nothing but last_seen_at, and keeps the
--     stored updated_at (search rows carry their fetch time, which is not a change).

CREATE TABLE IF NOT EXISTS dispatch_events (
    meter_event_id VARCHAR, market_group_event_id VARCHAR, market_group_id VARCHAR,
    meter_id VARCHAR, programs VARCHAR[], start_time TIMESTAMPTZ, end_time TIMESTAMPTZ,
    energy_kw DOUBLE, nomination_kw DOUBLE, committed_kw DOUBLE, priority INTEGER,
    is_voluntary BOOLEAN, performance_compensation_cap VARCHAR, dispatch_event_types VARCHAR[],
    cancelled BOOLEAN, is_test BOOLEAN, revision INTEGER, source VARCHAR, updated_at TIMESTAMPTZ
);

-- A table written before the history columns existed: adopt its rows as seen once, when
-- they were last updated (the asset treats such a table as a first run and backfills).
ALTER TABLE dispatch_events ADD COLUMN IF NOT EXISTS first_seen_at TIMESTAMPTZ;
ALTER TABLE dispatch_events ADD COLUMN IF NOT EXISTS last_seen_at TIMESTAMPTZ;
ALTER TABLE dispatch_events ADD COLUMN IF NOT EXISTS revision_count INTEGER;
ALTER TABLE dispatch_events ADD COLUMN IF NOT EXISTS first_seen_via VARCHAR;
UPDATE dispatch_events SET
    first_seen_at = coalesce(first_seen_at, updated_at),
    last_seen_at = coalesce(last_seen_at, updated_at),
    revision_count = coalesce(revision_count, 1),
    first_seen_via = coalesce(
        first_seen_via, CASE WHEN source = 'search' THEN 'search' ELSE 'ops_store' END
    )
WHERE first_seen_at IS NULL;

CREATE OR REPLACE TABLE dispatch_events AS
WITH compared AS (
    SELECT
        r.meter_event_id,
        coalesce(r.revision < s.revision, false) AS is_stale,
        s.meter_event_id IS NULL
            OR coalesce(r.revision > s.revision, false)
            OR row(
                r.market_group_event_id, r.market_group_id, r.meter_id, r.programs,
                r.start_time, r.end_time, r.energy_kw, r.nomination_kw, r.priority,
                r.is_voluntary, r.performance_compensation_cap, r.dispatch_event_types,
                r.cancelled, r.is_test
            ) IS DISTINCT FROM row(
                s.market_group_event_id, s.market_group_id, s.meter_id, s.programs,
                s.start_time, s.end_time, s.energy_kw, s.nomination_kw, s.priority,
                s.is_voluntary, s.performance_compensation_cap, s.dispatch_event_types,
                s.cancelled, s.is_test
            ) AS is_new_version,
        s.first_seen_at,
        s.first_seen_via,
        s.revision_count,
        s.updated_at AS stored_updated_at
    FROM dispatch_reads r
    LEFT JOIN dispatch_events s USING (meter_event_id)
),
refreshed AS (
    SELECT
        r.* EXCLUDE (read_via, updated_at),
        CASE WHEN c.is_new_version THEN r.updated_at ELSE c.stored_updated_at END AS updated_at,
        coalesce(c.first_seen_at, getvariable('now')) AS first_seen_at,
        getvariable('now') AS last_seen_at,
        coalesce(c.revision_count, 0) + CAST(c.is_new_version AS INTEGER) AS revision_count,
        coalesce(c.first_seen_via, r.read_via) AS first_seen_via
    FROM dispatch_reads r
    JOIN compared c USING (meter_event_id)
    WHERE NOT c.is_stale
),
kept AS (
    SELECT s.* REPLACE (
        CASE WHEN c.is_stale THEN getvariable('now') ELSE s.last_seen_at END AS last_seen_at
    )
    FROM dispatch_events s
    LEFT JOIN compared c USING (meter_event_id)
    WHERE c.meter_event_id IS NULL OR c.is_stale
),
merged AS (
    SELECT * FROM refreshed
    UNION ALL BY NAME
    SELECT * FROM kept
)
SELECT
    meter_event_id, market_group_event_id, market_group_id, meter_id, programs,
    start_time, end_time, energy_kw, nomination_kw, committed_kw, priority, is_voluntary,
    performance_compensation_cap, dispatch_event_types, cancelled, is_test, revision, source,
    updated_at,
    CAST(first_seen_at AS TIMESTAMPTZ) AS first_seen_at,
    CAST(last_seen_at AS TIMESTAMPTZ) AS last_seen_at,
    CAST(revision_count AS INTEGER) AS revision_count,
    CAST(first_seen_via AS VARCHAR) AS first_seen_via
FROM merged
ORDER BY start_time, meter_id, meter_event_id;
