-- event_performance: one row per meter event (every row of dispatch_events).
--
-- delivered_kwh = sum over the event's quarter hours of (adjusted baseline - actual), each
-- first capped by performance_compensation_cap: 'up-to-nomination' at most
-- nomination_kw x 0.25 h, 'up-to-site-load' at most the baseline (no credit for export; no
-- cap for meter generator output, a submeter cannot see site load), 'grid-exports-allowed'
-- uncapped. A quarter hour without a reading delivers nothing. delivered_kw =
-- delivered_kwh / event hours; performance_factor = delivered_kw / committed_kw.
-- data_completeness = quarter hours read / expected over the event window and the baseline
-- days used.
--
-- status: 'cancelled', 'test', 'pending_data' (event not over, or no reading in the event
-- window yet and less than pending_grace_days since its end), 'insufficient_data' (too few
-- baseline days), otherwise 'scored'. Figures other than actuals are NULL unless scored.
--
-- For analysts: program_identifier = the event's first program (the one its parameters come
-- from); event_name = Leap's name of the program event (leap_event_names); meter_timezone =
-- the meter's market zone (its transmission region; default_timezone when unknown), and
-- event_local_start / event_local_date = the start as wall-clock time / date there.
--
-- Inputs: dispatch_events, baselines, meters, measurement_parameters, market_timezones,
-- leap_event_names, variables now (TIMESTAMPTZ), default_timezone.

CREATE OR REPLACE TABLE event_performance AS
WITH params AS (SELECT * FROM measurement_parameters),
events AS (
    SELECT
        e.*,
        p.pending_grace_days,
        epoch(e.end_time - e.start_time) / 3600.0 AS event_hours,
        coalesce(tz.timezone, getvariable('default_timezone')) AS meter_timezone,
        coalesce(
            exact.event_name,
            coalesce(prefix.event_name, e.programs[1]) || ' ' || array_to_string(e.dispatch_event_types, '+')
        ) AS event_name
    FROM dispatch_events e
    JOIN params p ON p.program_identifier = CASE
        WHEN e.programs[1] IN (SELECT program_identifier FROM params) THEN e.programs[1]
        ELSE '*'
    END
    LEFT JOIN (SELECT DISTINCT meter_id, transmission_region FROM meters) m USING (meter_id)
    LEFT JOIN market_timezones tz ON tz.transmission_region = m.transmission_region
    LEFT JOIN leap_event_names exact
        ON exact.program_identifier = e.programs[1]
        AND exact.dispatch_event_types = list_sort(e.dispatch_event_types)
    LEFT JOIN leap_event_names prefix
        ON prefix.program_identifier = e.programs[1] AND prefix.dispatch_event_types IS NULL
),
intervals AS (
    SELECT
        b.*,
        e.performance_compensation_cap,
        e.nomination_kw,
        CASE
            WHEN b.actual_kwh IS NULL OR b.adjusted_kwh IS NULL THEN 0.0
            WHEN e.performance_compensation_cap = 'up-to-nomination' AND e.nomination_kw IS NOT NULL
                THEN least(b.adjusted_kwh - b.actual_kwh, e.nomination_kw * 0.25)
            WHEN e.performance_compensation_cap = 'up-to-site-load'
                AND b.method <> 'meter-generator-output'
                THEN least(b.adjusted_kwh - b.actual_kwh, b.adjusted_kwh)
            ELSE b.adjusted_kwh - b.actual_kwh
        END AS delivered_kwh
    FROM baselines b
    JOIN events e USING (meter_event_id)
),
per_event AS (
    SELECT
        meter_event_id,
        any_value(method) AS baseline_method,
        any_value(baseline_status) AS baseline_status,
        any_value(eligible_day_intervals) AS eligible_day_intervals,
        count(*) AS intervals_expected,
        count(actual_kwh) AS intervals_present,
        sum(adjusted_kwh) AS baseline_kwh,
        sum(actual_kwh) AS actual_kwh,
        sum(delivered_kwh) AS delivered_kwh
    FROM intervals
    GROUP BY meter_event_id
),
statused AS (
    SELECT
        e.*,
        p.* EXCLUDE (meter_event_id),
        CASE
            WHEN e.cancelled THEN 'cancelled'
            WHEN e.is_test THEN 'test'
            WHEN e.end_time > getvariable('now') THEN 'pending_data'
            WHEN coalesce(p.intervals_present, 0) = 0
                AND getvariable('now') < e.end_time + to_seconds(CAST(e.pending_grace_days * 86400 AS BIGINT))
                THEN 'pending_data'
            WHEN p.baseline_status IS DISTINCT FROM 'ok' THEN 'insufficient_data'
            ELSE 'scored'
        END AS status
    FROM events e
    LEFT JOIN per_event p USING (meter_event_id)
)
SELECT
    meter_event_id,
    meter_id,
    market_group_event_id,
    programs,
    programs[1] AS program_identifier,
    event_name,
    baseline_method,
    start_time AS event_start,
    end_time AS event_end,
    meter_timezone,
    CAST(timezone(meter_timezone, start_time) AS TIMESTAMP) AS event_local_start,
    CAST(timezone(meter_timezone, start_time) AS DATE) AS event_local_date,
    event_hours,
    committed_kw,
    nomination_kw,
    energy_kw,
    is_voluntary,
    performance_compensation_cap,
    CASE WHEN status = 'scored' THEN baseline_kwh END AS baseline_kwh,
    actual_kwh,
    CASE WHEN status = 'scored' THEN delivered_kwh END AS delivered_kwh,
    CASE WHEN status = 'scored' THEN delivered_kwh / event_hours END AS delivered_kw,
    CASE
        WHEN status = 'scored' AND committed_kw > 0 THEN delivered_kwh / event_hours / committed_kw
    END AS performance_factor,
    CASE
        WHEN intervals_expected IS NOT NULL
            THEN (intervals_present + eligible_day_intervals) / (intervals_expected + eligible_day_intervals)
    END AS data_completeness,
    intervals_expected,
    intervals_present,
    status,
    getvariable('now') AS evaluated_at
FROM statused
ORDER BY event_start, meter_id, meter_event_id;
