-- meter_history: every version of every meter's attributes (slowly changing, type 2).
--
-- Input:  temp table stg_meters (one row per meter as Leap serves it now; see
--         vpp_pipeline/inventory.py) and variable loaded_at (TIMESTAMPTZ, UTC).
-- Rule:   a version is identified by attributes_hash (Leap's record minus `audit`).
--         valid_from / valid_to are when this pipeline first / last saw the version
--         (valid_to exclusive; NULL = current). A meter that Leap no longer returns is
--         closed, not deleted. Re-running with unchanged input changes nothing.

CREATE TABLE IF NOT EXISTS meter_history (
    meter_id                VARCHAR NOT NULL,
    partner_reference       VARCHAR,
    transmission_region     VARCHAR,
    customer_classification VARCHAR,
    meter_type              VARCHAR,
    load_types              VARCHAR[],
    customer_group          VARCHAR,
    tags                    VARCHAR[],
    is_archived             BOOLEAN,
    company_name            VARCHAR,
    city                    VARCHAR,
    state_or_province_code  VARCHAR,
    postal_code             VARCHAR,
    utility_name            VARCHAR,
    load_serving_entity     VARCHAR,
    tariff                  VARCHAR,
    load_zone               VARCHAR,
    device_type             VARCHAR,
    has_battery             BOOLEAN,
    battery_power_kw        DOUBLE,
    battery_energy_kwh      DOUBLE,
    battery_duration_hours  DOUBLE,
    battery_min_soc_pct     DOUBLE,
    battery_max_soc_pct     DOUBLE,
    leap_created_at         TIMESTAMPTZ,
    leap_updated_at         TIMESTAMPTZ,
    details                 JSON,
    attributes_hash         VARCHAR NOT NULL,
    valid_from              TIMESTAMPTZ NOT NULL,
    valid_to                TIMESTAMPTZ
);

-- Close the current version of meters whose attributes changed or that disappeared.
UPDATE meter_history AS h
SET valid_to = getvariable('loaded_at')
WHERE h.valid_to IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM stg_meters AS s
      WHERE s.meter_id = h.meter_id AND s.attributes_hash = h.attributes_hash
  );

-- Open a version for every meter that now has no current one (new or changed).
INSERT INTO meter_history
SELECT
    s.meter_id, s.partner_reference, s.transmission_region, s.customer_classification,
    s.meter_type, s.load_types, s.customer_group, s.tags, s.is_archived, s.company_name,
    s.city, s.state_or_province_code, s.postal_code, s.utility_name, s.load_serving_entity,
    s.tariff, s.load_zone, s.device_type, s.has_battery, s.battery_power_kw,
    s.battery_energy_kwh, s.battery_duration_hours, s.battery_min_soc_pct,
    s.battery_max_soc_pct, s.leap_created_at, s.leap_updated_at, s.details::JSON,
    s.attributes_hash, getvariable('loaded_at') AS valid_from, NULL AS valid_to
FROM stg_meters AS s
WHERE NOT EXISTS (
    SELECT 1 FROM meter_history AS h WHERE h.meter_id = s.meter_id AND h.valid_to IS NULL
);
