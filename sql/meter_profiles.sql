-- meter_profiles (temp): per meter, the market time zone that day-level baseline logic uses
-- whether the meter is a battery submeter (baseline = meter generator output), and whether
-- it has a battery behind it (a utility meter with BATTERY_STORAGE among its load types).
--
-- Inputs: meters (may lack meters that only have interval data), interval_reads,
-- dispatch_events, market_timezones (temp: transmission_region -> IANA zone), variables
-- default_timezone.

CREATE OR REPLACE TEMP TABLE meter_profiles AS
WITH known_meters AS (
    SELECT meter_id FROM meters
    UNION
    SELECT DISTINCT meter_id FROM dispatch_events
)
SELECT
    k.meter_id,
    -- a dense integer alias of meter_id: a cheap key for sorts and joins downstream
    CAST(row_number() OVER (ORDER BY k.meter_id) AS INTEGER) AS meter_no,
    coalesce(tz.timezone, getvariable('default_timezone')) AS tz,
    coalesce(
        m.meter_type IN ('SUBMETER', 'DEVICE') AND list_contains(m.load_types, 'BATTERY_STORAGE'),
        false
    ) AS is_battery_submeter,
    -- a battery behind a site's utility meter: the site can move energy around an event
    coalesce(
        m.meter_type NOT IN ('SUBMETER', 'DEVICE') AND list_contains(m.load_types, 'BATTERY_STORAGE'),
        false
    ) AS has_behind_meter_battery
FROM known_meters k
LEFT JOIN meters m USING (meter_id)
LEFT JOIN market_timezones tz ON tz.transmission_region = m.transmission_region;
