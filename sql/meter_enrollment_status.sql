-- meter_enrollment_status: one row per meter: Leap's global enrollment status, the number
-- of program enrollments, and how many required actions wait on the partner.
--
-- Input: temp table stg_meter_enrollment_status (vpp_pipeline/inventory.py). A snapshot.

CREATE OR REPLACE TABLE meter_enrollment_status AS
SELECT * FROM stg_meter_enrollment_status
ORDER BY meter_id;
