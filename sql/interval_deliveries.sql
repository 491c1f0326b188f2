-- interval_deliveries: every accepted interval row of every delivery (CSV file or API
-- fetch), kept as delivered. interval_reads is derived from it, so a partition can be
-- rebuilt at any time and a correction never loses what it corrected.
--
-- Input: temp table stg_interval_checked, variables loaded_at (TIMESTAMPTZ, this load),
-- market_tz (the market's zone, e.g. America/Los_Angeles: local_date is the market-local
-- calendar day of interval_start); temp table stg_interval_files (file_name, delivered_at:
-- when each file landed; API rows, with no file, count as delivered at loaded_at).
-- kwh is net consumption (export negative): energy_net_kwh, else consumed - generated.
-- An API row identical to the latest API delivery of the same interval is not stored
-- again, so re-fetching unchanged data changes nothing.

CREATE TABLE IF NOT EXISTS interval_deliveries (
    meter_id       VARCHAR NOT NULL,
    interval_start TIMESTAMPTZ NOT NULL,
    interval_end   TIMESTAMPTZ NOT NULL,
    local_date     DATE NOT NULL,
    kwh            DOUBLE NOT NULL,
    consumed_kwh   DOUBLE,
    generated_kwh  DOUBLE,
    final          BOOLEAN NOT NULL,
    region         VARCHAR,
    source         VARCHAR NOT NULL,
    source_file    VARCHAR,
    source_line    INTEGER,
    delivered_at   TIMESTAMPTZ NOT NULL,
    loaded_at      TIMESTAMPTZ NOT NULL
);

CREATE OR REPLACE TEMP TABLE stg_interval_accepted AS
SELECT
    c.meter_id,
    c.interval_start,
    c.interval_end,
    CAST(timezone(getvariable('market_tz'), c.interval_start) AS DATE) AS local_date,
    coalesce(c.net_kwh, c.consumed_kwh - c.generated_kwh) AS kwh,
    c.consumed_kwh,
    c.generated_kwh,
    coalesce(c.final, false) AS final,
    c.region,
    c.source,
    c.source_file,
    c.source_line,
    coalesce(f.delivered_at, getvariable('loaded_at')) AS delivered_at,
    getvariable('loaded_at') AS loaded_at
FROM stg_interval_checked AS c
LEFT JOIN stg_interval_files AS f ON f.file_name = c.source_file
WHERE len(c.errors) = 0;

INSERT INTO interval_deliveries
WITH latest_api AS (
    SELECT d.meter_id, d.interval_start, d.kwh, d.consumed_kwh, d.generated_kwh, d.final
    FROM interval_deliveries AS d
    SEMI JOIN (SELECT meter_id, interval_start FROM stg_interval_accepted WHERE source = 'api') AS k
        USING (meter_id, interval_start)
    WHERE d.source = 'api'
    QUALIFY row_number() OVER (PARTITION BY d.meter_id, d.interval_start ORDER BY d.delivered_at DESC) = 1
)
SELECT a.*
FROM stg_interval_accepted AS a
LEFT JOIN latest_api AS l
    ON a.source = 'api' AND l.meter_id = a.meter_id AND l.interval_start = a.interval_start
WHERE NOT (
    l.meter_id IS NOT NULL
    AND l.kwh IS NOT DISTINCT FROM a.kwh
    AND l.consumed_kwh IS NOT DISTINCT FROM a.consumed_kwh
    AND l.generated_kwh IS NOT DISTINCT FROM a.generated_kwh
    AND l.final = a.final
)
-- Sorted by day so that each partition's rows sit together (DuckDB zone maps).
ORDER BY a.local_date;
