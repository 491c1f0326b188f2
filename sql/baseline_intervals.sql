-- baseline_intervals (temp): per request and quarter hour of its event window ('event') and
-- of its adjustment window ('adjustment'): the unadjusted and adjusted baseline (kWh), the
-- adjustment, and the meter's actual kWh.
--
-- Inputs: baseline_requests, eligible_days, interval_reads, variable interval_local_timezone
-- (the zone of interval_reads.local_date).
--
-- "Same interval of day" is the same market-local wall-clock start: a baseline day lacking
-- that wall-clock time (spring forward) is skipped for it; one where it repeats (fall back)
-- contributes the mean of its two readings. Readings are never converted to local time one
-- by one: a small table of every quarter hour of the days involved (local_clock) maps UTC
-- starts to wall-clock starts.
--
-- Cost: interval_reads is scanned once, joined to a small table of (meter, day) spans (one
-- per request and day it needs: its baseline days and its own event day), so the big scan
-- probes a hash table of a few hundred thousand keys instead of one key per quarter hour
-- needed; only the readings inside a span go on to be matched to the quarter hours that
-- need them, on integer keys.
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
    SELECT r.request_no, r.request_id, r.meter_id, r.tz, r.event_date, 'event' AS role,
        unnest(generate_series(
            r.window_start, r.window_end - INTERVAL 1 MICROSECOND, INTERVAL 15 MINUTE
        )) AS interval_start
    FROM baseline_requests r
    UNION ALL
    SELECT r.request_no, r.request_id, r.meter_id, r.tz, r.event_date, 'adjustment' AS role,
        unnest(generate_series(
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
local_clock AS MATERIALIZED (
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
needed_local AS MATERIALIZED (
    SELECT
        n.* EXCLUDE (event_date),
        c.local_start,
        -- wall-clock position relative to the event day's local midnight (may be negative)
        c.local_start - CAST(n.event_date AS TIMESTAMP) AS wall_offset,
        -- the same in microseconds: integer join keys are far cheaper than INTERVALs
        epoch_us(c.local_start) - epoch_us(CAST(n.event_date AS TIMESTAMP)) AS wall_offset_us
    FROM needed n
    JOIN local_clock c ON c.tz = n.tz AND c.utc_start = n.interval_start
),
-- Per request, the span of readings it needs: on the event day itself the UTC span of its
-- quarter hours; on each baseline day the same wall-clock span moved to that day.
request_spans AS (
    SELECT
        n.request_no,
        any_value(n.meter_id) AS meter_id,
        any_value(n.tz) AS tz,
        min(n.interval_start) AS first_start,
        max(n.interval_start) AS last_start,
        min(n.wall_offset) AS first_wall,
        max(n.wall_offset) AS last_wall,
        -- Whether a reading's quarter hour (and role) follows from its instant alone: no DST
        -- change inside the event-day span (wall clock and UTC advance together) and
        -- event and adjustment windows that do not overlap (each instant has one role).
        epoch_us(max(n.interval_start)) - epoch_us(min(n.interval_start))
            = max(n.wall_offset_us) - min(n.wall_offset_us)
            AND (
                any_value(r.method) = 'meter-generator-output'
                OR any_value(r.adjustment_end) <= any_value(r.window_start)
                OR any_value(r.adjustment_start) >= any_value(r.window_end)
            ) AS linear
    FROM needed_local n
    JOIN baseline_requests r USING (request_no)
    GROUP BY n.request_no
),
baseline_spans AS (
    SELECT
        s.request_no,
        s.meter_id,
        s.tz,
        s.first_start,
        s.linear,
        e.local_date AS baseline_day,
        CAST(e.local_date AS TIMESTAMP) + s.first_wall AS wall_first,
        CAST(e.local_date AS TIMESTAMP) + s.last_wall AS wall_last
    FROM request_spans s
    JOIN (SELECT r.request_no, e.local_date FROM eligible_days e JOIN baseline_requests r USING (request_id)) e
        USING (request_no)
),
-- shift_us: what moves a reading's instant onto the needed quarter hour of the same wall-clock
-- time (0 on the event day), when that is a constant; NULL where a DST change is near,
-- and such spans are matched wall clock by wall clock further down.
day_spans AS (
    SELECT
        request_no,
        meter_id,
        tz,
        CAST(NULL AS DATE) AS baseline_day,
        first_start AS span_start,
        last_start AS span_last,
        CASE WHEN linear THEN 0 END AS shift_us
    FROM request_spans
    UNION ALL
    -- A wall-clock time converts to UTC ambiguously (or not at all) across a DST change, so
    -- a span with one within a day of it is widened by an hour each side; elsewhere the
    -- conversion is exact.
    SELECT
        request_no,
        meter_id,
        tz,
        baseline_day,
        timezone(tz, wall_first) - CASE WHEN dst_free THEN INTERVAL 0 HOUR ELSE INTERVAL 1 HOUR END,
        timezone(tz, wall_last) + CASE WHEN dst_free THEN INTERVAL 0 HOUR ELSE INTERVAL 1 HOUR END,
        CASE WHEN dst_free AND linear THEN epoch_us(first_start) - epoch_us(timezone(tz, wall_first)) END
    FROM (
        SELECT
            *,
            epoch(timezone(tz, wall_last + INTERVAL 1 DAY))
                - epoch(timezone(tz, wall_first - INTERVAL 1 DAY))
                = epoch(wall_last + INTERVAL 1 DAY) - epoch(wall_first - INTERVAL 1 DAY) AS dst_free
        FROM baseline_spans
    )
),
-- keyed by the interval table's own local_date (one row per day a span touches); carries
-- the request's window bounds so a reading's role is decided in the big join itself
span_keys AS (
    SELECT
        s.*,
        epoch_us(q.window_start) AS window_start_us,
        epoch_us(q.window_end) AS window_end_us,
        q.method <> 'meter-generator-output' AS has_adjustment,
        epoch_us(q.adjustment_start) AS adjustment_start_us,
        epoch_us(q.adjustment_end) AS adjustment_end_us,
        CAST(unnest(generate_series(
            CAST(timezone(getvariable('interval_local_timezone'), s.span_start) AS DATE),
            CAST(timezone(getvariable('interval_local_timezone'), s.span_last) AS DATE),
            INTERVAL 1 DAY
        )) AS DATE) AS read_date
    FROM day_spans s
    JOIN baseline_requests q USING (request_no)
),
-- Constant shift: the needed quarter hour is reading instant + shift_us, if it is one of the
-- request's quarter hours (on the 15-minute grid, inside the event or adjustment window);
-- readings that are none of them are dropped here. Otherwise (shift_us NULL, near a DST
-- change) the reading is kept with needed_us and role NULL and matched further down.
span_reads AS MATERIALIZED (
    SELECT
        request_no,
        tz,
        baseline_day,
        reading_start,
        needed_us,
        CASE
            WHEN needed_us IS NULL THEN NULL
            WHEN needed_us >= window_start_us AND needed_us < window_end_us THEN 'event'
            ELSE 'adjustment'
        END AS role,
        kwh
    FROM (
        SELECT
            k.request_no,
            k.tz,
            k.baseline_day,
            i.interval_start AS reading_start,
            -- microseconds: integer arithmetic, not calendar arithmetic on 10^7 TIMESTAMPTZs
            epoch_us(i.interval_start) + k.shift_us AS needed_us,
            k.window_start_us,
            k.window_end_us,
            k.has_adjustment,
            k.adjustment_start_us,
            k.adjustment_end_us,
            i.kwh
        FROM interval_reads i
        JOIN span_keys k
            ON i.meter_id = k.meter_id
            AND i.local_date = k.read_date
            AND i.interval_start BETWEEN k.span_start AND k.span_last
    )
    WHERE needed_us IS NULL
        OR needed_us % 900000000 = 0 AND (
            needed_us >= window_start_us AND needed_us < window_end_us
            OR has_adjustment AND needed_us >= adjustment_start_us AND needed_us < adjustment_end_us
        )
),
-- A baseline-day reading without a constant shift matches by its wall-clock offset from its
-- day's local midnight, an event-day one (baseline_day NULL) by its instant.
readings AS MATERIALIZED (
    SELECT
        request_no,
        role,
        to_timestamp(needed_us // 1000000) AS interval_start,
        baseline_day,
        1.0 AS reading_weight,
        kwh
    FROM span_reads
    WHERE needed_us IS NOT NULL
    UNION ALL
    SELECT n.request_no, n.role, n.interval_start, r.baseline_day, c.reading_weight, r.kwh
    FROM span_reads r
    JOIN local_clock c ON c.tz = r.tz AND c.utc_start = r.reading_start
    JOIN needed_local n
        ON n.request_no = r.request_no
        AND n.wall_offset_us = epoch_us(c.local_start) - epoch_us(CAST(r.baseline_day AS TIMESTAMP))
    WHERE r.needed_us IS NULL AND r.baseline_day IS NOT NULL
    UNION ALL
    SELECT n.request_no, n.role, n.interval_start, NULL, 1.0, r.kwh
    FROM span_reads r
    JOIN needed_local n ON n.request_no = r.request_no AND n.interval_start = r.reading_start
    WHERE r.needed_us IS NULL AND r.baseline_day IS NULL
),
-- Days contribute equally: a day's weights at one wall-clock time sum to 1, so
-- sum(kwh x weight) / sum(weight) is the mean over days of each day's (mean) reading.
-- (The event day's own readings, baseline_day NULL, all have weight 1.)
dropped_days AS (
    SELECT r.request_id, d.request_no, d.baseline_day
    FROM (
        SELECT
            d.request_no,
            d.baseline_day,
            sum(d.kwh * d.reading_weight) / sum(d.reading_weight) AS mean_event_load_kwh
        FROM readings d
        SEMI JOIN (SELECT request_no FROM baseline_requests WHERE method = 'high-4-of-5') r
            ON r.request_no = d.request_no
        WHERE d.role = 'event' AND d.baseline_day IS NOT NULL
        GROUP BY ALL
    ) d
    JOIN baseline_requests r USING (request_no)
    QUALIFY row_number() OVER (
        PARTITION BY d.request_no ORDER BY d.mean_event_load_kwh, d.baseline_day
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
-- per request, role and quarter hour: the baseline-day mean (without a dropped day) and the
-- event day's own reading (at most one), in one aggregation of the readings
interval_loads AS (
    SELECT
        d.request_no,
        d.role,
        d.interval_start,
        sum(d.kwh * d.reading_weight) FILTER (WHERE d.baseline_day IS NOT NULL AND x.request_no IS NULL)
            / sum(d.reading_weight) FILTER (WHERE d.baseline_day IS NOT NULL AND x.request_no IS NULL)
            AS unadjusted_kwh,
        max(d.kwh) FILTER (WHERE d.baseline_day IS NULL) AS actual_kwh
    FROM readings d
    LEFT JOIN dropped_days x ON x.request_no = d.request_no AND x.baseline_day = d.baseline_day
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
        u.actual_kwh
    FROM needed_local n
    LEFT JOIN interval_loads u USING (request_no, role, interval_start)
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
