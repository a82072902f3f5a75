"""Depth study: does stacking message-passing layers help short-range models out of distribution?

The paper's finding 5 is that deeper short-range models overfit rather than recover
long-range physics. For short-range trials (``long_range = none``) this module tabulates,
per (backbone, split, layers), the train and test errors and the generalisation gap
(test − train) with 95 % CIs over replicates, and fits the gap's and the test error's
slope against the number of layers (per trial, so replicates count) with p-values.
"""

from __future__ import annotations

import pandas as pd
from farfield.analysis.stats import fit_slope, mean_ci

__all__ = ["depth_slopes", "depth_table"]


def _short_range(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    table = trials[trials["long_range"] == "none"].copy()
    table["gap"] = table[f"test/{metric}"] - table[f"train/{metric}"]
    return table


def depth_table(trials: pd.DataFrame, metric: str = "f_mae") -> pd.DataFrame:
    """One row per (backbone, split, layers): ``train``, ``test``, ``gap`` means and ``*_ci95``, ``n``."""
    table = _short_range(trials, metric)
    rows = []
    for (backbone, split, layers), group in table.groupby(["backbone", "split", "layers"], sort=True):
        row = {"backbone": backbone, "split": split, "layers": layers, "metric": metric, "n": len(group)}
        for name, column in (("train", f"train/{metric}"), ("test", f"test/{metric}"), ("gap", "gap")):
            row[name], row[f"{name}_ci95"], _ = mean_ci(group[column])
        rows.append(row)
    return pd.DataFrame(rows, columns=["backbone", "split", "layers", "metric", "n", "train", "train_ci95",
                                       "test", "test_ci95", "gap", "gap_ci95"])


def depth_slopes(trials: pd.DataFrame, metric: str = "f_mae") -> pd.DataFrame:
    """One row per (backbone, split) with ≥ 2 depths: slope per layer of the gap and of the
    test error, their 95 % CIs and p-values (H0: depth has no effect)."""
    table = _short_range(trials, metric)
    rows = []
    for (backbone, split), group in table.groupby(["backbone", "split"], sort=True):
        if group["layers"].nunique() < 2:
            continue
        gap, test = fit_slope(group["layers"], group["gap"]), fit_slope(group["layers"], group[f"test/{metric}"])
        rows.append({"backbone": backbone, "split": split, "metric": metric,
                     "layers": " ".join(str(v) for v in sorted(group["layers"].unique())), "n": len(group),
                     "gap_slope": gap.slope, "gap_ci_low": gap.ci_low, "gap_ci_high": gap.ci_high,
                     "gap_p_value": gap.p_value, "test_slope": test.slope, "test_ci_low": test.ci_low,
                     "test_ci_high": test.ci_high, "test_p_value": test.p_value})
    return pd.DataFrame(rows, columns=["backbone", "split", "metric", "layers", "n", "gap_slope", "gap_ci_low",
                                       "gap_ci_high", "gap_p_value", "test_slope", "test_ci_low", "test_ci_high",
                                       "test_p_value"])
