-- dispatch_actions: every site command the dispatch job planned (PUT / DELETE, or 'none' when skipped,
-- e.g. UNKNOWN_METER), with its delivery outcome. A re-send of an undelivered command is its own row
-- (reason RETRY_FAILED / RETRY_STRANDED) with retry_of = the original action_id and its retry_round. attempt_log is the JSON list of attempts
-- ({attempt, started_at, finished_at, http_status, outcome, error}). latency_s = seconds from the
-- notification's receipt to the end of the delivery. Input: temp table stg_dispatch_actions. Times UTC.
CREATE OR REPLACE TABLE dispatch_actions AS
SELECT
    CAST(action_id AS BIGINT)          AS action_id,
    CAST(event_key AS VARCHAR)         AS event_key,
    split_part(event_key, ':', 1)      AS level,
    split_part(event_key, ':', 2)      AS event_id,
    CAST(meter_id AS VARCHAR)          AS meter_id,
    CAST(schedule_id AS VARCHAR)       AS schedule_id,
    CAST(command AS VARCHAR)           AS command,
    CAST(target_kw AS DOUBLE)          AS target_kw,
    CAST(start_time AS TIMESTAMPTZ)    AS start_time,
    CAST(end_time AS TIMESTAMPTZ)      AS end_time,
    CAST(dry_run AS BOOLEAN)           AS dry_run,
    CAST(revision AS INTEGER)          AS revision,
    CAST(reason_code AS VARCHAR)       AS reason_code,
    CAST(retry_of AS BIGINT)           AS retry_of,
    CAST(retry_round AS INTEGER)       AS retry_round,
    CAST(status AS VARCHAR)            AS status,
    CAST(attempts AS INTEGER)          AS attempts,
    CAST(http_status AS INTEGER)       AS http_status,
    CAST(error AS VARCHAR)             AS error,
    CAST(received_at AS TIMESTAMPTZ)   AS received_at,
    CAST(planned_at AS TIMESTAMPTZ)    AS planned_at,
    CAST(finished_at AS TIMESTAMPTZ)   AS finished_at,
    epoch(CAST(finished_at AS TIMESTAMPTZ)) - epoch(CAST(received_at AS TIMESTAMPTZ)) AS latency_s,
    CAST(attempt_log AS JSON)          AS attempt_log
FROM stg_dispatch_actions
ORDER BY action_id;
