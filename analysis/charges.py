"""Charge diagnostics: parity against reference charges and the collapse detector.

The paper's finding 4 is that latent charges trained on energies and forces alone
collapse towards zero on MOFs. The detector compares the spread (standard deviation
over all test atoms, e) of a trial's predicted charges with the reference spread:

- with reference charges: collapsed when ``pred_std < ratio · ref_std`` (default 0.1);
- without: collapsed when ``pred_std < min_spread`` (default 0.01 e) — charges that are
  (nearly) the same on every atom carry no electrostatics whatever their mean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["charge_by_element", "charge_summary"]

COLLAPSE_RATIO = 0.1
MIN_SPREAD = 0.01  # e
_GROUP = ["run_id", "model", "split", "seed", "layers", "head"]


def charge_summary(charges: pd.DataFrame, ratio: float = COLLAPSE_RATIO, min_spread: float = MIN_SPREAD) -> pd.DataFrame:
    """One row per (trial, charge head): ``n_atoms``, ``pred_std``, ``ref_std`` (e; NaN
    without references), ``spread_ratio``, ``pred_mean_abs`` (e), ``q_mae_me`` (me),
    ``parity_r`` (Pearson r of predicted vs reference), ``collapsed`` and ``reason``."""
    if ratio <= 0 or min_spread <= 0:
        raise ValueError(f"collapse thresholds must be > 0, got ratio={ratio}, min_spread={min_spread}")
    columns = [*_GROUP, "n_atoms", "pred_std", "ref_std", "spread_ratio", "pred_mean_abs", "q_mae_me",
               "parity_r", "collapsed", "reason"]
    rows = []
    for key, group in charges.groupby(_GROUP, sort=True):
        pred = group["q_pred"].to_numpy(dtype=np.float64)
        ref = group["q_ref"].to_numpy(dtype=np.float64)
        has_ref = np.isfinite(ref)
        pred_std = float(pred.std())
        ref_std = float(ref[has_ref].std()) if has_ref.any() else np.nan
        mae = 1e3 * float(np.abs(pred[has_ref] - ref[has_ref]).mean()) if has_ref.any() else np.nan
        both = pred[has_ref]
        r = float(np.corrcoef(both, ref[has_ref])[0, 1]) if has_ref.sum() > 2 and both.std() > 0 and ref_std > 0 \
            else np.nan
        if np.isfinite(ref_std) and ref_std > 0:
            collapsed = pred_std < ratio * ref_std
            reason = (f"predicted spread {pred_std:.3g} e is {pred_std / ref_std:.2g} of the reference "
                      f"spread {ref_std:.3g} e (threshold {ratio:g})")
        else:
            collapsed = pred_std < min_spread
            reason = f"predicted spread {pred_std:.3g} e with no reference charges (threshold {min_spread:g} e)"
        rows.append({**dict(zip(_GROUP, key)), "n_atoms": len(group), "pred_std": pred_std, "ref_std": ref_std,
                     "spread_ratio": pred_std / ref_std if np.isfinite(ref_std) and ref_std > 0 else np.nan,
                     "pred_mean_abs": float(np.abs(pred).mean()), "q_mae_me": mae, "parity_r": r,
                     "collapsed": bool(collapsed), "reason": reason})
    return pd.DataFrame(rows, columns=columns)


def charge_by_element(charges: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, split, head, element): mean/std of predicted and reference charges (e)."""
    if charges.empty:
        return pd.DataFrame(columns=["model", "split", "head", "element", "n", "q_pred_mean", "q_pred_std",
                                     "q_ref_mean", "q_ref_std"])
    grouped = charges.groupby(["model", "split", "head", "element"], sort=True)
    return grouped.agg(n=("q_pred", "size"), q_pred_mean=("q_pred", "mean"), q_pred_std=("q_pred", "std"),
                       q_ref_mean=("q_ref", "mean"), q_ref_std=("q_ref", "std")).reset_index()
