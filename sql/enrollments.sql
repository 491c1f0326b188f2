-- enrollments: one row per meter, program and delivery period, as Leap serves it now
-- (delivery period bounds in UTC).
--
-- Input: temp table stg_enrollments (vpp_pipeline/inventory.py). A snapshot: re-running
-- with the same input gives the same table, row order included.

CREATE OR REPLACE TABLE enrollments AS
SELECT * FROM stg_enrollments
ORDER BY meter_id, program_identifier, delivery_period;
