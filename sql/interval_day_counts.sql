-- interval_day_counts: the number of readings per meter and market-local day of
-- interval_reads (its local_date column), rebuilt whole.
--
-- The ingest keeps this table with every partition it rebuilds (sql/interval_reads.sql);
-- this full rebuild runs only when models.check_interval_day_counts finds its total out of
-- step with interval_reads' row count: a database from before the table existed, reads
-- written by other means (tests, a benchmark, a hand edit).
--
-- Input: interval_reads.

CREATE OR REPLACE TABLE interval_day_counts AS
SELECT meter_id, local_date, count(*) AS intervals_present
FROM interval_reads
GROUP BY ALL;
