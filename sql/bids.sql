-- bids: the curve submitted per CAISO battery and UTC hour of a trading day, and Leap's
-- answer. `curve` is Leap's JSON array of {quantity_in_kw, price ($/kWh)}; an empty array
-- cancelled the hour. Input: temp table stg_bids; variable trading_day. A re-run replaces
-- the day's rows (and, at Leap, the day's bids).

CREATE TABLE IF NOT EXISTS bids AS SELECT * FROM stg_bids WITH NO DATA;

DELETE FROM bids WHERE trading_day = getvariable('trading_day');

INSERT INTO bids BY NAME SELECT * FROM stg_bids ORDER BY meter_id, hour_start;
