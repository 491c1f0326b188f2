-- load_forecast: hourly site load (kW) per CAISO battery meter for one trading day, from
-- its interval history, plus the month-to-date billed peak for the demand charge.
--
-- Inputs: interval_reads, meters; temp table stg_demand_hours(meter_id, local_hour,
-- weekdays_only) = each meter's tariff demand window (vpp_pipeline/bidding/tariffs.py);
-- variables trading_day (DATE), day_start / day_end (TIMESTAMPTZ), history_end
-- (TIMESTAMPTZ: only reads before it are used, i.e. what is known when bidding),
-- lookback_days, like_days, market_tz.
--
-- Like-day average: for each local hour of day, the mean kW (kWh per quarter hour x 4) of
-- that hour over the `like_days` most recent like days (weekday vs weekend) within
-- `lookback_days` before history_end. A fall-back day's repeated 01:00 hour averages both
-- readings; a spring-forward day simply has no 02:00. No history -> load_forecast_kw NULL.
-- load_spread_kw: the sample standard deviation (kW) of that hour over the same like days, a
-- measure of how far one day strays from the average (NULL with fewer than two days).
-- month_to_date_peak_kw: the highest quarter-hour import (kW) inside the meter's demand
-- window since the start of the trading day's month (0 when none).
-- Idempotent: the day's rows are replaced.

CREATE TABLE IF NOT EXISTS load_forecast (
    trading_day DATE,
    meter_id VARCHAR,
    hour_start TIMESTAMPTZ,
    hour_end TIMESTAMPTZ,
    local_hour INTEGER,
    load_forecast_kw DOUBLE,
    like_days_used INTEGER,
    month_to_date_peak_kw DOUBLE,
    history_end TIMESTAMPTZ
);
-- added after the first release (a file built by an older version gains it)
ALTER TABLE load_forecast ADD COLUMN IF NOT EXISTS load_spread_kw DOUBLE;

DELETE FROM load_forecast WHERE trading_day = getvariable('trading_day');

INSERT INTO load_forecast (
    trading_day, meter_id, hour_start, hour_end, local_hour, load_forecast_kw, like_days_used,
    month_to_date_peak_kw, history_end, load_spread_kw
)
WITH batteries AS (
    SELECT meter_id FROM meters WHERE has_battery AND transmission_region = 'CAISO'
),
hours AS (
    SELECT h.hour_start, h.hour_start + INTERVAL 1 HOUR AS hour_end,
           hour(timezone(getvariable('market_tz'), h.hour_start))::INTEGER AS local_hour,
           isodow(getvariable('trading_day')) >= 6 AS is_weekend
    FROM (
        SELECT unnest(generate_series(
            getvariable('day_start'), getvariable('day_end') - INTERVAL 1 HOUR, INTERVAL 1 HOUR
        )) AS hour_start
    ) h
),
reads AS (
    SELECT r.meter_id, r.interval_start, r.kwh,
           timezone(getvariable('market_tz'), r.interval_start) AS local_start
    FROM interval_reads r
    JOIN batteries b USING (meter_id)
    WHERE r.interval_start < getvariable('history_end')
      AND r.interval_start >= least(
          getvariable('history_end') - to_days(getvariable('lookback_days')::INTEGER),
          timezone(getvariable('market_tz'), date_trunc('month', getvariable('trading_day'))::TIMESTAMP)
      )
),
hourly AS (
    SELECT meter_id, local_start::DATE AS local_date, hour(local_start) AS local_hour,
           isodow(local_start::DATE) >= 6 AS is_weekend, avg(kwh) * 4 AS kw
    FROM reads
    WHERE interval_start >= getvariable('history_end') - to_days(getvariable('lookback_days')::INTEGER)
    GROUP BY ALL
),
like_days AS (
    SELECT meter_id, local_date,
           row_number() OVER (PARTITION BY meter_id, is_weekend ORDER BY local_date DESC) AS recency
    FROM (SELECT DISTINCT meter_id, local_date, is_weekend FROM hourly)
),
profile AS (
    SELECT h.meter_id, h.is_weekend, h.local_hour, avg(h.kw) AS kw,
           stddev_samp(h.kw) AS spread_kw,
           count(DISTINCT h.local_date)::INTEGER AS days
    FROM hourly h JOIN like_days d USING (meter_id, local_date)
    WHERE d.recency <= getvariable('like_days')
    GROUP BY ALL
),
month_peak AS (
    SELECT r.meter_id, max(r.kwh * 4) AS peak_kw
    FROM reads r
    JOIN stg_demand_hours w
      ON w.meter_id = r.meter_id AND w.local_hour = hour(r.local_start)
     AND (NOT w.weekdays_only OR isodow(r.local_start::DATE) <= 5)
    WHERE r.local_start::DATE >= date_trunc('month', getvariable('trading_day'))::DATE
    GROUP BY ALL
)
SELECT getvariable('trading_day'), b.meter_id, hours.hour_start, hours.hour_end,
       hours.local_hour, p.kw, coalesce(p.days, 0), greatest(coalesce(mp.peak_kw, 0), 0),
       getvariable('history_end'), p.spread_kw
FROM batteries b
CROSS JOIN hours
LEFT JOIN profile p
  ON p.meter_id = b.meter_id AND p.is_weekend = hours.is_weekend
 AND p.local_hour = hours.local_hour
LEFT JOIN month_peak mp ON mp.meter_id = b.meter_id
ORDER BY b.meter_id, hours.hour_start;
