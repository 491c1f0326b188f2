-- baseline_intervals (temp view): per request and quarter hour of its event window: the
-- unadjusted and adjusted baseline (kWh), the adjustment, and the meter's actual kWh.
-- A view, not a table: its one reader (baselines or baseline_accuracy) computes it once
-- and writes the result straight into its own table.
--
-- Inputs: baseline_requests, eligible_days, interval_reads, dispatch_events,
-- measurement_parameters, variable interval_local_timezone
-- (the zone of interval_reads.local_date).
--
-- "Same interval of day" is the same market-local wall-clock start: a baseline day lacking
-- that wall-clock time (spring forward) is skipped for it; one where it repeats (fall back)
-- contributes the mean of its two readings. Readings are never converted to local time one
-- by one: a small table of every quarter hour of the days involved (local_clock) maps UTC
-- starts to wall-clock starts.
--
-- Methods: 10-in-10 and 4-in-4 average the chosen days and multiply by the day-of ratio
-- sum(actual) / sum(unadjusted) over the adjustment window (quarter hours with a reading),
-- clamped to [clamp_low, clamp_high], 1 when the unadjusted sum is 0 or nothing was read.
-- High 4 of 5 drops the chosen day with the lowest mean load over the event window
-- (the earlier day on a tie), averages the other four and adds mean(actual - unadjusted)
-- over the adjustment window (0 when nothing was read). Meter generator output: 0.
-- Fewer chosen days than min_days: baseline NULL (insufficient_data).
--
-- Placebo events (per request, repeated on each of its rows): placebo_days and the mean and
-- sample standard deviation of the baseline's error (baseline - actual, kWh over the event
-- window) when each used baseline day is scored as a pseudo event against the other used
-- days (same window, wall-clock time, method and adjustment); NULL with fewer than 2 days.
-- adjustment_overlaps_event: the adjustment window overlaps another non-cancelled, non-test
-- dispatch of the meter or the adjustment_rebound_hours after it; flag_baseline_kwh is then
-- the unadjusted baseline (and the placebo events go unadjusted too), else adjusted_kwh.
--
-- Cost: interval_reads is scanned once and joined to a small table of spans: per request,
-- window (event or adjustment) and day (its event day and each chosen baseline day), the
-- readings it needs, with a constant shift that moves a reading's instant onto the event
-- day's quarter hour of the same wall-clock time. The join's output goes straight into one
-- aggregation per request, role and quarter hour; no per-reading table is stored. Near a
-- DST change a span is cut into one span per reading (its own shift and weight), so the
-- same join serves it. Spans are in epoch microseconds, placed by each zone's UTC offset per
-- local day (zone_days) rather than a time-zone conversion per span.

CREATE OR REPLACE TEMP VIEW baseline_intervals AS
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
    SELECT tz, max(lookback_days) AS lookback_days
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
        n.role = 'event' AS is_event,
        -- microseconds: integer keys are far cheaper to join and group than TIMESTAMPTZs
        epoch_us(n.interval_start) AS needed_us,
        c.local_start,
        -- wall-clock position relative to the event day's local midnight (may be negative)
        c.local_start - CAST(n.event_date AS TIMESTAMP) AS wall_offset,
        epoch_us(c.local_start) - epoch_us(CAST(n.event_date AS TIMESTAMP)) AS wall_offset_us
    FROM needed n
    JOIN local_clock c ON c.tz = n.tz AND c.utc_start = n.interval_start
),
-- Per request and role (event or adjustment window), the span of readings it needs: on the
-- event day itself the UTC span of its quarter hours; on each baseline day the same
-- wall-clock span moved to that day. A reading inside both windows is found by both spans.
request_spans AS (
    SELECT
        request_no,
        is_event,
        any_value(meter_id) AS meter_id,
        any_value(tz) AS tz,
        min(interval_start) AS first_start,
        max(interval_start) AS last_start,
        min(local_start) AS first_local,
        max(local_start) AS last_local,
        min(wall_offset) AS first_wall,
        max(wall_offset) AS last_wall,
        -- no DST change inside the event-day span: wall clock and UTC advance together
        epoch_us(max(interval_start)) - epoch_us(min(interval_start))
            = max(wall_offset_us) - min(wall_offset_us) AS linear
    FROM needed_local
    GROUP BY request_no, is_event
),
-- Per zone and local day: its UTC offset (local - UTC, microseconds) and whether the offset
-- is the same on every quarter hour of the two days before and after it as well (quiet).
-- A wall-clock span well inside such five days converts to UTC by subtracting the offset:
-- no time-zone conversion per span (they cost ~0.5 us each, and there are ~600 k spans).
zone_days AS (
    SELECT
        tz,
        local_day,
        min_offset_us AS offset_us,
        count(*) OVER five_days = 5
            AND min(min_offset_us) OVER five_days = max(max_offset_us) OVER five_days AS quiet
    FROM (
        SELECT
            tz,
            CAST(local_start AS DATE) AS local_day,
            min(epoch_us(local_start) - epoch_us(utc_start)) AS min_offset_us,
            max(epoch_us(local_start) - epoch_us(utc_start)) AS max_offset_us
        FROM local_clock
        GROUP BY ALL
    )
    WINDOW five_days AS (
        PARTITION BY tz ORDER BY local_day
        RANGE BETWEEN INTERVAL 2 DAY PRECEDING AND INTERVAL 2 DAY FOLLOWING
    )
),
baseline_spans AS (
    SELECT
        *,
        -- A wall-clock span converts to UTC by one constant offset when no clock change
        -- falls within three hours of it (more than any DST shift in use); checked on the
        -- zone's clock only when the span is not well inside five quiet days.
        CASE
            WHEN quiet_fit THEN linear
            ELSE linear AND epoch(timezone(tz, wall_last + INTERVAL 3 HOUR))
                - epoch(timezone(tz, wall_first - INTERVAL 3 HOUR))
                = epoch(wall_last + INTERVAL 3 HOUR) - epoch(wall_first - INTERVAL 3 HOUR)
        END AS shiftable
    FROM (
        SELECT
            s.request_no,
            s.is_event,
            s.meter_id,
            s.tz,
            s.first_start,
            s.linear,
            e.local_date AS baseline_day,
            CAST(e.local_date AS TIMESTAMP) + s.first_wall AS wall_first,
            CAST(e.local_date AS TIMESTAMP) + s.last_wall AS wall_last,
            z.offset_us,
            coalesce(
                z.quiet
                AND CAST(e.local_date AS TIMESTAMP) + s.first_wall - INTERVAL 3 HOUR
                    >= CAST(e.local_date - 2 AS TIMESTAMP)
                AND CAST(e.local_date AS TIMESTAMP) + s.last_wall + INTERVAL 3 HOUR
                    < CAST(e.local_date + 3 AS TIMESTAMP),
                false
            ) AS quiet_fit
        FROM request_spans s
        JOIN eligible_days e USING (request_no)
        LEFT JOIN zone_days z ON z.tz = s.tz AND z.local_day = e.local_date
    )
),
-- Spans in microseconds since the epoch (UTC); shift_us moves a reading's instant onto the
-- needed quarter hour of the same wall-clock time (0 on the event day); every reading a span
-- finds is needed, in the span's role. first_local/last_local: the span's wall-clock ends in
-- the market zone, for the interval table's local_date (below) without a conversion when
-- that is the same zone.
spans AS (
    SELECT
        request_no, is_event, meter_id, tz, CAST(NULL AS DATE) AS baseline_day,
        epoch_us(first_start) AS span_start_us, epoch_us(last_start) AS span_last_us,
        0 AS shift_us, 1.0 AS reading_weight, first_local, last_local
    FROM request_spans
    WHERE linear
    UNION ALL
    SELECT
        request_no, is_event, meter_id, tz, baseline_day,
        span_start_us, span_start_us + epoch_us(wall_last) - epoch_us(wall_first),
        epoch_us(first_start) - span_start_us, 1.0, wall_first, wall_last
    FROM (
        SELECT
            *,
            CASE
                WHEN quiet_fit THEN epoch_us(wall_first) - offset_us
                ELSE epoch_us(timezone(tz, wall_first))
            END AS span_start_us
        FROM baseline_spans
        WHERE shiftable
    )
    UNION ALL
    -- event day across a DST change: one span per quarter hour, its own reading
    SELECT
        n.request_no, n.is_event, n.meter_id, n.tz, NULL, n.needed_us, n.needed_us, 0, 1.0,
        n.local_start, n.local_start
    FROM needed_local n
    SEMI JOIN (SELECT * FROM request_spans WHERE NOT linear) s USING (request_no, is_event)
    UNION ALL
    -- baseline day near a DST change: one span per reading at the same wall-clock time,
    -- none where it was skipped (spring forward), two of weight 0.5 where it repeated
    SELECT
        n.request_no, n.is_event, n.meter_id, b.tz, b.baseline_day,
        epoch_us(c.utc_start), epoch_us(c.utc_start),
        n.needed_us - epoch_us(c.utc_start), c.reading_weight, c.local_start, c.local_start
    FROM baseline_spans b
    JOIN needed_local n USING (request_no, is_event)
    JOIN local_clock c
        ON c.tz = b.tz AND c.local_start = CAST(b.baseline_day AS TIMESTAMP) + n.wall_offset
    WHERE NOT b.shiftable
),
-- keyed by the interval table's own local_date (one row per day a span touches); in the
-- market zone that is the wall-clock date, elsewhere a conversion
span_keys AS (
    SELECT
        * EXCLUDE (first_local, last_local, read_first, read_last),
        CAST(unnest(generate_series(read_first, read_last, INTERVAL 1 DAY)) AS DATE) AS read_date
    FROM (
        SELECT
            s.*,
            q.method = 'high-4-of-5' AS drops_a_day,
            CASE
                WHEN s.tz = getvariable('interval_local_timezone') THEN CAST(s.first_local AS DATE)
                ELSE CAST(timezone(getvariable('interval_local_timezone'), make_timestamp(s.span_start_us)
                    AT TIME ZONE 'UTC') AS DATE)
            END AS read_first,
            CASE
                WHEN s.tz = getvariable('interval_local_timezone') THEN CAST(s.last_local AS DATE)
                ELSE CAST(timezone(getvariable('interval_local_timezone'), make_timestamp(s.span_last_us)
                    AT TIME ZONE 'UTC') AS DATE)
            END AS read_last
        FROM spans s
        JOIN baseline_requests q USING (request_no)
    )
),
-- the readings each request needs, with the quarter hour (needed_us) and role they serve
-- (interval_reads starts are whole quarter hours: the interval checks reject others)
span_reads AS (
    SELECT
        k.request_no,
        k.is_event,
        epoch_us(i.interval_start) + k.shift_us AS needed_us,
        k.baseline_day,
        k.drops_a_day,
        k.reading_weight,
        i.kwh
    FROM interval_reads i
    JOIN span_keys k
        ON i.meter_id = k.meter_id
        AND i.local_date = k.read_date
        AND epoch_us(i.interval_start) BETWEEN k.span_start_us AND k.span_last_us
),
-- Per request, role and quarter hour, in one pass over the readings: the weighted sum over
-- baseline days (a day's weights at one wall-clock time sum to 1, so sum(kwh x weight) /
-- sum(weight) is the mean over days of each day's reading) and the event day's own reading
-- (at most one). High 4 of 5 keeps its days apart (day_kept), to drop one day further down.
-- The same pass also sums each baseline day's readings per request and role (the second
-- grouping set, per_day): the placebo events below need one figure per day and window.
day_loads AS MATERIALIZED (
    SELECT
        request_no,
        is_event,
        needed_us,
        day_kept,
        baseline_day,
        grouping(needed_us) = 1 AS per_day,
        sum(kwh * reading_weight) FILTER (WHERE baseline_day IS NOT NULL) AS days_kwh,
        sum(reading_weight) FILTER (WHERE baseline_day IS NOT NULL) AS days_weight,
        max(kwh) FILTER (WHERE baseline_day IS NULL) AS actual_kwh
    FROM (SELECT *, CASE WHEN drops_a_day THEN baseline_day END AS day_kept FROM span_reads)
    GROUP BY GROUPING SETS ((request_no, is_event, needed_us, day_kept), (request_no, is_event, baseline_day))
),
dropped_days AS (
    SELECT r.request_id, d.request_no, d.day_kept AS baseline_day
    FROM (
        SELECT request_no, day_kept, sum(days_kwh) / sum(days_weight) AS mean_event_load_kwh
        FROM day_loads
        WHERE is_event AND day_kept IS NOT NULL AND NOT per_day
        GROUP BY ALL
    ) d
    JOIN baseline_requests r USING (request_no)
    QUALIFY row_number() OVER (PARTITION BY d.request_no ORDER BY d.mean_event_load_kwh, d.day_kept) = 1
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
-- Placebo events: each used baseline day is itself scored as if it were the event day, with
-- the same window, wall-clock time, method and adjustment, its baseline being the mean of
-- the request's other used days (leave one out). Its error (baseline - actual, kWh over the
-- window) is what the baseline "delivers" on a day without an event: the meter's own
-- baseline noise. Only whole-window sums per day are needed (window_kwh, adjustment_kwh):
-- the mean of the other days' sums is the sum of their per-quarter-hour mean.
window_lengths AS (
    SELECT
        request_no,
        count(*) FILTER (WHERE is_event) AS window_intervals,
        count(*) FILTER (WHERE NOT is_event) AS adjustment_intervals
    FROM needed_local
    GROUP BY request_no
),
placebo_days AS (
    SELECT
        d.request_no,
        d.baseline_day,
        sum(d.days_kwh) FILTER (WHERE d.is_event) AS window_kwh,
        sum(d.days_kwh) FILTER (WHERE NOT d.is_event) AS adjustment_kwh
    FROM day_loads d
    SEMI JOIN used_days u ON u.request_no = d.request_no AND u.local_date = d.baseline_day
    WHERE d.per_day
    GROUP BY ALL
),
-- Requests whose adjustment window overlaps another dispatch of the meter (or the
-- adjustment_rebound_hours after it, when curtailed loads recover): the day-of adjustment
-- measures the response to that dispatch, not the day's load. Settlement keeps the rule's
-- adjustment; the response-judging figures (flag_baseline_kwh, the placebo events) go
-- without it for such requests.
adjustment_overlaps AS (
    SELECT DISTINCT r.request_no
    FROM baseline_requests r
    JOIN measurement_parameters p ON p.program_identifier = r.param_key
    JOIN dispatch_events e
        ON e.meter_id = r.meter_id
        AND e.meter_event_id IS DISTINCT FROM r.meter_event_id
        AND NOT e.cancelled
        AND NOT e.is_test
        AND e.start_time < r.adjustment_end
        AND e.end_time + to_seconds(CAST(p.adjustment_rebound_hours * 3600 AS BIGINT)) > r.adjustment_start
    WHERE r.method <> 'meter-generator-output'
),
-- The adjustment the response-judging figures use. Without one when the adjustment window
-- overlaps another dispatch (above), and at a site with a battery behind its meter: such a
-- site moves energy around an event (it holds its charge through the hours before to
-- discharge in the event, or recharges after one), so its load in the adjustment window on
-- an event day is not the day's load without the event, and the ratio or offset learnt
-- there carries that shift into the baseline. Placebo days, which have no event, cannot see
-- it; measured on the sandbox, it read such sites' delivery 0.08-0.14 of committed kW too
-- high, and their bounds held the truth for 66-77 % of events (docs/flags.md section 1).
flag_adjustments AS (
    SELECT
        r.request_no,
        CASE
            WHEN r.method = 'meter-generator-output' THEN 'none: meter generator output'
            WHEN x.request_no IS NOT NULL THEN 'none: overlaps another dispatch'
            WHEN r.has_behind_meter_battery THEN 'none: behind-the-meter battery'
            WHEN r.method = 'high-4-of-5' THEN 'additive'
            ELSE 'ratio'
        END AS flag_adjustment,
        r.method <> 'meter-generator-output'
            AND (x.request_no IS NOT NULL OR r.has_behind_meter_battery) AS flag_unadjusted,
        x.request_no IS NOT NULL AS adjustment_overlaps_event
    FROM baseline_requests r
    LEFT JOIN adjustment_overlaps x USING (request_no)
),
placebo_errors AS (
    SELECT
        p.request_no,
        fa.flag_unadjusted,
        r.method,
        r.clamp_low,
        r.clamp_high,
        w.window_intervals,
        w.adjustment_intervals,
        p.window_kwh,
        p.adjustment_kwh,
        (sum(p.window_kwh) OVER req - p.window_kwh) / (count(*) OVER req - 1) AS others_window_kwh,
        (sum(p.adjustment_kwh) OVER req - p.adjustment_kwh) / (count(*) OVER req - 1) AS others_adjustment_kwh,
        count(*) OVER req AS days
    FROM placebo_days p
    JOIN baseline_requests r USING (request_no)
    JOIN window_lengths w USING (request_no)
    JOIN flag_adjustments fa USING (request_no)
    WINDOW req AS (PARTITION BY p.request_no)
),
placebo_stats AS (
    SELECT
        request_no,
        count(error_kwh) AS placebo_days,
        avg(error_kwh) AS placebo_error_mean_kwh,
        stddev_samp(error_kwh) AS placebo_error_sd_kwh
    FROM (
        SELECT
            request_no,
            CASE
                WHEN days < 2 OR window_kwh IS NULL THEN NULL
                WHEN flag_unadjusted THEN others_window_kwh - window_kwh
                WHEN method IN ('10-in-10', '4-in-4') THEN others_window_kwh * greatest(clamp_low, least(clamp_high,
                    CASE
                        WHEN coalesce(others_adjustment_kwh, 0) = 0 OR adjustment_kwh IS NULL THEN 1.0
                        ELSE adjustment_kwh / others_adjustment_kwh
                    END)) - window_kwh
                WHEN method = 'high-4-of-5' THEN others_window_kwh - window_kwh + window_intervals
                    * coalesce((adjustment_kwh - others_adjustment_kwh) / nullif(adjustment_intervals, 0), 0.0)
            END AS error_kwh
        FROM placebo_errors
    )
    GROUP BY request_no
),
-- the same per request, role and quarter hour only, without the dropped day
interval_loads AS (
    SELECT
        d.request_no,
        d.is_event,
        d.needed_us,
        sum(d.days_kwh) FILTER (WHERE x.baseline_day IS NULL)
            / sum(d.days_weight) FILTER (WHERE x.baseline_day IS NULL) AS unadjusted_kwh,
        max(d.actual_kwh) AS actual_kwh
    FROM (SELECT * EXCLUDE (baseline_day) FROM day_loads WHERE NOT per_day) d
    LEFT JOIN dropped_days x ON x.request_no = d.request_no AND x.baseline_day = d.day_kept
    GROUP BY ALL
),
with_actuals AS MATERIALIZED (
    SELECT
        n.request_id,
        n.is_event,
        n.interval_start,
        n.meter_id,
        n.local_start,
        u.unadjusted_kwh,
        u.actual_kwh
    FROM needed_local n
    LEFT JOIN interval_loads u USING (request_no, is_event, needed_us)
),
adjustments AS (
    SELECT
        request_id,
        sum(actual_kwh) FILTER (WHERE unadjusted_kwh IS NOT NULL) AS window_actual_kwh,
        sum(unadjusted_kwh) FILTER (WHERE actual_kwh IS NOT NULL) AS window_baseline_kwh,
        avg(actual_kwh - unadjusted_kwh) AS window_mean_difference_kwh
    FROM with_actuals
    WHERE NOT is_event
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
        END AS adjustment_additive_kwh,
        fa.adjustment_overlaps_event,
        fa.flag_adjustment,
        fa.flag_unadjusted,
        coalesce(ps.placebo_days, 0) AS placebo_days,
        ps.placebo_error_mean_kwh,
        ps.placebo_error_sd_kwh
    FROM baseline_requests r
    JOIN request_days d USING (request_id)
    LEFT JOIN adjustments a USING (request_id)
    LEFT JOIN placebo_stats ps USING (request_no)
    JOIN flag_adjustments fa USING (request_no)
)
SELECT
    w.request_id,
    q.meter_event_id,
    w.meter_id,
    q.method,
    q.baseline_status,
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
    w.actual_kwh,
    q.adjustment_overlaps_event,
    q.flag_adjustment,
    -- the baseline the flags read: without the day-of adjustment when flag_adjustment says
    -- so (settlement always reads adjusted_kwh)
    CASE
        WHEN q.method = 'meter-generator-output' THEN 0.0
        WHEN q.baseline_status <> 'ok' THEN NULL
        WHEN q.flag_unadjusted THEN w.unadjusted_kwh
        WHEN q.method = 'high-4-of-5' THEN w.unadjusted_kwh + q.adjustment_additive_kwh
        ELSE w.unadjusted_kwh * q.adjustment_ratio
    END AS flag_baseline_kwh,
    q.placebo_days,
    q.placebo_error_mean_kwh,
    q.placebo_error_sd_kwh
FROM with_actuals w
JOIN request_adjustments q USING (request_id)
WHERE w.is_event;
