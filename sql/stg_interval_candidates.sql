-- stg_interval_candidates (temp): one row per data line of Leap-format interval CSV files,
-- with each cell as text (for error messages) and parsed into types (NULL when unparsable).
--
-- Input: relation stg_interval_texts (file_name, content: each file's whole text, already
-- checked to be UTF-8 without NUL bytes; registered from Python, so no file name is ever
-- read as a glob pattern), all files with the same header; variables pos_<column> (1-based
-- position of each Leap column in that header, NULL when absent).
-- Fields are split on commas outside double quotes; surrounding quotes are removed.
-- Lines are split by DuckDB (no Python per row); line numbers count the header as line 1,
-- as Leap's error files do. Values may be wrapped in double quotes.

CREATE OR REPLACE TEMP TABLE stg_interval_candidates AS
WITH raw AS (
    SELECT file_name AS filename, string_split(replace(content, chr(13), ''), chr(10)) AS lines
    FROM stg_interval_texts
),
numbered AS (
    SELECT filename, unnest(lines) AS line, generate_subscripts(lines, 1) AS line_no
    FROM raw
),
cells AS (
    SELECT
        filename,
        line_no,
        -- Most lines have neither quotes nor blanks: a plain split is exact and fast. Lines
        -- with quotes get a quote-aware split (so "1,5" stays one, unparsable, field) and
        -- lose the quotes; lines with blanks get their fields trimmed.
        CASE
            WHEN contains(line, '"') THEN list_transform(
                regexp_extract_all(line || ',', '("(?:[^"]|"")*"|[^,"]*),', 1),
                lambda x: replace(trim(trim(x), '"'), '""', '"'))
            WHEN contains(line, ' ') OR contains(line, chr(9)) THEN list_transform(string_split(line, ','), lambda x: trim(x))
            ELSE string_split(line, ',')
        END AS f
    FROM numbered
    -- Empty lines (the file's last newline) are not rows; a blank-only line is reported.
    WHERE line_no > 1 AND line <> ''
),
texts AS (
    SELECT
        filename,
        line_no,
        len(f) AS n_fields,
        nullif(f[getvariable('pos_meter_id')], '') AS meter_id_raw,
        nullif(f[getvariable('pos_interval_start_time_utc')], '') AS start_raw,
        nullif(f[getvariable('pos_interval_end_time_utc')], '') AS end_raw,
        nullif(f[getvariable('pos_energy_net_kwh')], '') AS net_raw,
        nullif(f[getvariable('pos_energy_consumed_kwh')], '') AS consumed_raw,
        nullif(f[getvariable('pos_energy_generated_kwh')], '') AS generated_raw,
        nullif(f[getvariable('pos_final')], '') AS final_raw,
        nullif(f[getvariable('pos_region')], '') AS region_raw
    FROM cells
)
SELECT
    'csv' AS source,
    filename AS source_file,
    line_no AS source_line,
    n_fields,
    meter_id_raw,
    start_raw,
    end_raw,
    net_raw,
    consumed_raw,
    generated_raw,
    final_raw,
    region_raw,
    lower(meter_id_raw) AS meter_id,
    TRY_CAST(start_raw AS TIMESTAMPTZ) AS interval_start,
    TRY_CAST(end_raw AS TIMESTAMPTZ) AS interval_end,
    TRY_CAST(net_raw AS DOUBLE) AS net_kwh,
    TRY_CAST(consumed_raw AS DOUBLE) AS consumed_kwh,
    TRY_CAST(generated_raw AS DOUBLE) AS generated_kwh,
    CASE
        WHEN lower(final_raw) IN ('true', 't', '1', 'yes', 'y') THEN true
        WHEN lower(final_raw) IN ('false', 'f', '0', 'no', 'n') THEN false
    END AS final,
    upper(region_raw) AS region
FROM texts;
