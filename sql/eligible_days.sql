-- eligible_days (temp): the baseline days chosen for each request, most recent first.
--
-- Candidates are the market-local days D-lookback_days .. D-1 before the event day D, of
-- the event day's kind (weekday = Mon-Fri and not a NERC holiday; otherwise weekend or
-- holiday), on which the meter had no non-cancelled non-test dispatch and every quarter
-- hour has a reading. The max_days most recent are chosen (day_rank 1 = most recent);
-- days_found counts the chosen ones (fewer than min_days = insufficient_data).
--
-- Inputs: baseline_requests, meter_day_intervals, meter_dispatch_days, nerc_holidays.

CREATE OR REPLACE TEMP TABLE eligible_days AS
WITH offsets AS (
    SELECT
        r.request_id,
        r.meter_id,
        r.day_kind,
        r.max_days,
        r.event_date,
        unnest(range(1, r.lookback_days + 1)) AS days_back
    FROM baseline_requests r
    WHERE r.method <> 'meter-generator-output'
),
candidates AS (
    SELECT request_id, meter_id, day_kind, max_days, event_date - CAST(days_back AS INTEGER) AS local_date
    FROM offsets
),
kinds AS (
    SELECT
        c.*,
        CASE
            WHEN dayofweek(c.local_date) IN (0, 6) OR h.holiday_date IS NOT NULL
                THEN 'weekend_holiday'
            ELSE 'weekday'
        END AS candidate_kind
    FROM candidates c
    LEFT JOIN nerc_holidays h ON h.holiday_date = c.local_date
),
eligible AS (
    SELECT k.request_id, k.local_date, k.max_days, d.intervals_expected
    FROM kinds k
    JOIN meter_day_intervals d
        ON d.meter_id = k.meter_id
        AND d.local_date = k.local_date
        AND d.intervals_present = d.intervals_expected
    ANTI JOIN meter_dispatch_days x ON x.meter_id = k.meter_id AND x.local_date = k.local_date
    WHERE k.candidate_kind = k.day_kind
),
ranked AS (
    SELECT
        request_id,
        local_date,
        intervals_expected AS day_intervals,
        row_number() OVER (PARTITION BY request_id ORDER BY local_date DESC) AS day_rank,
        max_days
    FROM eligible
)
SELECT
    request_id,
    local_date,
    day_intervals,
    day_rank,
    count(*) OVER (PARTITION BY request_id) AS days_found
FROM ranked
WHERE day_rank <= max_days;
