-- bid_inputs: per CAISO battery and UTC hour of a trading day, what the optimiser planned
-- and what is left to offer (vpp_pipeline/bidding/optimize.py).
--
-- Input: temp table stg_bid_inputs (built in Python from load_forecast, day_ahead_prices,
-- tariffs, meters, enrollments and participation_preferences); variable trading_day.
-- `status` says whether the hour may be bid (BID) or why not (IDLE, DISENROLLED,
-- NOT_ENROLLED, NO_LOAD_HISTORY, NO_PRICES). Idempotent: the day's rows are replaced.

CREATE TABLE IF NOT EXISTS bid_inputs AS SELECT * FROM stg_bid_inputs WITH NO DATA;

DELETE FROM bid_inputs WHERE trading_day = getvariable('trading_day');

INSERT INTO bid_inputs BY NAME SELECT * FROM stg_bid_inputs ORDER BY meter_id, hour_start;
