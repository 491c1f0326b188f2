"""Two-sided Student t quantiles for whole degrees of freedom, in plain Python.

The placebo-event bounds need t such that P(|T| <= t) = confidence for 1..200 degrees of
freedom. Importing scipy for that costs ~0.2 s on every run of the Analyze stage; for a
whole number of degrees of freedom the distribution function has a closed form (a finite
sum, Abramowitz & Stegun 26.7.3 and 26.7.4), so Newton's method on it gives the quantile to
machine precision (tests compare it with scipy's).
"""

from __future__ import annotations

import math


def _two_sided_probability(theta: float, df: int) -> float:
    """P(|T| <= sqrt(df) tan(theta)) for T ~ Student t with ``df`` degrees of freedom,
    0 <= theta < pi / 2."""
    sin_t, cos_t = math.sin(theta), math.cos(theta)
    cos2 = cos_t * cos_t
    term, total = 1.0, 1.0
    if df % 2 == 1:
        # (2/pi) (theta + sin cos (1 + 2/3 cos^2 + (2 4)/(3 5) cos^4 + ...)), df - 3 at most
        if df == 1:
            return 2.0 * theta / math.pi
        for k in range(2, df - 1, 2):
            term *= cos2 * k / (k + 1)
            total += term
        return 2.0 / math.pi * (theta + sin_t * cos_t * total)
    # sin (1 + 1/2 cos^2 + (1 3)/(2 4) cos^4 + ...), df - 2 at most
    for k in range(1, df - 2, 2):
        term *= cos2 * k / (k + 1)
        total += term
    return sin_t * total


def two_sided_t_quantile(confidence: float, df: int) -> float:
    """t with P(|T| <= t) = ``confidence`` (0 < confidence < 1), i.e. the (1 + confidence) / 2
    quantile of Student's t with ``df`` >= 1 whole degrees of freedom."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a whole number >= 1, got {df!r}")
    df = int(df)
    # d P / d theta = 2 sqrt(df) c cos^(df - 1) theta, c the density's constant
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    slope = 2.0 * math.sqrt(df) * math.exp(log_c)
    low, high = 0.0, math.pi / 2
    # start from the normal quantile (close for large df), then safeguarded Newton on theta
    z = _normal_two_sided_quantile(confidence)
    theta = math.atan(z / math.sqrt(df))
    for _ in range(60):
        error = _two_sided_probability(theta, df) - confidence
        if error == 0.0:
            break
        if error > 0:
            high = theta
        else:
            low = theta
        candidate = theta - error / (slope * math.cos(theta) ** (df - 1))
        if not low < candidate < high:
            candidate = (low + high) / 2  # Newton left the bracket: bisect instead
        converged = abs(candidate - theta) <= 1e-15 * theta
        theta = candidate
        if converged:
            break
    return math.sqrt(df) * math.tan(theta)


def _normal_two_sided_quantile(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf((1 + confidence) / 2)
