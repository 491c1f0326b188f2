-- meter_dispatch_days (temp): market-local days on which a meter had a non-cancelled,
-- non-test dispatch (any day the event window [start_time, end_time) touches). Such days
-- are never baseline days.
--
-- Inputs: dispatch_events, meter_profiles.

CREATE OR REPLACE TEMP TABLE meter_dispatch_days AS
SELECT DISTINCT
    e.meter_id,
    p.meter_no,
    CAST(unnest(generate_series(
        CAST(timezone(p.tz, e.start_time) AS DATE),
        CAST(timezone(p.tz, e.end_time - INTERVAL 1 MICROSECOND) AS DATE),
        INTERVAL 1 DAY
    )) AS DATE) AS local_date
FROM dispatch_events e
JOIN meter_profiles p USING (meter_id)
WHERE NOT e.cancelled AND NOT e.is_test AND e.end_time > e.start_time;
