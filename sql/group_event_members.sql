-- group_event_members (temp): for each meter's share of a market-group event, whether the
-- meter was in that group for the event's program when the event started.
--
-- A group search result lists members (meter_ids) that need not be the members at each of
-- its events (Leap may list today's members, or the union over a page's events), so the
-- split of sql/dispatch_reads.sql can give a share to a meter that was never asked to join.
-- The flags judge a group share only when, at the event's start (UTC instant), the meter had
--   - an ACTIVE enrollment in the event's program (programs[1]) with the event's
--     market_group_id, its delivery period [delivery_period_start, delivery_period_end)
--     holding the start;
--   - a nomination for that program in force ([start_time, end_time), end NULL = open);
--   - no IDLE or DISENROLL participation preference over the start.
-- This is Leap's own rule for who a group event dispatches, read from the enrollment,
-- nomination and participation tables of the Manage stage.
--
-- Inputs: dispatch_events, enrollments, nominations, participation_preferences.
-- Output: meter_event_id, was_member (BOOLEAN).

CREATE OR REPLACE TEMP TABLE group_event_members AS
WITH shares AS (
    SELECT
        meter_event_id, market_group_event_id, meter_id, market_group_id,
        programs[1] AS program_identifier, start_time
    FROM dispatch_events
    WHERE market_group_event_id IS NOT NULL
),
enrolled AS (
    SELECT DISTINCT s.meter_event_id
    FROM shares s
    JOIN enrollments e
        ON e.meter_id = s.meter_id
        AND e.program_identifier = s.program_identifier
        AND e.market_group_id = s.market_group_id
        AND e.enrollment_status = 'ACTIVE'
        AND e.delivery_period_start <= s.start_time
        AND (e.delivery_period_end IS NULL OR s.start_time < e.delivery_period_end)
),
nominated AS (
    SELECT DISTINCT s.meter_event_id
    FROM shares s
    JOIN nominations n
        ON n.meter_id = s.meter_id
        AND n.program_identifier = s.program_identifier
        AND n.start_time <= s.start_time
        AND (n.end_time IS NULL OR s.start_time < n.end_time)
),
held_back AS (
    SELECT DISTINCT s.meter_event_id
    FROM shares s
    JOIN participation_preferences p
        ON p.meter_id = s.meter_id
        AND p.participation_preference IN ('IDLE', 'DISENROLL')
        AND p.start_time <= s.start_time
        AND (p.end_time IS NULL OR s.start_time < p.end_time)
)
SELECT
    meter_event_id,
    was_member,
    bool_and(was_member) OVER (PARTITION BY market_group_event_id) AS split_over_members
FROM (
    SELECT
        s.meter_event_id,
        s.market_group_event_id,
        s.meter_event_id IN (SELECT meter_event_id FROM enrolled)
            AND s.meter_event_id IN (SELECT meter_event_id FROM nominated)
            AND s.meter_event_id NOT IN (SELECT meter_event_id FROM held_back) AS was_member
    FROM shares s
);
