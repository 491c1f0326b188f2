-- eligible_days (temp): the baseline days chosen for each request, most recent first.
--
-- Candidates are the market-local days D-lookback_days .. D-1 before the event day D, of
-- the event day's kind (weekday = Mon-Fri and not a NERC holiday; otherwise weekend or
-- holiday), on which the meter had no non-cancelled non-test dispatch and every quarter
-- hour has a reading. The max_days most recent are chosen (day_rank 1 = most recent);
-- days_found counts the chosen ones (fewer than min_days = insufficient_data).
--
-- Inputs: baseline_requests, meter_day_intervals, meter_dispatch_days, nerc_holidays.
--
-- Cost: rather than listing every request's lookback days (requests x 45 candidates, then a
-- window sort), each meter's usable days of each kind are numbered once (day_no), and a
-- request looks up the most recent usable day before its event day (an ASOF join) and
-- takes it and the max_days - 1 before it by number, dropping any older than the lookback.
-- Meters are keyed by meter_no (meter_profiles' integer alias), days of a kind by a boolean.

CREATE OR REPLACE TEMP TABLE eligible_days AS
WITH usable_days AS (
    SELECT
        d.meter_no,
        d.local_date,
        d.intervals_expected,
        dayofweek(d.local_date) BETWEEN 1 AND 5 AND h.holiday_date IS NULL AS is_weekday
    FROM meter_day_intervals d
    LEFT JOIN nerc_holidays h ON h.holiday_date = d.local_date
    ANTI JOIN meter_dispatch_days x ON x.meter_no = d.meter_no AND x.local_date = d.local_date
    WHERE d.intervals_present = d.intervals_expected
),
numbered AS MATERIALIZED (
    SELECT
        *,
        row_number() OVER (PARTITION BY meter_no, is_weekday ORDER BY local_date) AS day_no
    FROM usable_days
),
latest AS (
    SELECT
        r.request_no,
        r.request_id,
        r.meter_no,
        r.day_kind = 'weekday' AS is_weekday,
        r.event_date - r.lookback_days AS first_candidate,
        r.max_days,
        n.day_no AS latest_day_no
    FROM baseline_requests r
    ASOF JOIN numbered n
        ON n.meter_no = r.meter_no
        AND n.is_weekday = (r.day_kind = 'weekday')
        AND n.local_date < r.event_date
    WHERE r.method <> 'meter-generator-output' AND r.max_days > 0
),
chosen AS (
    SELECT
        l.request_no,
        l.request_id,
        n.local_date,
        n.intervals_expected AS day_intervals,
        l.latest_day_no - n.day_no + 1 AS day_rank
    FROM (
        SELECT *, latest_day_no - unnest(range(max_days)) AS day_no
        FROM latest
    ) l
    JOIN numbered n USING (meter_no, is_weekday, day_no)
    WHERE n.local_date >= l.first_candidate
)
SELECT
    request_no,
    request_id,
    local_date,
    day_intervals,
    day_rank,
    count(*) OVER (PARTITION BY request_no) AS days_found
FROM chosen;
