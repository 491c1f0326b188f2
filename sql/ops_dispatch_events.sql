-- ops_dispatch_events: the ops store's dispatch events (mirrored; the dispatch path never opens DuckDB).
-- One row per event and meter. Group events are split across the group's meters in proportion to their
-- nominations: meter_event_id = '<market_group_event_id>:<meter_id>', energy_kw / nomination_kw are this
-- meter's share. committed_kw = energy_kw, or nomination_kw when energy_kw is null (docs/methodology.md).
-- Input: temp table stg_ops_dispatch_events (vpp_pipeline.dispatch.mirror). Times are UTC.
CREATE OR REPLACE TABLE ops_dispatch_events AS
SELECT
    CAST(meter_event_id AS VARCHAR)                    AS meter_event_id,
    CAST(market_group_event_id AS VARCHAR)             AS market_group_event_id,
    CAST(market_group_id AS VARCHAR)                   AS market_group_id,
    CAST(meter_id AS VARCHAR)                          AS meter_id,
    CAST(programs AS VARCHAR[])                        AS programs,
    CAST(start_time AS TIMESTAMPTZ)                    AS start_time,
    CAST(end_time AS TIMESTAMPTZ)                      AS end_time,
    CAST(energy_kw AS DOUBLE)                          AS energy_kw,
    CAST(nomination_kw AS DOUBLE)                      AS nomination_kw,
    CAST(coalesce(energy_kw, nomination_kw) AS DOUBLE) AS committed_kw,
    CAST(priority AS INTEGER)                          AS priority,
    CAST(is_voluntary AS BOOLEAN)                      AS is_voluntary,
    CAST(performance_compensation_cap AS VARCHAR)      AS performance_compensation_cap,
    CAST(dispatch_event_types AS VARCHAR[])            AS dispatch_event_types,
    CAST(cancelled AS BOOLEAN)                         AS cancelled,
    CAST(is_test AS BOOLEAN)                           AS is_test,
    CAST(revision AS INTEGER)                          AS revision,
    CAST(source AS VARCHAR)                            AS source,
    CAST(updated_at AS TIMESTAMPTZ)                    AS updated_at
FROM stg_ops_dispatch_events
ORDER BY start_time, meter_event_id;
