-- day_ahead_prices: hourly CAISO day-ahead LMP per load zone for one trading day
-- (America/Los_Angeles calendar day; 23, 24 or 25 UTC hours), $/MWh as published and $/kWh.
--
-- Inputs: temp table stg_price_actuals (vpp_pipeline/bidding/prices.py: OASIS CSV drops or
-- the sandbox endpoint; the trading day and up to `lookback_days` before it), temp table
-- stg_price_zones(load_zone); variables trading_day (DATE), day_start / day_end
-- (TIMESTAMPTZ, the day's UTC bounds), history_start (DATE: `lookback` days before the
-- trading day or before the last published day, whichever is earlier), like_days, market_tz.
--
-- A zone whose prices for the day are not out yet gets a forecast (source = 'forecast'):
-- for each local hour of day, the mean LMP of that hour over the `like_days` most recent
-- like days (weekday vs weekend) with actual prices since history_start (staged actuals
-- and actuals already stored here).
--
-- How high the hour may clear, for pricing offers in a pay-as-bid auction: over every history
-- day at the same local hour and the hours either side (all day types pooled; evening spikes
-- are rare, pooling gives the tail enough days), price_samples realised prices, their median
-- and upper quartile (price_p50/p75_usd_per_kwh) and the 8 highest (price_tail_usd_per_kwh,
-- descending: the k-th is reached with probability about k / (samples + 1)). For a published
-- day they all equal the price. Idempotent: the day's rows are replaced.

CREATE TABLE IF NOT EXISTS day_ahead_prices (
    trading_day DATE,
    load_zone VARCHAR,
    opr_hr INTEGER,
    hour_start TIMESTAMPTZ,
    hour_end TIMESTAMPTZ,
    lmp_usd_per_mwh DOUBLE,
    price_usd_per_kwh DOUBLE,
    source VARCHAR,
    source_file VARCHAR,
    forecast_days INTEGER,
    loaded_at TIMESTAMPTZ
);
-- added after the first release (a file built by an older version gains them)
ALTER TABLE day_ahead_prices ADD COLUMN IF NOT EXISTS price_p50_usd_per_kwh DOUBLE;
ALTER TABLE day_ahead_prices ADD COLUMN IF NOT EXISTS price_p75_usd_per_kwh DOUBLE;
ALTER TABLE day_ahead_prices ADD COLUMN IF NOT EXISTS price_tail_usd_per_kwh DOUBLE[];
ALTER TABLE day_ahead_prices ADD COLUMN IF NOT EXISTS price_samples INTEGER;

DELETE FROM day_ahead_prices WHERE trading_day = getvariable('trading_day');

INSERT INTO day_ahead_prices (
    trading_day, load_zone, opr_hr, hour_start, hour_end, lmp_usd_per_mwh, price_usd_per_kwh,
    source, source_file, forecast_days, loaded_at, price_p50_usd_per_kwh,
    price_p75_usd_per_kwh, price_tail_usd_per_kwh, price_samples
)
WITH hours AS (
    SELECT
        h.hour_start,
        h.hour_start + INTERVAL 1 HOUR AS hour_end,
        row_number() OVER (ORDER BY h.hour_start)::INTEGER AS opr_hr,
        hour(timezone(getvariable('market_tz'), h.hour_start)) AS local_hour,
        isodow(getvariable('trading_day')) >= 6 AS is_weekend
    FROM (
        SELECT unnest(generate_series(
            getvariable('day_start'), getvariable('day_end') - INTERVAL 1 HOUR, INTERVAL 1 HOUR
        )) AS hour_start
    ) h
),
actual AS (
    SELECT * FROM stg_price_actuals WHERE trading_day = getvariable('trading_day')
),
history AS (
    SELECT load_zone, trading_day, hour_start, avg(lmp_usd_per_mwh) AS lmp_usd_per_mwh
    FROM (
        SELECT load_zone, trading_day, hour_start, lmp_usd_per_mwh FROM stg_price_actuals
        UNION ALL
        SELECT load_zone, trading_day, hour_start, lmp_usd_per_mwh FROM day_ahead_prices
        WHERE source <> 'forecast'
    )
    WHERE trading_day < getvariable('trading_day')
      AND trading_day >= getvariable('history_start')
    GROUP BY ALL
),
like_days AS (
    SELECT load_zone, trading_day, isodow(trading_day) >= 6 AS is_weekend,
           row_number() OVER (
               PARTITION BY load_zone, isodow(trading_day) >= 6 ORDER BY trading_day DESC
           ) AS recency
    FROM (SELECT DISTINCT load_zone, trading_day FROM history)
),
profile AS (
    SELECT h.load_zone, d.is_weekend,
           hour(timezone(getvariable('market_tz'), h.hour_start)) AS local_hour,
           avg(h.lmp_usd_per_mwh) AS lmp_usd_per_mwh,
           count(DISTINCT h.trading_day)::INTEGER AS days
    FROM history h JOIN like_days d USING (load_zone, trading_day)
    WHERE d.recency <= getvariable('like_days')
    GROUP BY ALL
),
tail AS (
    -- every history day, this local hour and its two neighbours (evening spikes are rare:
    -- pooling gives the upper quantiles enough days)
    SELECT h.load_zone, l.local_hour,
           quantile_cont(h.lmp_usd_per_mwh, 0.50) / 1000.0 AS p50,
           quantile_cont(h.lmp_usd_per_mwh, 0.75) / 1000.0 AS p75,
           list_transform(max(h.lmp_usd_per_mwh, 8), lambda x: x / 1000.0) AS tail,
           count(*)::INTEGER AS samples
    FROM history h
    JOIN (SELECT DISTINCT local_hour FROM hours) l
      ON (hour(timezone(getvariable('market_tz'), h.hour_start)) - l.local_hour + 24) % 24
         IN (0, 1, 23)
    GROUP BY ALL
),
forecast AS (
    SELECT z.load_zone, hours.*, p.lmp_usd_per_mwh, p.days
    FROM stg_price_zones z
    CROSS JOIN hours
    JOIN profile p
      ON p.load_zone = z.load_zone AND p.is_weekend = hours.is_weekend
     AND p.local_hour = hours.local_hour
    WHERE z.load_zone NOT IN (SELECT load_zone FROM actual)
)
SELECT getvariable('trading_day'), load_zone, opr_hr, hour_start, hour_end, lmp_usd_per_mwh,
       lmp_usd_per_mwh / 1000.0, source, source_file, NULL::INTEGER, now(),
       lmp_usd_per_mwh / 1000.0, lmp_usd_per_mwh / 1000.0, [lmp_usd_per_mwh / 1000.0], 1
FROM actual
UNION ALL
SELECT getvariable('trading_day'), f.load_zone, f.opr_hr, f.hour_start, f.hour_end,
       f.lmp_usd_per_mwh, f.lmp_usd_per_mwh / 1000.0, 'forecast', NULL, f.days, now(),
       t.p50, t.p75, t.tail, t.samples
FROM forecast f
LEFT JOIN tail t ON t.load_zone = f.load_zone AND t.local_hour = f.local_hour;
