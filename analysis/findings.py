"""Automatic findings: short plain-language statements, each with its numbers and a test.

Every finding names the comparison, the effect in the report's units, the test used and
its p-value; ``significant`` is True/False at ``ALPHA``, or None where too few values
made a test impossible (said in the text, never hidden). Rules, in report order:

1. best model per split (force MAE), against the runner-up;
2. where long-range helps: paired per-structure differences against the short-range twin;
3. how much each biased split degrades each model relative to random;
4. the transferability slope of error on distance to train;
5. charge collapse (one-sided variance-ratio F-test: spread below 0.1 × the reference spread);
6. depth: the train→test gap per extra layer of short-range models;
7. models no better than the reference-energy baseline;
8. clusters with a significant systematic energy bias;
9. MD stability per scheme (descriptive, no test: a handful of trajectories).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from farfield.analysis.buckets import structure_means
from farfield.analysis.charges import COLLAPSE_RATIO
from farfield.analysis.diagnostics import Diagnostics
from farfield.analysis.stats import paired_test, variance_ratio_test, welch_test

__all__ = ["ALPHA", "Finding", "derive_findings"]

ALPHA = 0.05


@dataclass
class Finding:
    """One statement. ``numbers``: the values it rests on; ``test``/``p_value``: its test."""

    kind: str
    text: str
    numbers: dict = field(default_factory=dict)
    test: str = ""
    p_value: float = float("nan")

    @property
    def significant(self) -> bool | None:
        return None if not math.isfinite(self.p_value) else bool(self.p_value < ALPHA)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["significant"] = self.significant
        data["p_value"] = None if not math.isfinite(self.p_value) else self.p_value
        data["numbers"] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                           for k, v in self.numbers.items()}
        return data


def _p_text(p_value: float, test: str) -> str:
    if not math.isfinite(p_value):
        return f"too few values for a {test} test"
    verdict = "significant" if p_value < ALPHA else "not significant"
    return f"{test} p = {p_value:.2g}, {verdict} at {ALPHA:g}"


def _best_per_split(d: Diagnostics) -> list[Finding]:
    findings = []
    means = structure_means(d.structures) if not d.structures.empty else pd.DataFrame()
    for split, group in d.summary.groupby("split", sort=True):
        ranked = group.sort_values("test/f_mae_mean")
        if len(ranked) < 2:
            continue
        best, second = ranked.iloc[0], ranked.iloc[1]
        best_label, second_label = _label(best), _label(second)
        a = means[(means["model"] == best["model"]) & (means["split"] == split)]
        b = means[(means["model"] == second["model"]) & (means["split"] == split)]
        common = a.merge(b, on=["split_hash", "structure_id"], suffixes=("_a", "_b"))
        if len(common) >= 3 and best["layers"] == second["layers"]:
            p_value, test = paired_test(common["f_mae_mev_a"] - common["f_mae_mev_b"])
            basis = f"paired over {len(common)} test structures"
        else:
            trials = d.trials[d.trials["split"] == split]
            p_value, test = welch_test(trials.loc[_same(trials, best), "test/f_mae"],
                                       trials.loc[_same(trials, second), "test/f_mae"])
            basis = f"over {int(best['n_trials'])} vs {int(second['n_trials'])} trials"
        gain = 1 - best["test/f_mae_mean"] / second["test/f_mae_mean"]
        findings.append(Finding(
            "best_model",
            f"On the {split} split, {best_label} has the lowest test force MAE ({best['test/f_mae_mean']:.1f} meV/Å), "
            f"{100 * gain:.0f} % below the runner-up {second_label} ({second['test/f_mae_mean']:.1f} meV/Å); "
            f"{_p_text(p_value, test)} ({basis}).",
            {"split": split, "best": best_label, "best_f_mae": float(best["test/f_mae_mean"]),
             "runner_up": second_label, "runner_up_f_mae": float(second["test/f_mae_mean"]), "relative_gain": gain},
            test, p_value))
    return findings


def _label(row) -> str:
    return f"{row['model']} ({int(row['layers'])}-layer)"


def _same(trials: pd.DataFrame, row) -> pd.Series:
    return (trials["model"] == row["model"]) & (trials["layers"] == row["layers"])


def _long_range_helps(d: Diagnostics) -> list[Finding]:
    findings = []
    for _, row in d.pair_summary[d.pair_summary["metric"] == "f_mae_mev"].iterrows():
        helps = row["mean_diff"] < 0
        findings.append(Finding(
            "long_range_helps",
            f"On the {row['split']} split, {row['model']} {'lowers' if helps else 'raises'} the force error against "
            f"{row['reference_model']} by {abs(row['mean_diff']):.1f} meV/Å per structure on average "
            f"({100 * row['relative']:+.0f} %), improving {100 * row['fraction_improved']:.0f} % of "
            f"{int(row['n'])} test structures; {_p_text(row['p_value'], row['test'])}.",
            {k: row[k] for k in ("model", "reference_model", "split", "mean_diff", "ci95", "relative",
                                 "fraction_improved", "n")}, row["test"], row["p_value"]))
    return findings


def _split_gap(d: Diagnostics) -> list[Finding]:
    return [Finding(
        "split_gap",
        f"The {row['split']} split raises the test force MAE of {row['model']} ({int(row['layers'])}-layer) "
        f"{row['ratio']:.2f}× over the random split ({row['random_mean']:.1f} → {row['split_mean']:.1f} meV/Å; "
        f"the reference-energy baseline changes {row['baseline_ratio']:.2f}×); {_p_text(row['p_value'], row['test'])}.",
        {k: row[k] for k in ("model", "layers", "split", "random_mean", "split_mean", "ratio", "baseline_ratio")},
        row["test"], row["p_value"]) for _, row in d.gap.iterrows()]


def _distance_slopes(d: Diagnostics) -> list[Finding]:
    findings = []
    for _, row in d.distance_slopes.iterrows():
        if not math.isfinite(row["slope"]):
            continue
        what = "force" if row["metric"] == "f_mae_mev" else "energy"
        findings.append(Finding(
            "distance_slope",
            f"For {row['model']}, the {what} error changes by {row['slope']:+.1f} {row['unit']} per unit of "
            f"joint distance to the training set (95 % CI {row['ci_low']:+.1f} to {row['ci_high']:+.1f}, "
            f"{int(row['n'])} structures over splits {row['splits']}); {_p_text(row['p_value'], 'linear-regression')}.",
            {k: row[k] for k in ("model", "metric", "slope", "ci_low", "ci_high", "n", "r")},
            "linear regression (slope = 0)", row["p_value"]))
    return findings


def _charge_collapse(d: Diagnostics) -> list[Finding]:
    findings = []
    for (model, split, head), group in d.charge_summary.groupby(["model", "split", "head"], sort=True):
        collapsed = group[group["collapsed"]]
        charges = d.charges[(d.charges["model"] == model) & (d.charges["split"] == split) &
                            (d.charges["head"] == head)]
        p_value, test = variance_ratio_test(charges["q_pred"], charges["q_ref"], scale=COLLAPSE_RATIO)
        test = f"{test} (spread below {COLLAPSE_RATIO:g} x reference)"
        runs = ", ".join(r[:8] for r in collapsed["run_id"])
        numbers = {"model": model, "split": split, "head": head, "n_trials": len(group),
                   "n_collapsed": len(collapsed), "pred_std": float(group["pred_std"].mean()),
                   "ref_std": float(group["ref_std"].mean()), "collapsed_runs": list(collapsed["run_id"])}
        if len(collapsed):
            text = (f"The {head} charges of {model} on the {split} split collapsed in {len(collapsed)} of "
                    f"{len(group)} trials (runs {runs}): {collapsed.iloc[0]['reason']}; {_p_text(p_value, test)}.")
        else:
            text = (f"The {head} charges of {model} on the {split} split did not collapse: spread "
                    f"{numbers['pred_std']:.3g} e against a reference spread of {numbers['ref_std']:.3g} e; "
                    f"{_p_text(p_value, test)}.")
        findings.append(Finding("charge_collapse", text, numbers, test, p_value))
    return findings


def _depth(d: Diagnostics) -> list[Finding]:
    findings = []
    for _, row in d.depth_slopes.iterrows():
        if not math.isfinite(row["gap_slope"]):
            continue
        verdict = "more overfitting" if row["gap_slope"] > 0 else "a smaller train→test gap"
        findings.append(Finding(
            "depth",
            f"For short-range {row['backbone']} on the {row['split']} split (layers {row['layers']}), each extra "
            f"layer changes the train→test force gap by {row['gap_slope']:+.1f} meV/Å ({verdict}) and the test force "
            f"MAE by {row['test_slope']:+.1f} meV/Å; {_p_text(row['gap_p_value'], 'linear-regression')}.",
            {k: row[k] for k in ("backbone", "split", "layers", "gap_slope", "gap_ci_low", "gap_ci_high",
                                 "test_slope", "test_p_value", "n")},
            "linear regression (slope = 0)", row["gap_p_value"]))
    return findings


def _baseline(d: Diagnostics) -> list[Finding]:
    findings = []
    means = structure_means(d.structures) if not d.structures.empty else pd.DataFrame()
    baseline = d.structures.groupby(["model", "split", "split_hash", "structure_id"])["baseline_f_mae_mev"].mean()
    for (model, split), group in means.groupby(["model", "split"], sort=True):
        reference = baseline.loc[list(zip(group["model"], group["split"], group["split_hash"], group["structure_id"]))]
        difference = group["f_mae_mev"].to_numpy() - reference.to_numpy()
        p_value, test = paired_test(difference)
        if np.nanmean(difference) < 0 and (not math.isfinite(p_value) or p_value < ALPHA):
            continue
        findings.append(Finding(
            "no_better_than_baseline",
            f"{model} on the {split} split is not clearly better than the zero-force reference-energy baseline: "
            f"force MAE {np.nanmean(group['f_mae_mev']):.1f} vs {np.nanmean(reference):.1f} meV/Å; "
            f"{_p_text(p_value, test)}. Check its training before reading its other numbers.",
            {"model": model, "split": split, "f_mae": float(np.nanmean(group["f_mae_mev"])),
             "baseline_f_mae": float(np.nanmean(reference))}, test, p_value))
    return findings


def _biased_clusters(d: Diagnostics) -> list[Finding]:
    table = d.buckets.get("cluster", pd.DataFrame())
    findings = []
    for (model, split), group in table[table["biased"]].groupby(["model", "split"], sort=True) if len(table) else []:
        worst = group.loc[group["bias_mev"].abs().idxmax()]
        findings.append(Finding(
            "cluster_bias",
            f"{model} on the {split} split has a significant systematic energy bias in {len(group)} cluster(s); the "
            f"largest is cluster {worst['bucket']} at {worst['bias_mev']:+.1f} ± {worst['bias_ci95']:.1f} meV/atom "
            f"over {int(worst['n'])} structures (one-sample t, BH-adjusted p = {worst['p_adjusted']:.2g}).",
            {"model": model, "split": split, "clusters": list(group["bucket"]), "worst_cluster": worst["bucket"],
             "worst_bias_mev": float(worst["bias_mev"])}, "one-sample t (BH-adjusted)", float(worst["p_adjusted"])))
    return findings


def _md_probe(d: Diagnostics) -> list[Finding]:
    if d.md_probe.empty:
        return []
    from farfield.analysis.md_probe import probe_summary

    findings = []
    for _, row in probe_summary(d.md_probe).iterrows():
        findings.append(Finding(
            "md_stability",
            f"In short NVE runs on held-out MOFs, {row['model']} (probed trials of the {row['split']} split) kept "
            f"{100 * row['fraction_intact']:.0f} % of {int(row['n_trajectories'])} structures intact "
            f"({100 * row['fraction_exploded']:.0f} % exploded); median |energy drift| "
            f"{row['median_abs_drift_mev_per_atom_ps']:.3g} meV/atom/ps. Descriptive: too few trajectories for a test.",
            {k: row[k] for k in ("model", "split", "n_trajectories", "fraction_intact", "fraction_exploded",
                                 "median_abs_drift_mev_per_atom_ps")}, "none (descriptive)"))
    return findings


RULES = (_best_per_split, _long_range_helps, _split_gap, _distance_slopes, _charge_collapse, _depth, _baseline,
         _biased_clusters, _md_probe)


def derive_findings(diagnostics: Diagnostics) -> list[Finding]:
    """All findings of ``diagnostics``, in the order of ``RULES``."""
    return [finding for rule in RULES for finding in rule(diagnostics)]
