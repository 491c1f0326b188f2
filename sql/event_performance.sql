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
-- leap_event_names, meter_batteries, student_t_quantiles, interval_reads (its loaded day
-- range only), variables now (TIMESTAMPTZ), default_timezone.

CREATE OR REPLACE TABLE event_performance AS
WITH params AS (SELECT * FROM measurement_parameters),
events AS (
    SELECT
        e.*,
        p.pending_grace_days,
        p.uncertainty_confidence,
        p.flag_real_time_events,
        p.weekday_min_days,
        p.weekday_max_days,
        p.weekend_min_days,
        p.weekend_max_days,
        p.high_min_days,
        p.high_max_days,
        p.baseline_lookback_days,
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
        any_value(days_used) AS baseline_days_used,
        any_value(days_found) AS baseline_days_found,
        any_value(placebo_days) AS placebo_days,
        any_value(placebo_error_mean_kwh) AS placebo_error_mean_kwh,
        any_value(placebo_error_sd_kwh) AS placebo_error_sd_kwh,
        count(*) AS intervals_expected,
        count(actual_kwh) AS intervals_present,
        sum(adjusted_kwh) AS baseline_kwh,
        sum(actual_kwh) AS actual_kwh,
        sum(delivered_kwh) AS delivered_kwh,
        -- before any compensation cap, over the quarter hours with a reading only: the
        -- response as measured, never "a missing quarter hour delivered nothing"
        sum(flag_baseline_kwh - actual_kwh) AS uncapped_delivered_kwh,
        bool_or(adjustment_overlaps_event) AS adjustment_overlaps_event,
        any_value(flag_adjustment) AS flag_adjustment
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
),
with_days AS (
    SELECT
        *,
        CASE baseline_method
            WHEN '10-in-10' THEN weekday_min_days
            WHEN 'high-4-of-5' THEN high_min_days
            WHEN '4-in-4' THEN weekend_min_days
        END AS min_baseline_days,
        CASE baseline_method
            WHEN '10-in-10' THEN weekday_max_days
            WHEN 'high-4-of-5' THEN high_max_days
            WHEN '4-in-4' THEN weekend_max_days
        END AS max_baseline_days
    FROM statused
),
-- delivered kW before caps, over the quarter hours read; its uncertainty from the placebo
-- events: true delivery ~ measured - placebo mean error, +- t x sd x sqrt(1 + 1/n) (a
-- prediction interval for one more day's baseline error, Student t with n - 1 degrees of
-- freedom at uncertainty_confidence, two-sided). Generator-output baselines are 0 by rule
-- (the submeter measures the discharge itself): their bounds are the measured figure.
measured AS (
    SELECT
        s.*,
        CASE
            WHEN s.status = 'scored' AND s.intervals_present > 0
                THEN s.uncapped_delivered_kwh / (s.intervals_present * 0.25)
        END AS delivered_kw_uncapped,
        CASE WHEN s.status = 'scored' THEN s.placebo_error_mean_kwh / s.event_hours END AS placebo_bias_kw,
        CASE WHEN s.status = 'scored' THEN s.placebo_error_sd_kwh / s.event_hours END AS placebo_sd_kw,
        CASE
            WHEN s.status = 'scored' AND s.placebo_days >= 2
                THEN q.t * s.placebo_error_sd_kwh / s.event_hours * sqrt(1 + 1 / s.placebo_days)
            WHEN s.status = 'scored' AND s.baseline_method = 'meter-generator-output' THEN 0.0
        END AS half_width_kw
    FROM with_days s
    LEFT JOIN student_t_quantiles q
        ON q.confidence = s.uncertainty_confidence AND q.df = least(s.placebo_days - 1, 200)
),
-- What the flags expect of the event: the committed kW, except that a battery submeter is
-- held to what its battery can deliver (its power rating, and its usable energy shared over
-- the day's judged event hours): a commitment beyond the device is a nomination problem,
-- not a missing response.
day_event_hours AS (
    SELECT meter_id, event_local_date, sum(event_hours) AS day_event_hours
    FROM (
        SELECT
            meter_id,
            CAST(timezone(meter_timezone, start_time) AS DATE) AS event_local_date,
            event_hours
        FROM events
        WHERE NOT cancelled AND NOT is_test
            AND (flag_real_time_events OR NOT list_contains(dispatch_event_types, '5m'))
    )
    GROUP BY ALL
),
bounded AS (
    SELECT
        m.*,
        CASE
            WHEN m.baseline_method = 'meter-generator-output' AND b.battery_power_kw IS NOT NULL
                THEN least(
                    m.committed_kw,
                    b.battery_power_kw,
                    b.battery_usable_kwh / nullif(d.day_event_hours, 0)
                )
            ELSE m.committed_kw
        END AS expected_kw
    FROM measured m
    LEFT JOIN meter_batteries b USING (meter_id)
    LEFT JOIN day_event_hours d
        ON d.meter_id = m.meter_id
        AND d.event_local_date = CAST(timezone(m.meter_timezone, m.start_time) AS DATE)
),
bounded_kw AS (
    SELECT
        *,
        delivered_kw_uncapped - coalesce(placebo_bias_kw, 0.0) - half_width_kw AS delivered_kw_low,
        delivered_kw_uncapped - coalesce(placebo_bias_kw, 0.0) + half_width_kw AS delivered_kw_high
    FROM bounded
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
    getvariable('now') AS evaluated_at,
    CASE
        WHEN status = 'cancelled' THEN 'cancelled by Leap'
        WHEN status = 'test' THEN 'integration test event'
        WHEN status = 'pending_data' AND end_time > getvariable('now') THEN 'event not over yet'
        WHEN status = 'pending_data'
            THEN 'no reading in the event window yet; scored with what there is from '
                || strftime(end_time + to_seconds(CAST(pending_grace_days * 86400 AS BIGINT)), '%Y-%m-%d %H:%M UTC')
        WHEN status = 'insufficient_data'
            THEN coalesce(baseline_days_found, 0) || ' complete eligible '
                || CASE WHEN baseline_method = '4-in-4' THEN 'weekend/holiday' ELSE 'week' END
                || ' days, ' || min_baseline_days || ' needed (' || baseline_method
                || ', local days D-' || baseline_lookback_days || ' to D-1 without events)'
    END AS status_reason,
    CASE WHEN intervals_expected > 0 THEN intervals_present / intervals_expected END AS event_window_completeness,
    baseline_days_used,
    baseline_days_found,
    CASE WHEN baseline_method <> 'meter-generator-output' THEN max_baseline_days END AS baseline_days_wanted,
    delivered_kw_uncapped,
    CASE WHEN committed_kw > 0 THEN delivered_kw_uncapped / committed_kw END AS performance_factor_uncapped,
    CASE WHEN status = 'scored' THEN placebo_days END AS placebo_days,
    placebo_bias_kw,
    placebo_sd_kw,
    uncertainty_confidence,
    delivered_kw_low,
    delivered_kw_high,
    CASE WHEN committed_kw > 0 THEN delivered_kw_low / committed_kw END AS performance_factor_low,
    CASE WHEN committed_kw > 0 THEN delivered_kw_high / committed_kw END AS performance_factor_high,
    dispatch_event_types,
    adjustment_overlaps_event,
    flag_adjustment,
    expected_kw,
    -- whether interval data has been loaded for the event's day at all (for any meter): an
    -- event before the first or after the last loaded day is not missing data, just not
    -- loaded (e.g. a history backfill that starts later than the dispatch history)
    coalesce(
        CAST(timezone(meter_timezone, start_time) AS DATE)
            BETWEEN (SELECT min(local_date) FROM interval_reads)
            AND (SELECT max(local_date) FROM interval_reads),
        false
    ) AS interval_data_loaded
FROM bounded_kw
ORDER BY event_start, meter_id, meter_event_id;
