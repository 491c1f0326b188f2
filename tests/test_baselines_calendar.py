"""NERC holidays and per-program measurement parameters."""

from __future__ import annotations

import json
from datetime import date

import pytest

from vpp_pipeline.measurement.config import (
    HIGH_FOUR_OF_FIVE,
    TEN_IN_TEN,
    MeasurementConfig,
    config_from_dict,
    load_measurement_config,
)
from vpp_pipeline.measurement.nerc_holidays import holidays_frame, nerc_holidays


def test_nerc_holidays_2022_2023():
    days = nerc_holidays([2022, 2023])
    assert set(days) == {
        date(2022, 1, 1),  # Saturday: not moved (NERC observes only Sunday holidays)
        date(2022, 5, 30),
        date(2022, 7, 4),
        date(2022, 9, 5),
        date(2022, 11, 24),
        date(2022, 12, 25),  # Sunday ...
        date(2022, 12, 26),  # ... observed Monday
        date(2023, 1, 1),
        date(2023, 1, 2),
        date(2023, 5, 29),
        date(2023, 7, 4),
        date(2023, 9, 4),
        date(2023, 11, 23),
        date(2023, 12, 25),
    }
    # Juneteenth, MLK, Presidents', Columbus, Veterans days are not NERC holidays
    assert date(2023, 6, 19) not in days and date(2023, 11, 10) not in days
    assert days[date(2022, 12, 26)] == "Christmas Day (observed)"


def test_holidays_frame_covers_year_range():
    frame = holidays_frame(2024, 2026)
    assert frame.height == len(nerc_holidays(range(2024, 2027)))
    assert frame["holiday_date"].min().year == 2024
    assert frame["holiday_date"].max() == date(2026, 12, 25)


def test_program_parameters_resolve_over_defaults():
    config = config_from_dict(
        {"defaults": {"clamp_high": 1.25}, "programs": {"ELRP": {"pending_grace_days": 5}}}
    )
    assert config.for_program("ELRP").pending_grace_days == 5
    assert config.for_program("ELRP").clamp_high == 1.25
    assert config.for_program("CCA").pending_grace_days == 3
    assert config.for_program("PJM-CAPACITY").weekday_method == HIGH_FOUR_OF_FIVE
    assert config.for_program("CCA").weekday_method == TEN_IN_TEN
    frame = config.parameters_frame()
    assert set(frame["program_identifier"]) == {"*", "ELRP", "PJM-CAPACITY"}


def test_pjm_method_can_be_overridden():
    config = config_from_dict({"programs": {"PJM-CAPACITY": {"weekday_method": TEN_IN_TEN}}})
    assert config.for_program("PJM-CAPACITY").weekday_method == TEN_IN_TEN


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown measurement parameters"):
        config_from_dict({"programs": {"ELRP": {"clamp_hi": 2}}})
    with pytest.raises(ValueError, match="weekday_method"):
        config_from_dict({"defaults": {"weekday_method": "5-in-10"}})


def test_config_file_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "measurement.json"
    path.write_text(json.dumps({"defaults": {"flag_window_days": 60}}))
    monkeypatch.setenv("VPP_MEASUREMENT_CONFIG", str(path))
    monkeypatch.setenv("VPP_DISPATCH_LOOKBACK_DAYS", "30")
    config = load_measurement_config()
    assert config.defaults.flag_window_days == 60
    assert config.dispatch_lookback_days == 30
    assert MeasurementConfig().dispatch_lookback_days == 120
