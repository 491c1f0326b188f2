-- participation_preferences: each meter's PARTICIPATE / IDLE / DISENROLL windows
-- (UTC, start inclusive, end exclusive, NULL end = open-ended).
--
-- Input: temp table stg_participation_preferences (vpp_pipeline/inventory.py). A snapshot.

CREATE OR REPLACE TABLE participation_preferences AS
SELECT * FROM stg_participation_preferences
ORDER BY meter_id, start_time, participation_preference;
