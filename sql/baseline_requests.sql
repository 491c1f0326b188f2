-- baseline_requests (temp): the windows a baseline is computed for, one row per request.
--
-- purpose = 'events':   one request per non-cancelled, non-test meter event
--                       (request_id = meter_event_id).
-- purpose = 'accuracy': one request per meter, weekday baseline method and test day, where a
--                       test day is a complete, non-event, non-holiday weekday in
--                       [as_of_date - accuracy_window_days, as_of_date - 1]; the window is a
--                       pseudo event [accuracy_event_start_hour, + accuracy_event_hours) local.
--
-- Inputs: dispatch_events, meter_profiles, meter_day_intervals, meter_dispatch_days,
-- nerc_holidays, measurement_parameters (row '*' = defaults), variables purpose, as_of_date.
--
-- Times: event_start/event_end are UTC instants; window_start/window_end are the event
-- window widened to whole quarter hours; the adjustment window is
-- [start - adjustment_start_hours, start - adjustment_end_hours). event_date is the
-- market-local day of the event start.

CREATE OR REPLACE TEMP TABLE baseline_requests AS
WITH params AS (SELECT * FROM measurement_parameters),
event_windows AS (
    SELECT
        e.meter_event_id AS request_id,
        e.meter_event_id,
        e.meter_id,
        CASE
            WHEN e.programs[1] IN (SELECT program_identifier FROM params) THEN e.programs[1]
            ELSE '*'
        END AS param_key,
        e.start_time AS event_start,
        e.end_time AS event_end,
        CAST(NULL AS VARCHAR) AS forced_method
    FROM dispatch_events e
    WHERE getvariable('purpose') = 'events'
        AND NOT e.cancelled AND NOT e.is_test AND e.end_time > e.start_time
),
test_days AS (
    SELECT d.meter_id, d.local_date, p.tz
    FROM meter_day_intervals d
    JOIN meter_profiles p USING (meter_id)
    CROSS JOIN (SELECT * FROM params WHERE program_identifier = '*') dp
    WHERE getvariable('purpose') = 'accuracy'
        AND NOT p.is_battery_submeter
        AND d.intervals_present = d.intervals_expected
        AND d.local_date BETWEEN CAST(getvariable('as_of_date') AS DATE) - dp.accuracy_window_days
            AND CAST(getvariable('as_of_date') AS DATE) - 1
        AND dayofweek(d.local_date) BETWEEN 1 AND 5
        AND d.local_date NOT IN (SELECT holiday_date FROM nerc_holidays)
        AND NOT EXISTS (
            SELECT 1 FROM meter_dispatch_days x
            WHERE x.meter_id = d.meter_id AND x.local_date = d.local_date
        )
),
accuracy_windows AS (
    SELECT
        t.meter_id || ':' || strftime(t.local_date, '%Y-%m-%d') || ':' || m.method AS request_id,
        CAST(NULL AS VARCHAR) AS meter_event_id,
        t.meter_id,
        '*' AS param_key,
        timezone(t.tz, CAST(t.local_date AS TIMESTAMP) + to_hours(dp.accuracy_event_start_hour)) AS event_start,
        timezone(
            t.tz,
            CAST(t.local_date AS TIMESTAMP)
                + to_hours(dp.accuracy_event_start_hour + dp.accuracy_event_hours)
        ) AS event_end,
        m.method AS forced_method
    FROM test_days t
    CROSS JOIN (SELECT * FROM params WHERE program_identifier = '*') dp
    CROSS JOIN (VALUES ('10-in-10'), ('high-4-of-5')) m(method)
),
windows AS (
    SELECT * FROM event_windows
    UNION ALL
    SELECT * FROM accuracy_windows
),
classified AS (
    SELECT
        w.*,
        p.meter_no,
        p.tz,
        p.is_battery_submeter,
        p.has_behind_meter_battery,
        CAST(timezone(p.tz, w.event_start) AS DATE) AS event_date
    FROM windows w
    JOIN meter_profiles p USING (meter_id)
),
with_kind AS (
    SELECT
        c.*,
        CASE
            WHEN dayofweek(c.event_date) IN (0, 6)
                OR c.event_date IN (SELECT holiday_date FROM nerc_holidays)
                THEN 'weekend_holiday'
            ELSE 'weekday'
        END AS day_kind
    FROM classified c
),
with_method AS (
    SELECT
        k.*,
        pr.*,
        CASE
            WHEN k.forced_method IS NOT NULL THEN k.forced_method
            WHEN k.is_battery_submeter THEN 'meter-generator-output'
            WHEN k.day_kind = 'weekday' THEN pr.weekday_method
            ELSE '4-in-4'
        END AS method
    FROM with_kind k
    JOIN params pr ON pr.program_identifier = k.param_key
)
SELECT
    -- a dense integer alias of request_id: a cheap key for the heavy joins downstream
    row_number() OVER () AS request_no,
    request_id,
    meter_event_id,
    meter_id,
    meter_no,
    param_key,
    tz,
    method,
    day_kind,
    has_behind_meter_battery,
    event_date,
    event_start,
    event_end,
    to_timestamp(floor(epoch(event_start) / 900) * 900) AS window_start,
    to_timestamp(ceil(epoch(event_end) / 900) * 900) AS window_end,
    to_timestamp(floor((epoch(event_start) - adjustment_start_hours * 3600) / 900) * 900) AS adjustment_start,
    to_timestamp(epoch(event_start) - adjustment_end_hours * 3600) AS adjustment_end,
    baseline_lookback_days AS lookback_days,
    CASE method
        WHEN '10-in-10' THEN weekday_max_days
        WHEN 'high-4-of-5' THEN high_max_days
        WHEN '4-in-4' THEN weekend_max_days
        ELSE 0
    END AS max_days,
    CASE method
        WHEN '10-in-10' THEN weekday_min_days
        WHEN 'high-4-of-5' THEN high_min_days
        WHEN '4-in-4' THEN weekend_min_days
        ELSE 0
    END AS min_days,
    clamp_low,
    clamp_high
FROM with_method;
