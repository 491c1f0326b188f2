-- Ops store schema version 2 (SQLite): which meters each dispatch event names, as rows.
-- Rule: one row per (meter_id, event_key) of dispatch_events.meter_ids, rewritten with the event, so
-- "events touching these meters" is an index lookup in the same SQL on SQLite and PostgreSQL (it was a
-- scan of every event through SQLite's json_each).

CREATE TABLE dispatch_event_meters (
    meter_id   TEXT NOT NULL,
    event_key  TEXT NOT NULL,
    PRIMARY KEY (meter_id, event_key)
);

INSERT INTO dispatch_event_meters (meter_id, event_key)
SELECT DISTINCT m.value, e.event_key
FROM dispatch_events AS e, json_each(e.meter_ids) AS m;
