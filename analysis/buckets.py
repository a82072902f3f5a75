"""Errors per bucket of test structures: cluster, element, metal, size — with bias flags.

A bucket's systematic bias is the mean *signed* energy error per atom of its structures
(after averaging each structure over replicate seeds). It is flagged (``biased``) when a
one-sample t-test rejects zero mean after Benjamini–Hochberg correction over all buckets
of the table (FDR 5 %), and its size exceeds the model's overall energy MAE fraction
``min_effect`` (so a tiny but consistent offset is not called a failure).
A structure belongs to every element (and metal) it contains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from farfield.analysis.stats import benjamini_hochberg, mean_ci, one_sample_test

__all__ = ["BUCKETS", "bucket_table", "size_bins", "structure_means"]

ALPHA = 0.05
BUCKETS = ("cluster", "element", "metal", "size")
_VALUES = ("e_error_per_atom_mev", "e_abs_error_mev", "f_mae_mev", "q_mae_me")


def size_bins(n_atoms: pd.Series, n_bins: int = 4) -> pd.Series:
    """Labels like ``"13-24 atoms"`` from quantile bins of ``n_atoms``."""
    edges = np.unique(np.quantile(n_atoms, np.linspace(0, 1, n_bins + 1)).round())
    if len(edges) < 2:
        return pd.Series([f"{int(edges[0])} atoms"] * len(n_atoms), index=n_atoms.index)
    index = np.clip(np.searchsorted(edges, n_atoms, side="right") - 1, 0, len(edges) - 2)
    labels = [f"{int(edges[i])}-{int(edges[i + 1])} atoms" for i in range(len(edges) - 1)]
    return pd.Series([labels[i] for i in index], index=n_atoms.index)


def structure_means(structures: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, split, split_hash, structure): error columns averaged over seeds."""
    facts = ["parent_id", "n_atoms", "cluster", "elements", "metals", "nearest_train_distance"]
    keys = ["model", "split", "split_hash", "structure_id"]
    agg = {c: (c, "mean") for c in _VALUES if c in structures}
    agg.update({c: (c, "first") for c in facts if c in structures})
    return structures.groupby(keys, sort=True).agg(**agg).reset_index()


def _explode(means: pd.DataFrame, by: str) -> pd.DataFrame:
    if by == "cluster":
        return means.assign(bucket=means["cluster"].astype("Int64").astype(str))
    if by == "element":
        return means.assign(bucket=means["elements"].str.split()).explode("bucket")
    if by == "metal":
        metals = means["metals"].fillna("").str.split().map(lambda m: m or ["(no metal)"])
        return means.assign(bucket=metals).explode("bucket")
    if by == "size":
        return means.assign(bucket=size_bins(means["n_atoms"]))
    raise ValueError(f"bucket kind {by!r} is unknown; expected one of {BUCKETS}")


def bucket_table(structures: pd.DataFrame, by: str, min_effect: float = 0.1) -> pd.DataFrame:
    """One row per (model, split, bucket): ``n``, ``bias_mev`` (mean signed energy error,
    meV/atom) ± ``bias_ci95``, ``e_mae_mev``, ``f_mae_mev``, ``q_mae_me``, ``p_value``,
    ``p_adjusted`` (BH) and ``biased`` (see the module docstring)."""
    means = structure_means(structures)
    exploded = _explode(means, by)
    overall = means.groupby(["model", "split"])["e_abs_error_mev"].mean()
    rows = []
    for (model, split, bucket), group in exploded.groupby(["model", "split", "bucket"], sort=True):
        bias, half, n = mean_ci(group["e_error_per_atom_mev"])
        p_value, _ = one_sample_test(group["e_error_per_atom_mev"])
        rows.append({"model": model, "split": split, "bucket_kind": by, "bucket": bucket, "n": n,
                     "bias_mev": bias, "bias_ci95": half, "e_mae_mev": group["e_abs_error_mev"].mean(),
                     "f_mae_mev": group["f_mae_mev"].mean(),
                     "q_mae_me": group["q_mae_me"].mean() if "q_mae_me" in group else np.nan,
                     "p_value": p_value, "overall_e_mae_mev": overall.loc[(model, split)]})
    table = pd.DataFrame(rows, columns=["model", "split", "bucket_kind", "bucket", "n", "bias_mev", "bias_ci95",
                                        "e_mae_mev", "f_mae_mev", "q_mae_me", "p_value", "overall_e_mae_mev"])
    table["p_adjusted"] = benjamini_hochberg(table["p_value"]) if len(table) else []
    table["biased"] = ((table["p_adjusted"] < ALPHA)
                       & (table["bias_mev"].abs() > min_effect * table["overall_e_mae_mev"])).astype(bool)
    return table
