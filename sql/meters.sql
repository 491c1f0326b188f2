-- meters: the current version of each meter Leap serves (one row per meter_id).
--
-- Built from meter_history (run meter_history.sql first), so the two never disagree.
-- `version_valid_from` is when this pipeline first saw the current attributes (UTC).

CREATE OR REPLACE TABLE meters AS
SELECT
    * EXCLUDE (valid_from, valid_to),
    valid_from AS version_valid_from
FROM meter_history
WHERE valid_to IS NULL
ORDER BY meter_id;
