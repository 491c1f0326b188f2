"""The packaged tariffs file: every sandbox code covered, TOU periods and demand windows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vpp_pipeline.bidding.tariffs import TARIFF_MISSING, TARIFF_UNKNOWN, load_tariffs
from vpp_pipeline.sandbox import TARIFF_CODES


def test_every_sandbox_tariff_code_is_configured():
    book = load_tariffs()
    for code in TARIFF_CODES:
        tariff, reason = book.resolve(code)
        assert reason is None and tariff.code == code


def test_unknown_and_missing_codes_fall_back_with_a_reason():
    book = load_tariffs()
    assert book.resolve("NOPE-1")[1] == TARIFF_UNKNOWN
    assert book.resolve(None) == (book.tariffs[book.fallback_code], TARIFF_MISSING)


def test_tou_rates_and_demand_window_follow_local_time():
    tariff = load_tariffs().tariffs["PGE-B19"]
    # Wed 2026-07-15: 17:00 PDT = 00:00 UTC next day; 03:00 PDT = 10:00 UTC
    hours = [datetime(2026, 7, 16, 0, tzinfo=UTC), datetime(2026, 7, 15, 10, tzinfo=UTC)]
    assert tariff.energy_usd_per_kwh(hours).tolist() == [0.21, 0.13]
    assert tariff.in_demand_window(hours).tolist() == [True, False]
    # Saturday evening: part-peak rate, outside the weekday demand window
    saturday = [datetime(2026, 7, 19, 0, tzinfo=UTC)]
    assert tariff.period_names(saturday) == ["part_peak"]
    assert tariff.in_demand_window(saturday).tolist() == [False]


def test_a_tariff_with_uncovered_hours_is_rejected(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(
        'fallback = "X"\n[tariffs.X]\nperiods = [{name = "day", start_hour = 8, '
        "end_hour = 20, energy_usd_per_kwh = 0.2}]\n"
    )
    with pytest.raises(ValueError, match="no rate"):
        load_tariffs(path)
