"""The plain-Python Student t quantiles the placebo bounds use, against scipy's."""

from __future__ import annotations

import math

import pytest
from scipy.special import stdtrit

from vpp_pipeline.measurement.config import MeasurementConfig
from vpp_pipeline.measurement.student_t import two_sided_t_quantile

CONFIDENCES = (0.01, 0.5, 0.8, 0.9, 0.95, 0.975, 0.99, 0.999)


def test_quantiles_equal_scipys_for_every_df_the_table_holds():
    worst = 0.0
    for confidence in CONFIDENCES:
        for df in range(1, 201):
            ours = two_sided_t_quantile(confidence, df)
            scipys = float(stdtrit(df, (1 + confidence) / 2))
            worst = max(worst, abs(ours - scipys) / scipys)
    # measured: 7.5e-13 (at confidence 0.01, t ~ 0.013), ~2e-14 for 0.8-0.99
    assert worst < 1e-11


def test_closed_forms_of_one_and_two_degrees_of_freedom():
    # df 1 is the Cauchy distribution; df 2 has P(|T| <= t) = t / sqrt(2 + t^2)
    assert two_sided_t_quantile(0.9, 1) == pytest.approx(math.tan(math.pi * 0.9 / 2), rel=1e-14)
    assert two_sided_t_quantile(0.9, 2) == pytest.approx(0.9 * math.sqrt(2 / (1 - 0.81)), rel=1e-14)


def test_frame_holds_the_configured_confidence():
    frame = MeasurementConfig().t_quantiles_frame()
    assert frame.height == 200
    row = frame.filter(frame["df"] == 9).row(0, named=True)
    assert row["t"] == pytest.approx(float(stdtrit(9, (1 + row["confidence"]) / 2)), rel=1e-12)


@pytest.mark.parametrize("confidence, df", [(0.0, 5), (1.0, 5), (0.9, 0), (0.9, 2.5)])
def test_rejects_bad_arguments(confidence, df):
    with pytest.raises(ValueError):
        two_sided_t_quantile(confidence, df)
