-- interval_files: one row per processed landing file: its hash, when it landed, what
-- became of it (accepted / failed, where it was archived) and its row counts.
-- A file whose name and hash are already here is not loaded twice (a run that stopped
-- between commit and archive just archives it).
--
-- Input: temp table stg_interval_file_outcomes (built by vpp_pipeline/intervals/ingest.py).

CREATE TABLE IF NOT EXISTS interval_files (
    file_name      VARCHAR NOT NULL,
    sha256         VARCHAR NOT NULL,
    delivered_at   TIMESTAMPTZ NOT NULL,
    loaded_at      TIMESTAMPTZ NOT NULL,
    status         VARCHAR NOT NULL,
    rows_accepted  BIGINT NOT NULL,
    rows_rejected  BIGINT NOT NULL,
    problem        VARCHAR,
    local_dates    DATE[],
    archived_path  VARCHAR NOT NULL
);

INSERT INTO interval_files
SELECT
    file_name, sha256, delivered_at, loaded_at, status, rows_accepted, rows_rejected,
    problem, local_dates, archived_path
FROM stg_interval_file_outcomes
ORDER BY delivered_at, file_name;
