-- Ops store schema version 2 (PostgreSQL): which meters each dispatch event names, as rows
-- (see migrations/sqlite/0002_event_meters.sql).

CREATE TABLE dispatch_event_meters (
    meter_id   TEXT NOT NULL,
    event_key  TEXT NOT NULL,
    PRIMARY KEY (meter_id, event_key)
);

INSERT INTO dispatch_event_meters (meter_id, event_key)
SELECT DISTINCT m.value, e.event_key
FROM dispatch_events AS e, jsonb_array_elements_text(e.meter_ids::jsonb) AS m(value);
