-- baseline_intervals (temp): per request and quarter hour of its event window ('event') and
-- of its adjustment window ('adjustment'): the unadjusted and adjusted baseline (kWh), the
-- adjustment, and the meter's actual kWh.
--
-- Inputs: baseline_requests, eligible_days, interval_reads.
--
-- "Same interval of day" is the same market-local wall-clock start: a baseline day lacking
-- that wall-clock time (spring forward) is skipped for it; one where it repeats (fall back)
-- contributes the mean of its two readings. Instead of converting every reading to local
-- time, the wall-clock times needed are turned into UTC instants through a small table of
-- every quarter hour of the days involved (local_clock), and the readings are looked up by
-- (meter_id, interval_start).
--
-- Methods: 10-in-10 and 4-in-4 average the chosen days and multiply by the day-of ratio
-- sum(actual) / sum(unadjusted) over the adjustment window (quarter hours with a reading),
-- clamped to [clamp_low, clamp_high], 1 when the unadjusted sum is 0 or nothing was read.
-- High 4 of 5 drops the chosen day with the lowest mean load over the event window
-- (the earlier day on a tie), averages the other four and adds mean(actual - unadjusted)
-- over the adjustment window (0 when nothing was read). Meter generator output: 0.
-- Fewer chosen days than min_days: baseline NULL (insufficient_data).

CREATE OR REPLACE TEMP TABLE baseline_intervals AS
WITH needed AS (
    SELECT r.request_id, r.meter_id, r.tz, r.event_date, 'event' AS role, unnest(generate_series(
        r.window_start, r.window_end - INTERVAL 1 MICROSECOND, INTERVAL 15 MINUTE
    )) AS interval_start
    FROM baseline_requests r
    UNION ALL
    SELECT r.request_id, r.meter_id, r.tz, r.event_date, 'adjustment' AS role, unnest(generate_series(
        r.adjustment_start, r.adjustment_end - INTERVAL 1 MICROSECOND, INTERVAL 15 MINUTE
    )) AS interval_start
    FROM baseline_requests r
    WHERE r.method <> 'meter-generator-output' AND r.adjustment_end > r.adjustment_start
),
-- every quarter hour of the local days involved, per time zone: UTC start <-> local
-- wall-clock start (a fall-back day has two rows per repeated wall-clock time, a
-- spring-forward day none for the skipped hour). Small: days x 96 per zone.
zones AS (
    SELECT tz, min(event_date) AS last_day, max(lookback_days) AS lookback_days
    FROM baseline_requests GROUP BY tz
),
zone_ranges AS (
    SELECT
        z.tz,
        timezone(z.tz, CAST(min(r.event_date) - z.lookback_days - 2 AS TIMESTAMP)) AS range_start,
        timezone(z.tz, CAST(max(r.event_date) + 2 AS TIMESTAMP)) AS range_end
    FROM zones z JOIN baseline_requests r USING (tz)
    GROUP BY z.tz, z.lookback_days
),
local_clock AS (
    SELECT
        tz,
        utc_start,
        timezone(tz, utc_start) AS local_start,
        -- 0.5 for each of a fall-back day's two readings of one wall-clock time, else 1
        1.0 / count(*) OVER (PARTITION BY tz, timezone(tz, utc_start)) AS reading_weight
    FROM (
        SELECT tz, unnest(generate_series(range_start, range_end, INTERVAL 15 MINUTE)) AS utc_start
        FROM zone_ranges
    )
),
needed_local AS (
    SELECT
        n.* EXCLUDE (event_date),
        c.local_start,
        -- wall-clock position relative to the event day's local midnight (may be negative)
        c.local_start - CAST(n.event_date AS TIMESTAMP) AS wall_offset
    FROM needed n
    JOIN local_clock c ON c.tz = n.tz AND c.utc_start = n.interval_start
),
key_walls AS (
    SELECT
        n.request_id,
        n.role,
        n.interval_start,
        n.meter_id,
        n.tz,
        e.local_date AS baseline_day,
        CAST(e.local_date AS TIMESTAMP) + n.wall_offset AS wall
    FROM needed_local n
    JOIN eligible_days e USING (request_id)
),
reading_keys AS (
    SELECT k.* EXCLUDE (tz, wall), c.utc_start AS reading_start, c.reading_weight
    FROM key_walls k
    JOIN local_clock c ON c.tz = k.tz AND c.local_start = k.wall
),
-- one pass over interval_reads for both lookups: baseline-day readings and the event
-- day's own readings (baseline_day NULL)
lookups AS (
    SELECT request_id, role, interval_start, meter_id, baseline_day, reading_start, reading_weight
    FROM reading_keys
    UNION ALL
    SELECT request_id, role, interval_start, meter_id, NULL, interval_start, 1.0
    FROM needed_local
),
readings AS (
    SELECT k.request_id, k.role, k.interval_start, k.baseline_day, k.reading_weight, i.kwh
    FROM lookups k
    JOIN interval_reads i ON i.meter_id = k.meter_id AND i.interval_start = k.reading_start
),
-- Days contribute equally: a day's weights at one wall-clock time sum to 1, so
-- sum(kwh x weight) / sum(weight) is the mean over days of each day's (mean) reading.
dropped_days AS (
    SELECT request_id, baseline_day
    FROM (
        SELECT
            d.request_id,
            d.baseline_day,
            sum(d.kwh * d.reading_weight) / sum(d.reading_weight) AS mean_event_load_kwh
        FROM readings d
        SEMI JOIN (SELECT request_id FROM baseline_requests WHERE method = 'high-4-of-5') r
            ON r.request_id = d.request_id
        WHERE d.role = 'event' AND d.baseline_day IS NOT NULL
        GROUP BY ALL
    )
    QUALIFY row_number() OVER (
        PARTITION BY request_id ORDER BY mean_event_load_kwh, baseline_day
    ) = 1
),
used_days AS (
    SELECT e.*
    FROM eligible_days e
    ANTI JOIN dropped_days x ON x.request_id = e.request_id AND x.baseline_day = e.local_date
),
request_days AS (
    SELECT
        r.request_id,
        list(u.local_date ORDER BY u.local_date DESC) FILTER (WHERE u.local_date IS NOT NULL) AS eligible_days,
        count(u.local_date) AS days_used,
        coalesce(sum(u.day_intervals), 0) AS eligible_day_intervals,
        coalesce(max(u.days_found), 0) AS days_found
    FROM baseline_requests r
    LEFT JOIN used_days u USING (request_id)
    GROUP BY ALL
),
unadjusted AS (
    SELECT
        d.request_id,
        d.role,
        d.interval_start,
        sum(d.kwh * d.reading_weight) / sum(d.reading_weight) AS unadjusted_kwh
    FROM readings d
    ANTI JOIN dropped_days x ON x.request_id = d.request_id AND x.baseline_day = d.baseline_day
    WHERE d.baseline_day IS NOT NULL
    GROUP BY ALL
),
with_actuals AS (
    SELECT
        n.request_id,
        n.role,
        n.interval_start,
        n.meter_id,
        n.local_start,
        u.unadjusted_kwh,
        a.kwh AS actual_kwh
    FROM needed_local n
    LEFT JOIN unadjusted u USING (request_id, role, interval_start)
    LEFT JOIN (SELECT * FROM readings WHERE baseline_day IS NULL) a
        USING (request_id, role, interval_start)
),
adjustments AS (
    SELECT
        request_id,
        sum(actual_kwh) FILTER (WHERE role = 'adjustment' AND unadjusted_kwh IS NOT NULL) AS window_actual_kwh,
        sum(unadjusted_kwh) FILTER (WHERE role = 'adjustment' AND actual_kwh IS NOT NULL) AS window_baseline_kwh,
        avg(actual_kwh - unadjusted_kwh) FILTER (WHERE role = 'adjustment') AS window_mean_difference_kwh
    FROM with_actuals
    GROUP BY request_id
),
request_adjustments AS (
    SELECT
        r.request_id,
        r.meter_event_id,
        r.method,
        d.eligible_days,
        d.days_used,
        d.days_found,
        d.eligible_day_intervals,
        CASE
            WHEN r.method = 'meter-generator-output' THEN 'ok'
            WHEN d.days_found < r.min_days THEN 'insufficient_data'
            ELSE 'ok'
        END AS baseline_status,
        CASE
            WHEN r.method IN ('10-in-10', '4-in-4') THEN greatest(r.clamp_low, least(r.clamp_high,
                CASE
                    WHEN coalesce(a.window_baseline_kwh, 0) = 0 THEN 1.0
                    ELSE a.window_actual_kwh / a.window_baseline_kwh
                END))
        END AS adjustment_ratio,
        CASE
            WHEN r.method = 'high-4-of-5' THEN coalesce(a.window_mean_difference_kwh, 0.0)
        END AS adjustment_additive_kwh
    FROM baseline_requests r
    JOIN request_days d USING (request_id)
    LEFT JOIN adjustments a USING (request_id)
)
SELECT
    w.request_id,
    q.meter_event_id,
    w.meter_id,
    q.method,
    q.baseline_status,
    w.role,
    w.interval_start,
    w.interval_start + INTERVAL 15 MINUTE AS interval_end,
    strftime(w.local_start, '%H:%M') AS local_time,
    q.eligible_days,
    q.days_used,
    q.days_found,
    q.eligible_day_intervals,
    CASE
        WHEN q.method = 'meter-generator-output' THEN 0.0
        WHEN q.baseline_status = 'ok' THEN w.unadjusted_kwh
    END AS unadjusted_kwh,
    q.adjustment_ratio,
    q.adjustment_additive_kwh,
    CASE
        WHEN q.method = 'meter-generator-output' THEN 0.0
        WHEN q.baseline_status <> 'ok' THEN NULL
        WHEN q.method = 'high-4-of-5' THEN w.unadjusted_kwh + q.adjustment_additive_kwh
        ELSE w.unadjusted_kwh * q.adjustment_ratio
    END AS adjusted_kwh,
    w.actual_kwh
FROM with_actuals w
JOIN request_adjustments q USING (request_id);
