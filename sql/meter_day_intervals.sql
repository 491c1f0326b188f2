-- meter_day_intervals (temp): per meter and market-local day in [days_from, days_to], the
-- quarter hours with a reading and the quarter hours the day has (92, 96 or 100 on DST days).
--
-- Inputs: interval_day_counts, interval_reads, meter_profiles, variables days_from, days_to
-- (DATE), interval_local_timezone (the zone of interval_reads.local_date).
--
-- Meters in the interval table's own zone read the per-day counts the ingest keeps
-- (interval_day_counts, checked against interval_reads by models.check_interval_day_counts
-- before this runs): counting 70 M readings again on every run cost as much as a full scan
-- of the table. Meters of other markets convert each reading's instant to their local day
-- (the most expensive thing this pipeline could do, so only for them).

CREATE OR REPLACE TEMP TABLE meter_day_intervals AS
WITH present AS (
    SELECT p.meter_id, p.meter_no, p.tz, c.local_date, c.intervals_present
    FROM interval_day_counts c
    JOIN meter_profiles p USING (meter_id)
    WHERE p.tz = getvariable('interval_local_timezone')
        AND c.local_date BETWEEN getvariable('days_from') AND getvariable('days_to')
    UNION ALL
    SELECT
        i.meter_id,
        p.meter_no,
        p.tz,
        CAST(timezone(p.tz, i.interval_start) AS DATE) AS local_date,
        count(i.kwh) AS intervals_present
    FROM interval_reads i
    JOIN (
        SELECT * FROM meter_profiles WHERE tz <> getvariable('interval_local_timezone')
    ) p USING (meter_id)
    WHERE i.local_date BETWEEN getvariable('days_from') - 1 AND getvariable('days_to') + 1
    GROUP BY ALL
),
day_lengths AS (
    SELECT
        tz,
        local_date,
        CAST(
            epoch(timezone(tz, CAST(local_date + 1 AS TIMESTAMP)) - timezone(tz, CAST(local_date AS TIMESTAMP))) / 900
            AS INTEGER
        ) AS intervals_expected
    FROM (SELECT DISTINCT tz, local_date FROM present)
)
SELECT p.meter_id, p.meter_no, p.local_date, p.intervals_present, d.intervals_expected
FROM present p
JOIN day_lengths d USING (tz, local_date)
WHERE p.local_date BETWEEN getvariable('days_from') AND getvariable('days_to');
