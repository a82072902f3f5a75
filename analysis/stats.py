"""Statistics shared by the diagnostics: confidence intervals, slopes, paired and one-sample tests.

Every function takes plain arrays and returns plain numbers (NaN where a quantity is
undefined, e.g. a CI from one seed), so tables built on them stay rectangular.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Slope", "benjamini_hochberg", "bootstrap_ci", "fit_slope", "mean_ci", "one_sample_test",
           "paired_test", "quietly", "variance_ratio_test", "welch_test"]

CONFIDENCE = 0.95


def quietly(test, *args, **kwargs):
    """``test(*args, **kwargs)`` without scipy's RuntimeWarnings on the console (e.g. "precision
    loss … catastrophic cancellation" for nearly equal values: the p-value is still returned)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return test(*args, **kwargs)


def _finite(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def mean_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float, int]:
    """``(mean, half-width of the Student-t CI, n)`` of the finite ``values``; half-width NaN if n < 2."""
    x = _finite(values)
    if len(x) == 0:
        return float("nan"), float("nan"), 0
    if len(x) < 2:
        return float(x.mean()), float("nan"), 1
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(half), len(x)


def bootstrap_ci(values, n_resamples: int = 2000, confidence: float = CONFIDENCE,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``: percentile bootstrap CI of the mean (NaN bounds if fewer than 2 values)."""
    x = _finite(values)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(x) < 2:
        return float(x.mean()), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_resamples, len(x)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


@dataclass
class Slope:
    """Least-squares line ``y = intercept + slope · x`` with the slope's CI and p-value (H0: slope = 0)."""

    slope: float
    intercept: float
    ci_low: float
    ci_high: float
    p_value: float
    r: float
    n: int


def fit_slope(x, y, confidence: float = CONFIDENCE) -> Slope:
    """Ordinary least squares of ``y`` on ``x`` over the pairs where both are finite."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    nan = float("nan")
    if len(x) < 3 or np.ptp(x) == 0:
        return Slope(nan, nan, nan, nan, nan, nan, len(x))
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 2) * fit.stderr
    return Slope(float(fit.slope), float(fit.intercept), float(fit.slope - half), float(fit.slope + half),
                 float(fit.pvalue), float(fit.rvalue), len(x))


def paired_test(differences) -> tuple[float, str]:
    """``(p, name)``: Wilcoxon signed-rank test that paired differences centre on zero
    (NaN with fewer than 3 non-zero differences)."""
    d = _finite(differences)
    if np.count_nonzero(d) < 3:
        return float("nan"), "wilcoxon signed-rank"
    return float(quietly(stats.wilcoxon, d).pvalue), "wilcoxon signed-rank"


def one_sample_test(values) -> tuple[float, str]:
    """``(p, name)``: one-sample t-test of mean zero (NaN with fewer than 3 values or no spread)."""
    x = _finite(values)
    if len(x) < 3 or np.ptp(x) == 0:
        return float("nan"), "one-sample t"
    return float(quietly(stats.ttest_1samp, x, 0.0).pvalue), "one-sample t"


def welch_test(a, b) -> tuple[float, str]:
    """``(p, name)``: Welch's two-sample t-test (NaN unless both groups have ≥ 2 values)."""
    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return float("nan"), "welch t"
    return float(quietly(stats.ttest_ind, a, b, equal_var=False).pvalue), "welch t"


def benjamini_hochberg(p_values) -> np.ndarray:
    """False-discovery-rate adjusted p-values (NaN entries stay NaN)."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if len(finite) == 0:
        return adjusted
    order = finite[np.argsort(p[finite])]
    ranked = p[order] * len(finite) / np.arange(1, len(finite) + 1)
    adjusted[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return adjusted


def variance_ratio_test(smaller, larger, scale: float = 1.0) -> tuple[float, str]:
    """``(p, name)``: one-sided F-test that ``var(smaller) < scale² · var(larger)``.

    Indicative only when values are correlated (e.g. charges of atoms of one structure).
    """
    a, b = _finite(smaller), _finite(larger)
    if len(a) < 2 or len(b) < 2 or b.var(ddof=1) == 0 or scale <= 0:
        return float("nan"), "variance-ratio F"
    ratio = a.var(ddof=1) / (scale**2 * b.var(ddof=1))
    return float(stats.f.cdf(ratio, len(a) - 1, len(b) - 1)), "variance-ratio F"
