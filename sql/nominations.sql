-- nominations: kW each meter is committed to per program over [start_time, end_time)
-- (UTC; NULL end_time = open-ended), as Leap serves it now.
--
-- Input: temp table stg_nominations (vpp_pipeline/inventory.py). A snapshot.

CREATE OR REPLACE TABLE nominations AS
SELECT * FROM stg_nominations
ORDER BY meter_id, program_identifier, start_time;
