-- bid_inputs: per CAISO battery and UTC hour of a trading day, what the optimiser planned
-- and what is left to offer (vpp_pipeline/bidding/optimize.py).
--
-- Input: temp table stg_bid_inputs (built in Python from load_forecast, day_ahead_prices,
-- tariffs, meters, enrollments and participation_preferences); variable trading_day.
-- `status` says whether the hour may be bid (BID) or why not (IDLE, DISENROLLED,
-- NOT_ENROLLED, NO_LOAD_HISTORY, NO_PRICES). `peak_load_kw` is the cautious load the
-- demand-window peak is planned against (the forecast plus a multiple of `load_spread_kw`);
-- `reserve_kw` the planned self-use discharge;
-- `peak_reserve_kwh` the energy above min SoC held at the end of the hour for the later
-- demand-window hours (kWh); `available_kw` what is offered (the planned sale plus extra
-- energy, vpp_pipeline/bidding/offers.py) and `offer_price_usd_per_kwh` the price of the
-- extra. Idempotent: the day's rows are replaced.

CREATE TABLE IF NOT EXISTS bid_inputs AS SELECT * FROM stg_bid_inputs WITH NO DATA;
-- columns added after the first release (a file built by an older version gains them)
ALTER TABLE bid_inputs ADD COLUMN IF NOT EXISTS load_spread_kw DOUBLE;
ALTER TABLE bid_inputs ADD COLUMN IF NOT EXISTS peak_load_kw DOUBLE;
ALTER TABLE bid_inputs ADD COLUMN IF NOT EXISTS peak_reserve_kwh DOUBLE;
ALTER TABLE bid_inputs ADD COLUMN IF NOT EXISTS offer_price_usd_per_kwh DOUBLE;

DELETE FROM bid_inputs WHERE trading_day = getvariable('trading_day');

INSERT INTO bid_inputs BY NAME SELECT * FROM stg_bid_inputs ORDER BY meter_id, hour_start;
