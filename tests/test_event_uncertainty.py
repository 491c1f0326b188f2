"""Uncertainty of delivered kW from placebo events (docs/flags.md), hand-worked, and what it
does to the flags: a good responder with one noisy event is not flagged, a non-responder is.

The expected bounds are computed here in plain Python from the same load functions that
generated the readings: each of the event's baseline days is scored as a pseudo event against
the other nine (same window, time of day and day-of adjustment), and the spread of those
errors gives a Student t prediction interval around the measured delivery.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from statistics import mean, stdev

import pytest
from scipy.stats import t as student_t
from test_performance_fixtures import add_event, add_meter, add_reads, connect, local

from vpp_pipeline.measurement import models
from vpp_pipeline.measurement.config import MeasurementConfig

NOW = datetime(2024, 9, 1, tzinfo=UTC)
EVENT_DAY = date(2024, 7, 17)  # a Wednesday
#: its ten baseline days: the weekdays before it, July 4 (a holiday) and weekends skipped
BASELINE_DAYS = [date(2024, 7, d) for d in (16, 15, 12, 11, 10, 9, 8, 5, 3, 2)]
#: extra kWh per quarter hour in the 14:00-16:00 window of each baseline day
WINDOW_EXTRA_KWH = dict(
    zip(BASELINE_DAYS, (0.30, -0.20, 0.50, -0.40, 0.10, 0.25, -0.15, 0.05, -0.35, 0.0), strict=True)
)
BASE_KWH = 2.5  # 10 kW
DELIVERED_KWH = 1.25  # the event day's window is 5 kW lower than the plain base load


def in_window(t: datetime) -> bool:
    return 14 <= t.hour < 16


def hand_meter_load(t: datetime) -> float:
    day = t.date()
    if in_window(t) and day == EVENT_DAY:
        return BASE_KWH - DELIVERED_KWH
    if in_window(t):
        return BASE_KWH + WINDOW_EXTRA_KWH.get(day, 0.0)
    return BASE_KWH  # the adjustment window [10:00, 13:00) is flat: day-of ratio 1


@pytest.fixture(scope="module")
def hand_db(tmp_path_factory):
    conn = connect(tmp_path_factory.mktemp("uncertainty") / "vpp.duckdb")
    add_meter(conn, "m-hand")
    add_reads(conn, "m-hand", date(2024, 6, 1), date(2024, 7, 18), hand_meter_load)
    add_event(conn, "e-hand", "m-hand", local(EVENT_DAY, 14), local(EVENT_DAY, 16), energy_kw=10.0)
    config = MeasurementConfig()
    models.build_baselines(conn, config)
    models.build_event_performance(conn, config, NOW)
    yield conn
    conn.close()


def test_placebo_bounds_by_hand(hand_db):
    row = hand_db.execute(
        "SELECT placebo_days, placebo_bias_kw, placebo_sd_kw, delivered_kw_uncapped, "
        "delivered_kw_low, delivered_kw_high, performance_factor_low, performance_factor_high, "
        "uncertainty_confidence, delivered_kw FROM event_performance WHERE meter_event_id = 'e-hand'"
    ).fetchone()
    days, bias_kw, sd_kw, delivered_kw, low_kw, high_kw, pf_low, pf_high, confidence, paid_kw = row
    extras = [WINDOW_EXTRA_KWH[d] for d in BASELINE_DAYS]
    # the event: baseline = base + mean extra per quarter hour (ratio 1), 8 quarter hours, 2 h
    expected_delivered_kw = 8 * (BASE_KWH + mean(extras) - (BASE_KWH - DELIVERED_KWH)) / 2
    # placebo day k: baseline = base + mean of the other nine extras; actual = base + extra_k;
    # error over the window = 8 x (mean of others - extra_k) kWh, per hour of the event / 2
    errors_kw = [
        8 * (mean(extras[:k] + extras[k + 1 :]) - extras[k]) / 2 for k in range(len(extras))
    ]
    half_width_kw = student_t.ppf(0.95, 9) * stdev(errors_kw) * math.sqrt(1 + 1 / 10)
    assert days == 10 and confidence == 0.9
    assert delivered_kw == pytest.approx(expected_delivered_kw, abs=1e-9)
    assert paid_kw == pytest.approx(expected_delivered_kw, abs=1e-9)  # no cap in play
    assert bias_kw == pytest.approx(mean(errors_kw), abs=1e-9)  # 0 here: leave-one-out
    assert sd_kw == pytest.approx(stdev(errors_kw), abs=1e-9)
    assert low_kw == pytest.approx(
        expected_delivered_kw - mean(errors_kw) - half_width_kw, abs=1e-9
    )
    assert high_kw == pytest.approx(
        expected_delivered_kw - mean(errors_kw) + half_width_kw, abs=1e-9
    )
    assert (pf_low, pf_high) == pytest.approx((low_kw / 10, high_kw / 10))
    # by the numbers: 5.04 kW delivered, errors' sd 1.29 kW, t(0.95, 9) = 1.833 -> +- 2.48 kW
    assert round(expected_delivered_kw, 2) == 5.04 and round(half_width_kw, 2) == 2.48


def test_confidence_is_configurable(tmp_path):
    conn = connect(tmp_path / "vpp.duckdb")
    add_meter(conn, "m-hand")
    add_reads(conn, "m-hand", date(2024, 6, 1), date(2024, 7, 18), hand_meter_load)
    add_event(conn, "e-hand", "m-hand", local(EVENT_DAY, 14), local(EVENT_DAY, 16))
    config = MeasurementConfig(
        defaults=MeasurementConfig().defaults.__class__(uncertainty_confidence=0.5)
    )
    models.build_baselines(conn, config)
    models.build_event_performance(conn, config, NOW)
    low, high, sd = conn.execute(
        "SELECT delivered_kw_low, delivered_kw_high, placebo_sd_kw FROM event_performance"
    ).fetchone()
    assert (high - low) / 2 == pytest.approx(student_t.ppf(0.75, 9) * sd * math.sqrt(1.1))
    with pytest.raises(ValueError, match="uncertainty_confidence"):
        MeasurementConfig().defaults.__class__(uncertainty_confidence=1.0)


# -- a noisy good responder and a true non-responder ---------------------------------------

EVENT_DAYS = (date(2024, 7, 17), date(2024, 7, 24), date(2024, 7, 31))
NOISY_EVENT_DAY = date(2024, 7, 24)
COMMITTED_KW = 10.0


def day_noise_kwh(day: date, amplitude: float) -> float:
    """A fixed, irregular extra load per day in [-amplitude, +amplitude] kWh per quarter hour."""
    return amplitude * ((day.toordinal() * 7919) % 13 - 6) / 6


def responder_load(amplitude: float, responds: bool, noisy_extra_kwh: float):
    def load(t: datetime) -> float:
        day = t.date()
        if not in_window(t):
            return 5.0
        if day in EVENT_DAYS:
            # the good responder's window on the noisy event day was 2.3 kWh per quarter hour
            # above its usual load: the 2.5 kWh it shed hardly shows against the baseline
            natural = 5.0 + (noisy_extra_kwh if day == NOISY_EVENT_DAY else 0.0)
            return natural - (COMMITTED_KW / 4 if responds else 0.0)
        return 5.0 + day_noise_kwh(day, amplitude)

    return load


@pytest.fixture(scope="module")
def responders_db(tmp_path_factory):
    conn = connect(tmp_path_factory.mktemp("responders") / "vpp.duckdb")
    for meter_id, amplitude, responds, extra in (
        ("m-good", 1.5, True, 2.3),
        ("m-none", 0.05, False, 0.0),
    ):
        add_meter(conn, meter_id)
        add_reads(
            conn,
            meter_id,
            date(2024, 6, 1),
            date(2024, 8, 1),
            responder_load(amplitude, responds, extra),
        )
        for day in EVENT_DAYS:
            add_event(
                conn,
                f"{meter_id}:{day}",
                meter_id,
                local(day, 14),
                local(day, 16),
                energy_kw=COMMITTED_KW,
                cap="up-to-nomination",
            )
    config = MeasurementConfig()
    models.build_baselines(conn, config)
    models.build_event_performance(conn, config, NOW)
    models.build_underperformers(conn, config, date(2024, 8, 1))
    yield conn
    conn.close()


def test_noisy_good_responder_is_not_flagged_and_a_non_responder_is(responders_db):
    noisy = responders_db.execute(
        "SELECT performance_factor, delivered_kw_high FROM event_performance "
        "WHERE meter_event_id = ?",
        [f"m-good:{NOISY_EVENT_DAY}"],
    ).fetchone()
    # the settlement figure alone would read "no response" (the first rule flagged this)...
    assert noisy[0] < 0.1
    # ...but the response cannot be told from the meter's own baseline noise
    assert noisy[1] > 0.1 * COMMITTED_KW
    verdicts = dict(
        responders_db.execute(
            "SELECT meter_id, reason_codes FROM underperformers WHERE as_of_date = DATE '2024-08-01'"
        ).fetchall()
    )
    assert not {"NO_RESPONSE", "LOW_PERFORMANCE"} & set(verdicts.get("m-good", []))
    assert {"NO_RESPONSE", "LOW_PERFORMANCE"} <= set(verdicts["m-none"])
    reason, evidence, pooled, pooled_high = responders_db.execute(
        "SELECT reason, evidence, pooled_performance_factor, pooled_performance_high "
        "FROM underperformers WHERE meter_id = 'm-none'"
    ).fetchone()
    # pooled by hand from the evidence: inverse-variance weights 1 / h^2, h the event's half
    # width as a share of expected kW (bias 0 here: the placebo days are alike)
    shares = [
        (
            (e["delivered_kw_uncapped"]) / e["expected_kw"],
            (e["delivered_kw_high"] - e["delivered_kw_low"]) / 2 / e["expected_kw"],
        )
        for e in evidence
    ]
    weights = [1 / h**2 for _, h in shares]
    by_hand = sum(w * p for w, (p, _) in zip(weights, shares, strict=True)) / sum(weights)
    assert pooled == pytest.approx(by_hand, abs=1e-3)
    assert pooled_high == pytest.approx(by_hand + sum(weights) ** -0.5, abs=1e-3)
    assert abs(pooled) < 0.05 and pooled_high < 0.1
    assert reason.startswith(f"LOW_PERFORMANCE: pooled performance {pooled:.2f} ("), reason
    assert "NO_RESPONSE: 3 event(s)" in reason
    assert [e["meter_event_id"] for e in evidence] == [f"m-none:{d}" for d in EVENT_DAYS]
    assert all(e["delivered_kw_high"] < 1.0 and e["no_response"] for e in evidence)


def test_insufficient_data_says_which_rule_was_not_met(tmp_path):
    """Four complete weekdays before the event (July 11, 12, 15, 16), five needed."""
    conn = connect(tmp_path / "vpp.duckdb")
    add_meter(conn, "m-short")
    add_reads(conn, "m-short", date(2024, 7, 11), date(2024, 7, 17), hand_meter_load)
    add_event(conn, "e-short", "m-short", local(EVENT_DAY, 14), local(EVENT_DAY, 16))
    config = MeasurementConfig()
    models.build_baselines(conn, config)
    models.build_event_performance(conn, config, NOW)
    row = conn.execute(
        "SELECT status, status_reason, baseline_days_found, baseline_days_wanted, "
        "event_window_completeness, delivered_kw_low FROM event_performance"
    ).fetchone()
    assert row == (
        "insufficient_data",
        "4 complete eligible week days, 5 needed (10-in-10, local days D-45 to D-1 without events)",
        4,
        10,
        1.0,
        None,
    )
