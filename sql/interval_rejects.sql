-- interval_rejects: every problem found in a delivered interval row, one row per problem,
-- with Leap's error codes (vpp_pipeline/intervals/codes.py). The good rows of the same
-- delivery are kept in interval_deliveries; nothing is dropped without a row here.
--
-- Input: temp table stg_interval_checked, variable loaded_at (TIMESTAMPTZ).
-- Whole-file rejections (not a CSV file, missing header columns) are inserted by
-- vpp_pipeline/intervals/ingest.py with source_line NULL.

CREATE TABLE IF NOT EXISTS interval_rejects (
    source       VARCHAR NOT NULL,
    source_file  VARCHAR,
    source_line  INTEGER,
    column_name  VARCHAR,
    code         VARCHAR NOT NULL,
    message      VARCHAR NOT NULL,
    meter_id     VARCHAR,
    interval_start_raw VARCHAR,
    rejected_at  TIMESTAMPTZ NOT NULL
);

INSERT INTO interval_rejects
SELECT
    c.source,
    c.source_file,
    c.source_line,
    e.column_name,
    e.code,
    e.message,
    c.meter_id_raw,
    c.start_raw,
    getvariable('loaded_at')
FROM (SELECT *, unnest(errors) AS e FROM stg_interval_checked WHERE len(errors) > 0) AS c
ORDER BY c.source_file, c.source_line, e.code;
