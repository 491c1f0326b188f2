-- performance_reconciliation: scored events whose delivered kWh differs from Leap's
-- meter-level performance (POST /v1.1/analytics/performance/meter/search) by more than
-- tolerance_pct percent of Leap's figure (either side 0 and the other not counts as a
-- difference), plus events Leap reports that we do not score.
--
-- Inputs: event_performance, stg_leap_meter_performance (meter_id, meter_event_id, start,
-- "end", baseline_kwh, usage_kwh, delivered_kwh), variable tolerance_pct (e.g. 5.0).

CREATE OR REPLACE TABLE performance_reconciliation AS
WITH ours AS (
    SELECT meter_event_id, meter_id, event_start, baseline_kwh, actual_kwh, delivered_kwh, status
    FROM event_performance
    WHERE status = 'scored'
),
theirs AS (
    SELECT
        CAST(meter_event_id AS VARCHAR) AS meter_event_id,
        CAST(meter_id AS VARCHAR) AS meter_id,
        CAST(baseline_kwh AS DOUBLE) AS leap_baseline_kwh,
        CAST(usage_kwh AS DOUBLE) AS leap_usage_kwh,
        CAST(delivered_kwh AS DOUBLE) AS leap_delivered_kwh
    FROM stg_leap_meter_performance
),
joined AS (
    SELECT
        coalesce(o.meter_event_id, t.meter_event_id) AS meter_event_id,
        coalesce(o.meter_id, t.meter_id) AS meter_id,
        o.event_start,
        o.baseline_kwh,
        t.leap_baseline_kwh,
        o.actual_kwh,
        t.leap_usage_kwh,
        o.delivered_kwh,
        t.leap_delivered_kwh,
        o.delivered_kwh - t.leap_delivered_kwh AS delivered_difference_kwh,
        CASE
            WHEN t.leap_delivered_kwh <> 0
                THEN 100.0 * abs(o.delivered_kwh - t.leap_delivered_kwh) / abs(t.leap_delivered_kwh)
        END AS delivered_difference_pct,
        CASE
            WHEN o.meter_event_id IS NULL THEN 'NOT_SCORED_HERE'
            WHEN t.meter_event_id IS NULL THEN NULL
            WHEN t.leap_delivered_kwh = 0 AND o.delivered_kwh = 0 THEN NULL
            WHEN t.leap_delivered_kwh = 0 THEN 'DELIVERED_DIFFERS'
            WHEN 100.0 * abs(o.delivered_kwh - t.leap_delivered_kwh) / abs(t.leap_delivered_kwh)
                > getvariable('tolerance_pct') THEN 'DELIVERED_DIFFERS'
        END AS reason_code
    FROM ours o
    FULL OUTER JOIN theirs t USING (meter_event_id)
)
SELECT * FROM joined
WHERE reason_code IS NOT NULL
ORDER BY event_start NULLS LAST, meter_id, meter_event_id;
