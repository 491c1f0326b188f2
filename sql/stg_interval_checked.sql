-- stg_interval_checked (temp): every candidate row with the list of problems Leap would
-- report for it (`errors`: [{code, column_name, message}], empty = accepted).
--
-- Input: temp table stg_interval_candidates (CSV lines or API rows, same columns), table
-- meters (known meter ids), variables now (TIMESTAMPTZ: later starts/ends are "in the
-- future"), n_header_fields (fields a CSV line must have), us_states (VARCHAR[]).
-- Codes: see vpp_pipeline/intervals/codes.py. A line with the wrong number of fields gets
-- only LIN_0001/LIN_0002 (its cells cannot be trusted); otherwise every problem is listed.
-- Within one delivery a repeated (meter, interval) keeps the last line (DUP_0001 for the rest).

CREATE OR REPLACE TEMP TABLE stg_interval_checked AS
WITH known AS (
    SELECT DISTINCT lower(meter_id) AS meter_id FROM meters
),
flags AS (
    SELECT
        c.*,
        c.net_raw IS NOT NULL AND (c.net_kwh IS NULL OR NOT isfinite(c.net_kwh)) AS net_bad,
        c.consumed_raw IS NOT NULL AND (c.consumed_kwh IS NULL OR NOT isfinite(c.consumed_kwh)) AS con_bad,
        c.generated_raw IS NOT NULL AND (c.generated_kwh IS NULL OR NOT isfinite(c.generated_kwh)) AS gen_bad,
        k.meter_id IS NOT NULL AS meter_known
    FROM stg_interval_candidates AS c
    LEFT JOIN known AS k ON k.meter_id = c.meter_id
),
sets AS (
    SELECT
        *,
        NOT net_bad AND net_kwh IS NOT NULL AS has_net,
        NOT con_bad AND NOT gen_bad AND consumed_kwh IS NOT NULL AND generated_kwh IS NOT NULL
            AND consumed_kwh >= 0 AND generated_kwh >= 0 AS has_parts
    FROM flags
),
checked AS MATERIALIZED (
    SELECT
        *,
        CASE
            -- Fast path: a row that passes every rule below skips building messages. This
            -- is the negation of the rules of the ELSE branch (a known meter id is one of
            -- the portfolio's UUIDs, so MTR_0001/2/3 cannot fire).
            WHEN n_fields = getvariable('n_header_fields')
                AND meter_known
                AND interval_start IS NOT NULL AND epoch(interval_start) % 900 = 0
                AND interval_start < getvariable('now')
                AND interval_end IS NOT NULL AND epoch(interval_end) % 900 = 0
                AND interval_end <= getvariable('now')
                AND interval_end - interval_start = INTERVAL 15 MINUTE
                AND NOT net_bad AND NOT con_bad AND NOT gen_bad
                AND coalesce(consumed_kwh, 0) >= 0 AND coalesce(generated_kwh, 0) >= 0
                AND (has_net OR has_parts)
                AND NOT (has_net AND has_parts AND abs(net_kwh - (consumed_kwh - generated_kwh)) > 0.0005)
                AND (region_raw IS NULL OR list_contains(getvariable('us_states'), region))
                AND (final_raw IS NULL OR final IS NOT NULL)
                THEN []
            WHEN n_fields < getvariable('n_header_fields') THEN [{
                'code': 'LIN_0001', 'column_name': '',
                'message': format('line has {} fields, the header has {}', n_fields, getvariable('n_header_fields'))}]
            WHEN n_fields > getvariable('n_header_fields') THEN [{
                'code': 'LIN_0002', 'column_name': '',
                'message': format('line has {} fields, the header has {}', n_fields, getvariable('n_header_fields'))}]
            ELSE list_filter([
                CASE WHEN meter_id_raw IS NULL THEN {
                    'code': 'MTR_0001', 'column_name': 'meter_id', 'message': 'meter_id is missing'} END,
                CASE WHEN meter_id_raw IS NOT NULL
                      AND NOT regexp_full_match(meter_id, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}') THEN {
                    'code': 'MTR_0002', 'column_name': 'meter_id',
                    'message': format('meter_id "{}" is not a UUID', meter_id_raw)} END,
                CASE WHEN meter_id_raw IS NOT NULL AND NOT meter_known
                      AND regexp_full_match(meter_id, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}') THEN {
                    'code': 'MTR_0003', 'column_name': 'meter_id',
                    'message': format('meter {} is not in this portfolio', meter_id_raw)} END,
                CASE WHEN start_raw IS NULL THEN {
                    'code': 'STM_0001', 'column_name': 'interval_start_time_utc', 'message': 'start time is missing'} END,
                CASE WHEN start_raw IS NOT NULL AND interval_start IS NULL THEN {
                    'code': 'STM_0002', 'column_name': 'interval_start_time_utc',
                    'message': format('start time "{}" is not a timestamp', start_raw)} END,
                CASE WHEN interval_start IS NOT NULL AND epoch(interval_start) % 900 <> 0 THEN {
                    'code': 'STM_0003', 'column_name': 'interval_start_time_utc',
                    'message': format('start time {} is not on a 15-minute boundary', start_raw)} END,
                CASE WHEN interval_start IS NOT NULL AND interval_start >= getvariable('now') THEN {
                    'code': 'STM_0003', 'column_name': 'interval_start_time_utc',
                    'message': format('start time {} is in the future', start_raw)} END,
                CASE WHEN end_raw IS NULL THEN {
                    'code': 'ETM_0001', 'column_name': 'interval_end_time_utc', 'message': 'end time is missing'} END,
                CASE WHEN end_raw IS NOT NULL AND interval_end IS NULL THEN {
                    'code': 'ETM_0002', 'column_name': 'interval_end_time_utc',
                    'message': format('end time "{}" is not a timestamp', end_raw)} END,
                CASE WHEN interval_end IS NOT NULL AND epoch(interval_end) % 900 <> 0 THEN {
                    'code': 'ETM_0003', 'column_name': 'interval_end_time_utc',
                    'message': format('end time {} is not on a 15-minute boundary', end_raw)} END,
                CASE WHEN interval_end IS NOT NULL AND interval_end > getvariable('now') THEN {
                    'code': 'ETM_0003', 'column_name': 'interval_end_time_utc',
                    'message': format('end time {} is in the future', end_raw)} END,
                CASE WHEN interval_start IS NOT NULL AND interval_end IS NOT NULL
                      AND interval_end - interval_start <> INTERVAL 15 MINUTE THEN {
                    'code': 'DTR_0003', 'column_name': 'interval_end_time_utc',
                    'message': format('interval {} to {} is not 15 minutes long', start_raw, end_raw)} END,
                CASE WHEN net_bad THEN {
                    'code': 'NET_0002', 'column_name': 'energy_net_kwh',
                    'message': format('energy_net_kwh "{}" is not a number', net_raw)} END,
                CASE WHEN con_bad THEN {
                    'code': 'CON_0002', 'column_name': 'energy_consumed_kwh',
                    'message': format('energy_consumed_kwh "{}" is not a number', consumed_raw)} END,
                CASE WHEN NOT con_bad AND consumed_kwh < 0 THEN {
                    'code': 'CON_0003', 'column_name': 'energy_consumed_kwh',
                    'message': format('energy_consumed_kwh {} is negative', consumed_raw)} END,
                CASE WHEN gen_bad THEN {
                    'code': 'GEN_0002', 'column_name': 'energy_generated_kwh',
                    'message': format('energy_generated_kwh "{}" is not a number', generated_raw)} END,
                CASE WHEN NOT gen_bad AND generated_kwh < 0 THEN {
                    'code': 'GEN_0003', 'column_name': 'energy_generated_kwh',
                    'message': format('energy_generated_kwh {} is negative', generated_raw)} END,
                CASE WHEN NOT has_net AND NOT has_parts THEN {
                    'code': 'NRG_0001', 'column_name': 'energy_net_kwh',
                    'message': 'no valid energy set: give energy_net_kwh, or energy_consumed_kwh and energy_generated_kwh'} END,
                CASE WHEN has_net AND has_parts AND abs(net_kwh - (consumed_kwh - generated_kwh)) > 0.0005 THEN {
                    'code': 'NRG_0003', 'column_name': 'energy_net_kwh',
                    'message': format('energy_net_kwh {} differs from consumed {} - generated {}', net_raw, consumed_raw, generated_raw)} END,
                CASE WHEN region_raw IS NOT NULL AND NOT regexp_full_match(region, '[A-Z]{2}') THEN {
                    'code': 'REG_0002', 'column_name': 'region',
                    'message': format('region "{}" is not a two-letter state code', region_raw)} END,
                CASE WHEN region_raw IS NOT NULL AND regexp_full_match(region, '[A-Z]{2}')
                      AND NOT list_contains(getvariable('us_states'), region) THEN {
                    'code': 'REG_0003', 'column_name': 'region',
                    'message': format('region "{}" is not a US state', region_raw)} END,
                CASE WHEN final_raw IS NOT NULL AND final IS NULL THEN {
                    'code': 'FNL_0002', 'column_name': 'final',
                    'message': format('final "{}" is not true or false', final_raw)} END
            ], lambda x: x IS NOT NULL)
        END AS errors
    FROM sets
),
repeated AS (
    -- (delivery, meter, interval) keys given more than once among otherwise good rows;
    -- a hash aggregate, so the common case (no repeats) costs one pass.
    SELECT source, coalesce(source_file, '') AS file_key, meter_id, interval_start,
           max(source_line) AS last_line
    FROM checked
    WHERE len(errors) = 0
    GROUP BY ALL
    HAVING count(*) > 1
)
SELECT
    c.* EXCLUDE (errors),
    CASE WHEN len(c.errors) = 0 AND c.source_line < r.last_line THEN [{
        'code': 'DUP_0001', 'column_name': 'interval_start_time_utc',
        'message': format('meter {} interval {} appears again on line {}, which is kept', c.meter_id_raw, c.start_raw, r.last_line)}]
    ELSE c.errors END AS errors
FROM checked AS c
LEFT JOIN repeated AS r
    ON r.source = c.source AND r.file_key = coalesce(c.source_file, '')
   AND r.meter_id = c.meter_id AND r.interval_start = c.interval_start;
