-- baseline_accuracy: per meter and weekday baseline method, how well the baseline predicts
-- what the meter actually used on days without events.
--
-- Each test day (a complete, non-event, non-holiday weekday in the trailing
-- accuracy_window_days before as_of_date) is scored as a pseudo event over
-- [accuracy_event_start_hour, + accuracy_event_hours) local time, with the same eligible-day
-- rules and adjustment as real events (baseline_intervals, purpose 'accuracy').
-- rrmse = sqrt(mean((adjusted - actual)^2)) / mean(actual) and bias = mean(adjusted -
-- actual) / mean(actual), over every quarter hour of every test day with a baseline and a
-- reading; unreliable when rrmse > accuracy_max_rrmse (or mean actual <= 0).
--
-- Inputs: baseline_intervals, measurement_parameters, variable as_of_date (DATE).

CREATE OR REPLACE TABLE baseline_accuracy AS
WITH defaults AS (SELECT * FROM measurement_parameters WHERE program_identifier = '*'),
scored AS (
    SELECT meter_id, method, request_id, adjusted_kwh, actual_kwh
    FROM baseline_intervals
    WHERE adjusted_kwh IS NOT NULL AND actual_kwh IS NOT NULL
),
per_method AS (
    SELECT
        meter_id,
        method,
        count(DISTINCT request_id) AS test_days,
        count(*) AS intervals,
        avg(actual_kwh) AS mean_actual_kwh,
        avg(adjusted_kwh - actual_kwh) AS mean_error_kwh,
        sqrt(avg((adjusted_kwh - actual_kwh) ^ 2)) AS rmse_kwh
    FROM scored
    GROUP BY ALL
)
SELECT
    CAST(getvariable('as_of_date') AS DATE) AS as_of_date,
    p.meter_id,
    p.method,
    p.test_days,
    p.intervals,
    p.mean_actual_kwh,
    p.rmse_kwh,
    CASE WHEN p.mean_actual_kwh > 0 THEN p.rmse_kwh / p.mean_actual_kwh END AS rrmse,
    CASE WHEN p.mean_actual_kwh > 0 THEN p.mean_error_kwh / p.mean_actual_kwh END AS bias,
    coalesce(p.rmse_kwh / nullif(p.mean_actual_kwh, 0) > d.accuracy_max_rrmse, true)
        OR p.mean_actual_kwh <= 0 AS unreliable
FROM per_method p
CROSS JOIN defaults d
ORDER BY p.meter_id, p.method;
