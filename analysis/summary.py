"""Summary per (backbone × long_range × split) and the random-vs-biased gap.

Replicates of a configuration are its trials that differ only in seed (or in sampled
hyperparameters of a TPE sweep); the summary gives their mean and the half-width of a
95 % Student-t interval. The dummy baseline (per-element reference energies, zero forces;
see ``baseline``) is reported for the same test sets, and ``e_skill``/``f_skill``
= 1 − model MAE / baseline MAE make errors comparable across splits of different
difficulty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from farfield.analysis.stats import mean_ci, welch_test

__all__ = ["CONFIG_KEYS", "HEADLINE_COLUMNS", "SUMMARY_METRICS", "headline_table", "split_gap", "split_order",
           "summary_table"]

#: What distinguishes two configurations (replicates share all of these).
CONFIG_KEYS = ["backbone", "long_range", "model", "layers", "split"]
SUMMARY_METRICS = ("test/e_mae", "test/e_rmse", "test/f_mae", "test/f_rmse", "test/q_mae",
                   "train/e_mae", "train/f_mae", "baseline_e_mae", "baseline_f_mae", "e_skill", "f_skill")
RANDOM = "random"
HEADLINE_COLUMNS = ["model", "layers", "split", "n_trials", "test/f_mae_mean", "test/f_mae_ci95", "test/e_mae_mean",
                    "test/e_mae_ci95", "baseline_f_mae_mean", "baseline_e_mae_mean", "yardstick_f_mae",
                    "yardstick_e_mae"]


def with_skill(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` plus ``e_skill`` and ``f_skill`` (1 − test MAE / baseline MAE; 0 = no better than baseline)."""
    table = trials.copy()
    table["e_skill"] = 1.0 - table["test/e_mae"] / table["baseline_e_mae"]
    table["f_skill"] = 1.0 - table["test/f_mae"] / table["baseline_f_mae"]
    return table


def summary_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: ``n_trials`` and for each metric ``<m>_mean`` and ``<m>_ci95``."""
    table = with_skill(trials)
    rows = []
    for key, group in table.groupby(CONFIG_KEYS, sort=True):
        row = dict(zip(CONFIG_KEYS, key))
        row["n_trials"] = len(group)
        row["seeds"] = " ".join(str(s) for s in sorted(group["seed"].unique()))
        for metric in SUMMARY_METRICS:
            mean, half, _ = mean_ci(group[metric])
            row[f"{metric}_mean"], row[f"{metric}_ci95"] = mean, half
        rows.append(row)
    return pd.DataFrame(rows)


def split_gap(trials: pd.DataFrame, metric: str = "test/f_mae") -> pd.DataFrame:
    """How much each biased split degrades each model relative to its random split.

    One row per (model, layers, biased split) whose model also has a random-split trial:
    ``random_mean``, ``split_mean`` of ``metric``, their ``difference`` and ``ratio``, the
    same ratio for the baseline (``baseline_ratio``: how much harder the test set is
    before learning), and Welch's p-value over replicates (NaN with < 2 per side).
    """
    baseline_metric = "baseline_f_mae" if "/f_" in metric else "baseline_e_mae"
    rows = []
    for (model, layers), group in trials.groupby(["model", "layers"], sort=True):
        random = group[group["split"] == RANDOM]
        if random.empty:
            continue
        for split, biased in group[group["split"] != RANDOM].groupby("split", sort=True):
            random_mean, split_mean = random[metric].mean(), biased[metric].mean()
            p_value, test = welch_test(biased[metric], random[metric])
            rows.append({
                "model": model, "layers": layers, "split": split, "metric": metric,
                "random_mean": random_mean, "split_mean": split_mean, "difference": split_mean - random_mean,
                "ratio": split_mean / random_mean if random_mean else np.nan,
                "baseline_ratio": biased[baseline_metric].mean() / random[baseline_metric].mean(),
                "n_random": len(random), "n_split": len(biased), "p_value": p_value, "test": test,
            })
    return pd.DataFrame(rows, columns=["model", "layers", "split", "metric", "random_mean", "split_mean",
                                       "difference", "ratio", "baseline_ratio", "n_random", "n_split",
                                       "p_value", "test"])


def split_order(splits) -> list[str]:
    """The random split first, then the biased ones alphabetically."""
    return sorted(set(splits), key=lambda split: (split != RANDOM, split))


def headline_table(summary: pd.DataFrame, yardsticks: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, layers, split) of ``summary``: test force (meV/Å) and energy (meV/atom)
    MAE, mean and 95 % CI half-width over seeds, the baseline's, and the split's long-range
    yardstick (``yardstick.split_yardsticks``, averaged over the split's replicas; NaN without
    reference charges). Rows in ``split_order``, then model and depth."""
    if summary.empty:
        return pd.DataFrame(columns=HEADLINE_COLUMNS)
    table = summary.copy()
    if len(yardsticks):
        per_split = yardsticks.groupby("split")[["yardstick_f_mae", "yardstick_e_mae"]].mean().reset_index()
        table = table.merge(per_split, on="split", how="left")
    else:
        table["yardstick_f_mae"], table["yardstick_e_mae"] = np.nan, np.nan
    table["_order"] = table["split"].map({s: i for i, s in enumerate(split_order(table["split"]))})
    table = table.sort_values(["_order", "model", "layers"]).reset_index(drop=True)
    return table[HEADLINE_COLUMNS]
