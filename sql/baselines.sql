-- baselines: per meter event and quarter hour of the event window, the baseline (kWh).
--
-- Columns: method (10-in-10, 4-in-4, high-4-of-5, meter-generator-output), baseline_status
-- ('ok' or 'insufficient_data'), interval_start/interval_end (UTC), local_time (market-local
-- wall-clock HH:MM), eligible_days (the market-local days averaged, most recent first; for
-- high 4 of 5 without the dropped day), unadjusted_kwh, adjustment_ratio (day-of ratio,
-- clamped), adjustment_additive_kwh (high 4 of 5), adjusted_kwh, actual_kwh (NULL = no
-- reading); placebo_days, placebo_error_mean_kwh, placebo_error_sd_kwh (the baseline's own
-- error on the used baseline days scored as pseudo events, per event, see baseline_intervals).
-- The whole table is rebuilt from the baseline_intervals view (purpose 'events');
-- rows are in no particular order (sort by meter_event_id, interval_start when reading).

CREATE OR REPLACE TABLE baselines AS
SELECT
    meter_event_id,
    meter_id,
    method,
    baseline_status,
    interval_start,
    interval_end,
    local_time,
    eligible_days,
    days_used,
    days_found,
    eligible_day_intervals,
    unadjusted_kwh,
    adjustment_ratio,
    adjustment_additive_kwh,
    adjusted_kwh,
    adjusted_kwh - unadjusted_kwh AS adjustment_kwh,
    actual_kwh,
    adjustment_overlaps_event,
    flag_adjustment,
    flag_baseline_kwh,
    placebo_days,
    placebo_error_mean_kwh,
    placebo_error_sd_kwh
FROM baseline_intervals;
