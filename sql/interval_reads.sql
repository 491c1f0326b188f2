-- interval_reads: the best known reading per meter and 15-minute interval, for the
-- market-local days [start_date, end_date] (the partitions being materialized).
--
-- Input: table interval_deliveries; variables start_date, end_date (DATE, inclusive).
-- Correction rule: a final read beats a non-final one; among equals the later delivery
-- wins (then the later file and line). So a re-delivered interval replaces the stored one
-- when it is final or newer, and a final read is never overwritten by a non-final one.
-- Rebuilding the same days from the same deliveries gives the same rows. The same days of
-- interval_day_counts (readings per meter and day) are rebuilt with them, below.
-- Times are UTC; kwh is net consumption over the interval (export negative).

CREATE TABLE IF NOT EXISTS interval_reads (
    meter_id       VARCHAR NOT NULL,
    interval_start TIMESTAMPTZ NOT NULL,
    interval_end   TIMESTAMPTZ NOT NULL,
    kwh            DOUBLE NOT NULL,
    consumed_kwh   DOUBLE,
    generated_kwh  DOUBLE,
    final          BOOLEAN NOT NULL,
    source         VARCHAR NOT NULL,
    source_file    VARCHAR,
    loaded_at      TIMESTAMPTZ NOT NULL,
    local_date     DATE NOT NULL
);

DELETE FROM interval_reads
WHERE local_date BETWEEN getvariable('start_date') AND getvariable('end_date');

INSERT INTO interval_reads
SELECT
    meter_id, interval_start, interval_end, kwh, consumed_kwh, generated_kwh, final,
    source, source_file, loaded_at, local_date
FROM interval_deliveries
WHERE local_date BETWEEN getvariable('start_date') AND getvariable('end_date')
QUALIFY row_number() OVER (
    PARTITION BY meter_id, interval_start
    ORDER BY final DESC, delivered_at DESC, source_file DESC NULLS LAST, source_line DESC NULLS LAST
) = 1
ORDER BY local_date, meter_id, interval_start;

-- interval_day_counts: readings per meter and market-local day, kept with every rebuilt
-- partition so that the Analyze stage's completeness check (sql/meter_day_intervals.sql)
-- reads one row per meter-day instead of counting every reading on each run. Days from
-- before the table existed are filled in by the Analyze stage's check
-- (sql/interval_day_counts.sql: its totals no longer match interval_reads').
CREATE TABLE IF NOT EXISTS interval_day_counts (
    meter_id          VARCHAR NOT NULL,
    local_date        DATE NOT NULL,
    intervals_present BIGINT NOT NULL
);

DELETE FROM interval_day_counts
WHERE local_date BETWEEN getvariable('start_date') AND getvariable('end_date');

INSERT INTO interval_day_counts
SELECT meter_id, local_date, count(*) AS intervals_present
FROM interval_reads
WHERE local_date BETWEEN getvariable('start_date') AND getvariable('end_date')
GROUP BY ALL;
