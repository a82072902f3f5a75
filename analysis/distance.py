"""Error against distance to the training set: binned curves and the transferability slope.

Each test structure's distance is its parent's nearest-train distance in the joint
geometry–composition metric of the split (``placement``). Per model (backbone +
long-range scheme) all its test structures are pooled over splits — random splits give
the near end, biased ones the far end — after averaging each (split, structure) over
replicate seeds, so repeated seeds do not pose as independent structures.

- :func:`distance_curves`: mean error per distance bin with a bootstrap 95 % CI, on
  bin edges shared by all models (quantiles of all distances) so curves compare.
- :func:`distance_slopes`: least-squares slope of error on distance with its CI and
  p-value (H0: no trend) — the transferability number, in error units per unit distance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from farfield.analysis.stats import bootstrap_ci, fit_slope

__all__ = ["DISTANCE", "ERROR_METRICS", "distance_curves", "distance_slopes", "per_structure_means"]

DISTANCE = "nearest_train_distance"
#: Per-structure error columns and their units.
ERROR_METRICS = {"f_mae_mev": "meV/Å", "e_abs_error_mev": "meV/atom"}


def per_structure_means(structures: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``model, split, structure_id, distance, <metric>``: replicate seeds averaged."""
    keep = structures[np.isfinite(structures[DISTANCE]) & np.isfinite(structures[metric])]
    return (keep.groupby(["model", "split", "split_hash", "structure_id"], sort=True)
            .agg(**{DISTANCE: (DISTANCE, "first"), metric: (metric, "mean")}).reset_index())


def distance_curves(structures: pd.DataFrame, metric: str = "f_mae_mev", n_bins: int = 5) -> pd.DataFrame:
    """One row per (model, bin): ``bin``, ``distance_low/high/mid``, ``n``, ``mean``, ``ci_low``, ``ci_high``."""
    if metric not in structures:
        raise ValueError(f"metric {metric!r} is not a column of the structure table; "
                         f"choose one of {sorted(ERROR_METRICS)}")
    points = per_structure_means(structures, metric)
    columns = ["model", "metric", "bin", "distance_low", "distance_high", "distance_mid", "n", "mean",
               "ci_low", "ci_high"]
    if points.empty:
        return pd.DataFrame(columns=columns)
    edges = np.unique(np.quantile(points[DISTANCE], np.linspace(0, 1, n_bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0] + 1e-12])
    points["bin"] = np.clip(np.searchsorted(edges, points[DISTANCE], side="right") - 1, 0, len(edges) - 2)
    rows = []
    for (model, bin_index), group in points.groupby(["model", "bin"], sort=True):
        mean, low, high = bootstrap_ci(group[metric])
        lo, hi = edges[bin_index], edges[bin_index + 1]
        rows.append({"model": model, "metric": metric, "bin": int(bin_index), "distance_low": lo,
                     "distance_high": hi, "distance_mid": float(group[DISTANCE].mean()), "n": len(group),
                     "mean": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=columns)


def distance_slopes(structures: pd.DataFrame, metrics=tuple(ERROR_METRICS)) -> pd.DataFrame:
    """One row per (model, metric): ``slope`` (error units per unit joint distance),
    ``ci_low``, ``ci_high``, ``p_value``, ``r``, ``intercept``, ``n``, ``unit``."""
    rows = []
    for metric in metrics:
        points = per_structure_means(structures, metric)
        for model, group in points.groupby("model", sort=True):
            fit = fit_slope(group[DISTANCE], group[metric])
            rows.append({"model": model, "metric": metric, "unit": ERROR_METRICS.get(metric, ""),
                         "slope": fit.slope, "ci_low": fit.ci_low, "ci_high": fit.ci_high, "p_value": fit.p_value,
                         "r": fit.r, "intercept": fit.intercept, "n": fit.n,
                         "splits": " ".join(sorted(group["split"].unique()))})
    return pd.DataFrame(rows, columns=["model", "metric", "unit", "slope", "ci_low", "ci_high", "p_value", "r",
                                       "intercept", "n", "splits"])
