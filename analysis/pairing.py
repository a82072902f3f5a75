"""Where long-range helps: paired per-structure differences against the short-range twin.

A long-range model (``painn+celli``) is paired with the short-range model of the same
backbone and depth on the same split (same split hash, so the same test structures).
Each structure's errors are averaged over replicate seeds on either side; the
difference long-range − short-range is negative where long-range helps. Summaries give
the mean difference with a 95 % CI, the fraction of structures improved and a Wilcoxon
signed-rank p-value; :func:`help_by_bucket` breaks the differences down by cluster
(or another structure column) to show *where* it helps.
"""

from __future__ import annotations

import pandas as pd
from farfield.analysis.stats import mean_ci, paired_test

__all__ = ["PAIR_METRICS", "help_by_bucket", "paired_differences", "paired_summary"]

PAIR_METRICS = ("f_mae_mev", "e_abs_error_mev")
_KEYS = ["backbone", "layers", "split", "split_hash", "structure_id"]
_FACTS = ["cluster", "nearest_train_distance", "n_atoms", "metals"]


def paired_differences(structures: pd.DataFrame) -> pd.DataFrame:
    """One row per (long-range model, split, structure): ``<metric>_lr``, ``<metric>_sr``
    and ``<metric>_diff`` (= lr − sr) for each of ``PAIR_METRICS``, plus cluster/distance."""
    metrics = [m for m in PAIR_METRICS if m in structures]
    means = (structures.groupby([*_KEYS, "long_range", "model"], sort=True)
             .agg(**{m: (m, "mean") for m in metrics}, **{f: (f, "first") for f in _FACTS if f in structures})
             .reset_index())
    short = means[means["long_range"] == "none"]
    long = means[means["long_range"] != "none"]
    if short.empty or long.empty:
        return pd.DataFrame(columns=["model", "reference_model", *_KEYS])
    paired = long.merge(short[[*_KEYS, "model", *metrics]], on=_KEYS, suffixes=("_lr", "_sr"))
    paired = paired.rename(columns={"model_lr": "model", "model_sr": "reference_model"})
    for metric in metrics:
        paired[f"{metric}_diff"] = paired[f"{metric}_lr"] - paired[f"{metric}_sr"]
    return paired


def paired_summary(differences: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, split, metric): ``n``, ``mean_diff`` ± ``ci95``, ``relative``
    (mean diff / short-range mean), ``fraction_improved``, ``p_value`` (Wilcoxon)."""
    rows = []
    for metric in PAIR_METRICS:
        if f"{metric}_diff" not in differences:
            continue
        for (model, reference, layers, split), group in differences.groupby(
                ["model", "reference_model", "layers", "split"], sort=True):
            diff = group[f"{metric}_diff"]
            mean, half, n = mean_ci(diff)
            p_value, test = paired_test(diff)
            reference_mean = group[f"{metric}_sr"].mean()
            rows.append({"model": model, "reference_model": reference, "layers": layers, "split": split,
                         "metric": metric, "n": n, "mean_diff": mean, "ci95": half,
                         "relative": mean / reference_mean if reference_mean else float("nan"),
                         "fraction_improved": float((diff < 0).mean()), "p_value": p_value, "test": test})
    return pd.DataFrame(rows, columns=["model", "reference_model", "layers", "split", "metric", "n", "mean_diff",
                                       "ci95", "relative", "fraction_improved", "p_value", "test"])


def help_by_bucket(differences: pd.DataFrame, by: str = "cluster", metric: str = "f_mae_mev") -> pd.DataFrame:
    """One row per (model, split, ``by`` value): ``n``, ``mean_diff`` ± ``ci95``, ``p_value``."""
    rows = []
    if differences.empty or by not in differences:
        return pd.DataFrame(columns=["model", "split", by, "n", "mean_diff", "ci95", "p_value"])
    for (model, split, bucket), group in differences.groupby(["model", "split", by], sort=True):
        mean, half, n = mean_ci(group[f"{metric}_diff"])
        rows.append({"model": model, "split": split, by: bucket, "n": n, "mean_diff": mean, "ci95": half,
                     "p_value": paired_test(group[f"{metric}_diff"])[0]})
    return pd.DataFrame(rows, columns=["model", "split", by, "n", "mean_diff", "ci95", "p_value"])
