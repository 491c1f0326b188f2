-- underperformers (daily partition as_of_date, a market-local day): one row per flagged
-- meter, judged on its scored events that started in the trailing flag_window_days local
-- days ending on as_of_date (inclusive).
--
-- reason_codes: LOW_PERFORMANCE  mean performance_factor < low_performance_factor over at
--                                least low_performance_min_events events;
--               NO_RESPONSE      any committed (committed_kw > 0), non-voluntary event with
--                                performance_factor < no_response_factor;
--               MISSING_DATA     any event with data_completeness < missing_data_completeness.
-- Window and LOW_PERFORMANCE numbers come from the default parameters ('*'); the per-event
-- thresholds from the event's program.
--
-- Inputs: event_performance, measurement_parameters, variables as_of_date (DATE), timezone.

DELETE FROM underperformers WHERE as_of_date = CAST(getvariable('as_of_date') AS DATE);

INSERT INTO underperformers
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
        pr.no_response_factor,
        pr.missing_data_completeness
    FROM event_performance p
    JOIN params pr ON pr.program_identifier = CASE
        WHEN p.programs[1] IN (SELECT program_identifier FROM params) THEN p.programs[1]
        ELSE '*'
    END
    CROSS JOIN window_bounds w
    WHERE p.status = 'scored'
        AND CAST(timezone(getvariable('timezone'), p.event_start) AS DATE)
            BETWEEN w.window_start AND w.window_end
),
per_meter AS (
    SELECT
        meter_id,
        count(*) AS scored_events,
        avg(performance_factor) AS mean_performance_factor,
        count(*) FILTER (
            WHERE committed_kw > 0 AND NOT is_voluntary AND performance_factor < no_response_factor
        ) AS no_response_events,
        list(meter_event_id ORDER BY event_start) FILTER (
            WHERE committed_kw > 0 AND NOT is_voluntary AND performance_factor < no_response_factor
        ) AS no_response_event_ids,
        min(performance_factor) AS min_performance_factor,
        count(*) FILTER (WHERE data_completeness < missing_data_completeness) AS missing_data_events,
        list(meter_event_id ORDER BY event_start) FILTER (
            WHERE data_completeness < missing_data_completeness
        ) AS missing_data_event_ids,
        min(data_completeness) AS min_data_completeness
    FROM events
    GROUP BY meter_id
),
flagged AS (
    SELECT
        m.*,
        list_filter([
            CASE
                WHEN m.scored_events >= d.low_performance_min_events
                    AND m.mean_performance_factor < d.low_performance_factor
                    THEN 'LOW_PERFORMANCE'
            END,
            CASE WHEN m.no_response_events > 0 THEN 'NO_RESPONSE' END,
            CASE WHEN m.missing_data_events > 0 THEN 'MISSING_DATA' END
        ], lambda x: x IS NOT NULL) AS reason_codes
    FROM per_meter m
    CROSS JOIN defaults d
)
SELECT
    CAST(getvariable('as_of_date') AS DATE) AS as_of_date,
    f.meter_id,
    f.reason_codes,
    w.window_start,
    w.window_end,
    f.scored_events,
    f.mean_performance_factor,
    f.no_response_events,
    coalesce(f.no_response_event_ids, []) AS no_response_event_ids,
    f.min_performance_factor,
    f.missing_data_events,
    coalesce(f.missing_data_event_ids, []) AS missing_data_event_ids,
    f.min_data_completeness
FROM flagged f
CROSS JOIN window_bounds w
WHERE len(f.reason_codes) > 0
ORDER BY f.meter_id;
