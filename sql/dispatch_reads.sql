-- dispatch_reads (temp): one row per meter event in this refresh's read, for merging into
-- dispatch_events (sql/dispatch_events.sql), which keeps every event ever read.
--
-- Inputs (temp tables, see vpp_pipeline/measurement/dispatch_frames.py):
--   stg_meter_dispatch_slots  meter-level timeslots from POST /v2/dispatch/meter/search
--   stg_group_dispatch_slots  group-level timeslots (meter_ids = the group's members)
--   stg_ops_dispatch_events   the ops-store mirror (same columns as this table; may be empty)
--   nominations               nomination_kw per meter and program over [start_time, end_time)
--
-- A group event becomes one row per member meter, id '<market_group_event_id>:<meter_id>'.
-- energy_kw and nomination_kw are split in proportion to the members' nomination_kw for the
-- event's program at its start, equally when any member's nomination is unknown (or all 0).
-- An ops-store row wins over a search row with the same meter_event_id (it is the
-- dispatch path's record of what was received and acted on).
--
-- read_via says how this refresh read the row: 'ops_store' (the mirror), or the variable
-- search_read_via for search rows ('backfill' on the first run, which reads
-- VPP_DISPATCH_BACKFILL_DAYS of history; 'search' on later refreshes).

CREATE OR REPLACE TEMP TABLE dispatch_reads AS
WITH group_members AS (
    SELECT g.*, unnest(g.meter_ids) AS member_meter_id, len(g.meter_ids) AS member_count
    FROM stg_group_dispatch_slots g
),
member_nominations AS (
    SELECT
        m.market_group_event_id,
        m.member_meter_id,
        max(n.nomination_kw) AS member_nomination_kw
    FROM group_members m
    LEFT JOIN nominations n
        ON n.meter_id = m.member_meter_id
        AND n.program_identifier = m.programs[1]
        AND n.start_time <= m.start_time
        AND (n.end_time IS NULL OR m.start_time < n.end_time)
    GROUP BY ALL
),
group_nominations AS (
    -- summed in member order: a parallel sum may differ in the last bit from read to read,
    -- and an unchanged event must split identically (else every re-read is a new version)
    SELECT
        market_group_event_id,
        count(member_nomination_kw) AS known_members,
        list_sum(list(member_nomination_kw ORDER BY member_meter_id)) AS group_nomination_kw
    FROM member_nominations
    GROUP BY market_group_event_id
),
member_shares AS (
    SELECT
        m.*,
        mn.member_nomination_kw,
        g.known_members,
        g.group_nomination_kw
    FROM group_members m
    JOIN member_nominations mn USING (market_group_event_id, member_meter_id)
    JOIN group_nominations g USING (market_group_event_id)
),
group_rows AS (
    SELECT
        market_group_event_id || ':' || member_meter_id AS meter_event_id,
        * EXCLUDE (meter_ids, member_meter_id, member_count, member_nomination_kw,
            known_members, group_nomination_kw, energy_kw, nomination_kw),
        member_meter_id AS meter_id,
        energy_kw * share AS energy_kw,
        nomination_kw * share AS nomination_kw
    FROM (
        SELECT
            *,
            CASE
                WHEN known_members = member_count AND group_nomination_kw > 0
                    THEN member_nomination_kw / group_nomination_kw
                ELSE 1.0 / member_count
            END AS share
        FROM member_shares
    )
),
search_rows AS (
    SELECT *, 'search' AS source FROM stg_meter_dispatch_slots
    UNION ALL BY NAME
    SELECT * EXCLUDE (share), 'search' AS source FROM group_rows
),
all_rows AS (
    SELECT 1 AS precedence, * EXCLUDE (committed_kw) FROM stg_ops_dispatch_events
    UNION ALL BY NAME
    SELECT 2 AS precedence, * FROM search_rows
)
SELECT
    CAST(meter_event_id AS VARCHAR) AS meter_event_id,
    CAST(market_group_event_id AS VARCHAR) AS market_group_event_id,
    CAST(market_group_id AS VARCHAR) AS market_group_id,
    CAST(meter_id AS VARCHAR) AS meter_id,
    CAST(programs AS VARCHAR[]) AS programs,
    CAST(start_time AS TIMESTAMPTZ) AS start_time,
    CAST(end_time AS TIMESTAMPTZ) AS end_time,
    CAST(energy_kw AS DOUBLE) AS energy_kw,
    CAST(nomination_kw AS DOUBLE) AS nomination_kw,
    CAST(coalesce(energy_kw, nomination_kw) AS DOUBLE) AS committed_kw,
    CAST(priority AS INTEGER) AS priority,
    CAST(is_voluntary AS BOOLEAN) AS is_voluntary,
    CAST(performance_compensation_cap AS VARCHAR) AS performance_compensation_cap,
    CAST(dispatch_event_types AS VARCHAR[]) AS dispatch_event_types,
    CAST(cancelled AS BOOLEAN) AS cancelled,
    CAST(coalesce(is_test, false) AS BOOLEAN) AS is_test,
    CAST(revision AS INTEGER) AS revision,
    CAST(source AS VARCHAR) AS source,
    CAST(updated_at AS TIMESTAMPTZ) AS updated_at,
    CASE WHEN precedence = 1 THEN 'ops_store' ELSE getvariable('search_read_via') END AS read_via
FROM all_rows
QUALIFY row_number() OVER (
    PARTITION BY meter_event_id
    ORDER BY precedence, revision DESC NULLS LAST, updated_at DESC NULLS LAST
) = 1;
