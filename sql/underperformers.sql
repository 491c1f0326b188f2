-- underperformers (daily partition as_of_date, a market-local day): one row per meter with a
-- flag or an INCONCLUSIVE verdict, judged on its events that started in the trailing
-- flag_window_days local days ending on as_of_date (inclusive). Rules: docs/flags.md.
--
-- Flags judge the response, not the pay: they read delivered_kw_uncapped (before
-- compensation caps, over the quarter hours read) and its placebo-event bounds, never the
-- settlement figures, and only events that are "judged": scored, committed (committed_kw > 0),
-- non-voluntary, with at least missing_data_completeness of the event window read and bounds,
-- and not a CAISO real-time ('5m') event unless the program sets flag_real_time_events.
--
-- reason_codes: NO_RESPONSE      a judged event whose delivered_kw_high < no_response_factor
--                                x expected_kw (no response visible beyond the noise);
--               LOW_PERFORMANCE  pooled performance over at least low_performance_min_events
--                                judged events has its high bound < low_performance_factor;
--               MISSING_DATA     an event (scored or insufficient_data) whose own window has
--                                less than missing_data_completeness of its quarter hours, on
--                                a day interval data was loaded for; a data problem: such an
--                                event is never judged on performance;
--               INCONCLUSIVE     (not a flag; flagged = false) no performance flag, and the
--                                pooled bounds straddle low_performance_factor with a band
--                                wider than inconclusive_band, or lie below it over fewer
--                                than low_performance_min_events judged events.
-- Pooled performance: the inverse-variance weighted mean of the judged events' performance
-- p_i = (delivered_kw_uncapped - placebo_bias_kw) / expected_kw, with weights 1 / h_i^2,
-- h_i = half width / expected_kw; its half width 1 / sqrt(sum(1 / h_i^2)) (events' errors
-- independent). An event whose baseline noise is twice another's counts a quarter as much,
-- so a noisy event (a contaminated adjustment, a 4-in-4 day) cannot hide what the precise
-- ones show. Battery submeters are metered exactly (h_i = 0): sum(delivered) /
-- sum(expected_kw), half width 0.
-- expected_kw is committed_kw except for battery submeters (what the battery can deliver).
-- Window and pooled thresholds come from the default parameters ('*'); the per-event
-- thresholds from the event's program.
--
-- Inputs: event_performance, group_event_members (temp, sql/group_event_members.sql),
-- measurement_parameters, variables as_of_date (DATE), timezone.

DELETE FROM underperformers WHERE as_of_date = CAST(getvariable('as_of_date') AS DATE);

INSERT INTO underperformers BY NAME
WITH defaults AS (SELECT * FROM measurement_parameters WHERE program_identifier = '*'),
params AS (SELECT * FROM measurement_parameters),
window_bounds AS (
    SELECT
        CAST(getvariable('as_of_date') AS DATE) - (flag_window_days - 1) AS window_start,
        CAST(getvariable('as_of_date') AS DATE) AS window_end
    FROM defaults
),
events AS (
    SELECT
        p.*,
        gm.was_member AND gm.split_over_members AS is_member_share,
        CAST(timezone(getvariable('timezone'), p.event_start) AS DATE) AS event_date,
        pr.no_response_factor,
        pr.missing_data_completeness,
        p.event_window_completeness < pr.missing_data_completeness
            AND p.interval_data_loaded AS is_missing_data,
        p.status = 'scored'
            AND p.committed_kw > 0
            AND NOT coalesce(p.is_voluntary, false)
            AND p.event_window_completeness >= pr.missing_data_completeness
            AND p.delivered_kw_low IS NOT NULL
            AND (pr.flag_real_time_events OR NOT list_contains(p.dispatch_event_types, '5m'))
            AS is_eligible,
        (p.delivered_kw_high - p.delivered_kw_low) / 2 AS half_width_kw
    FROM event_performance p
    LEFT JOIN group_event_members gm USING (meter_event_id)
    JOIN params pr ON pr.program_identifier = CASE
        WHEN p.programs[1] IN (SELECT program_identifier FROM params) THEN p.programs[1]
        ELSE '*'
    END
    CROSS JOIN window_bounds w
    WHERE p.status IN ('scored', 'insufficient_data')
        AND CAST(timezone(getvariable('timezone'), p.event_start) AS DATE)
            BETWEEN w.window_start AND w.window_end
),
-- Group events (flag_group_events): the meter's share is this pipeline's split of the group's
-- commitment by nomination, the target its site controller is sent. A share is judged,
-- pooled with the meter's own events, only when the meter and every other meter the event
-- was split over were in the group at its start (group_event_members): a split over a
-- listed non-member misstates every share.
judged_events AS (
    SELECT
        e.*,
        e.is_eligible AND (
            e.market_group_event_id IS NULL
            OR (d.flag_group_events AND coalesce(e.is_member_share, false))
        ) AS is_judged
    FROM events e
    CROSS JOIN defaults d
),
flagged_events AS (
    SELECT
        *,
        is_judged AND delivered_kw_high < no_response_factor * expected_kw AS is_no_response,
        -- the event's measured performance (bias removed) and half width, as shares of expected_kw
        (delivered_kw_uncapped - coalesce(placebo_bias_kw, 0.0)) / expected_kw AS event_performance,
        half_width_kw / expected_kw AS relative_half_width
    FROM judged_events
),
per_meter AS (
    SELECT
        meter_id,
        count(*) FILTER (WHERE status = 'scored') AS scored_events,
        avg(performance_factor) FILTER (WHERE status = 'scored') AS mean_performance_factor,
        min(performance_factor) FILTER (WHERE status = 'scored') AS min_performance_factor,
        min(data_completeness) AS min_data_completeness,
        min(event_window_completeness) AS min_event_window_completeness,
        count(*) FILTER (WHERE is_judged) AS judged_events,
        count(*) FILTER (WHERE is_no_response) AS no_response_events,
        list(meter_event_id ORDER BY event_start) FILTER (WHERE is_no_response) AS no_response_event_ids,
        count(*) FILTER (WHERE is_missing_data) AS missing_data_events,
        list(meter_event_id ORDER BY event_start) FILTER (WHERE is_missing_data) AS missing_data_event_ids,
        -- inverse-variance weights: a precise event counts for more than a noisy one; events
        -- measured exactly (battery submeters: half width 0) are pooled by committed kW
        CASE
            WHEN bool_or(relative_half_width = 0) FILTER (WHERE is_judged)
                THEN sum(event_performance * expected_kw) FILTER (WHERE is_judged)
                    / sum(expected_kw) FILTER (WHERE is_judged)
            ELSE sum(event_performance / relative_half_width ^ 2) FILTER (WHERE is_judged)
                / sum(1 / relative_half_width ^ 2) FILTER (WHERE is_judged)
        END AS pooled_performance_factor,
        CASE
            WHEN bool_or(relative_half_width = 0) FILTER (WHERE is_judged) THEN 0.0
            ELSE 1 / sqrt(sum(1 / relative_half_width ^ 2) FILTER (WHERE is_judged))
        END AS pooled_half_width,
        -- the events behind the verdict: every judged or missing-data event, oldest first
        list({
            'meter_event_id': meter_event_id,
            'event_date': event_date,
            'status': status,
            'committed_kw': committed_kw,
            'expected_kw': expected_kw,
            'delivered_kw': delivered_kw,
            'delivered_kw_uncapped': delivered_kw_uncapped,
            'delivered_kw_low': delivered_kw_low,
            'delivered_kw_high': delivered_kw_high,
            'performance_factor': performance_factor,
            'performance_factor_low': performance_factor_low,
            'performance_factor_high': performance_factor_high,
            'event_window_completeness': event_window_completeness,
            'placebo_days': placebo_days,
            'no_response': is_no_response,
            'missing_data': is_missing_data
        } ORDER BY event_start) FILTER (WHERE is_judged OR is_missing_data) AS evidence,
        -- the first no-response event, for the reason text
        arg_min(
            meter_event_id || ' on ' || strftime(event_date, '%Y-%m-%d') || ': '
                || printf('%.1f', delivered_kw_uncapped) || ' kW of ' || printf('%.1f', expected_kw)
                || ' kW expected, bounds ' || printf('%.1f', delivered_kw_low) || ' to '
                || printf('%.1f', delivered_kw_high) || ' kW',
            event_start
        ) FILTER (WHERE is_no_response) AS first_no_response
    FROM flagged_events
    GROUP BY meter_id
),
verdicts AS (
    SELECT
        m.*,
        m.pooled_performance_factor - m.pooled_half_width AS pooled_performance_low,
        m.pooled_performance_factor + m.pooled_half_width AS pooled_performance_high,
        m.judged_events >= d.low_performance_min_events
            AND m.pooled_performance_factor + m.pooled_half_width < d.low_performance_factor AS is_low,
        m.no_response_events > 0 AS is_no_response,
        m.missing_data_events > 0 AS is_missing_data,
        d.low_performance_factor,
        d.low_performance_min_events,
        d.inconclusive_band,
        d.uncertainty_confidence
    FROM per_meter m
    CROSS JOIN defaults d
),
coded AS (
    SELECT
        v.*,
        NOT v.is_low AND NOT v.is_no_response AND v.judged_events > 0 AND (
            -- the bounds straddle the threshold with a wide band
            (v.pooled_performance_low < v.low_performance_factor
                AND v.pooled_performance_high >= v.low_performance_factor
                AND v.pooled_performance_high - v.pooled_performance_low > v.inconclusive_band)
            -- or point below it, but over too few events for LOW_PERFORMANCE
            OR (v.judged_events < v.low_performance_min_events
                AND v.pooled_performance_high < v.low_performance_factor)
        ) AS is_inconclusive,
        printf('%.2f', v.pooled_performance_factor) || ' (' || printf('%.2f', v.pooled_performance_low)
            || ' to ' || printf('%.2f', v.pooled_performance_high) || ' at '
            || CAST(round(v.uncertainty_confidence * 100) AS INTEGER) || '%) over ' || v.judged_events
            || ' committed non-voluntary event' || CASE WHEN v.judged_events = 1 THEN '' ELSE 's' END
            AS pooled_text
    FROM verdicts v
)
SELECT
    CAST(getvariable('as_of_date') AS DATE) AS as_of_date,
    c.meter_id,
    list_filter([
        CASE WHEN c.is_low THEN 'LOW_PERFORMANCE' END,
        CASE WHEN c.is_no_response THEN 'NO_RESPONSE' END,
        CASE WHEN c.is_missing_data THEN 'MISSING_DATA' END,
        CASE WHEN c.is_inconclusive THEN 'INCONCLUSIVE' END
    ], lambda x: x IS NOT NULL) AS reason_codes,
    c.is_low OR c.is_no_response OR c.is_missing_data AS flagged,
    array_to_string(list_filter([
        CASE WHEN c.is_low THEN 'LOW_PERFORMANCE: pooled performance ' || c.pooled_text
            || ', high bound below ' || c.low_performance_factor END,
        CASE WHEN c.is_no_response THEN 'NO_RESPONSE: ' || c.no_response_events
            || ' event(s) with no response beyond the noise, first ' || c.first_no_response END,
        CASE WHEN c.is_missing_data THEN 'MISSING_DATA: ' || c.missing_data_events
            || ' event(s) with under ' || CAST(round(d.missing_data_completeness * 100) AS INTEGER)
            || '% of the event window read (lowest ' || CAST(round(c.min_event_window_completeness * 100) AS INTEGER)
            || '%); not judged on performance' END,
        CASE WHEN c.is_inconclusive THEN 'INCONCLUSIVE: pooled performance ' || c.pooled_text
            || ': the noise is too large to tell; would help: '
            || CASE WHEN c.judged_events < 4 THEN 'more events, ' ELSE '' END
            || 'another baseline method (baseline_accuracy), a submeter on the controlled load' END
    ], lambda x: x IS NOT NULL), '; ') AS reason,
    w.window_start,
    w.window_end,
    c.scored_events,
    c.mean_performance_factor,
    c.no_response_events,
    coalesce(c.no_response_event_ids, []) AS no_response_event_ids,
    c.min_performance_factor,
    c.missing_data_events,
    coalesce(c.missing_data_event_ids, []) AS missing_data_event_ids,
    c.min_data_completeness,
    c.min_event_window_completeness,
    c.judged_events,
    c.pooled_performance_factor,
    c.pooled_performance_low,
    c.pooled_performance_high,
    coalesce(c.evidence, []) AS evidence
FROM coded c
CROSS JOIN window_bounds w
CROSS JOIN defaults d
WHERE c.is_low OR c.is_no_response OR c.is_missing_data OR c.is_inconclusive
ORDER BY c.meter_id;
