"""Diagnostics on synthetic tables with known answers: slopes, CIs, bias flags, collapse, pairing, depth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from farfield.analysis.buckets import bucket_table, size_bins
from farfield.analysis.charges import charge_summary
from farfield.analysis.depth import depth_slopes, depth_table
from farfield.analysis.distance import distance_curves, distance_slopes
from farfield.analysis.energy_offsets import energy_offset_table
from farfield.analysis.pairing import paired_differences, paired_summary
from farfield.analysis.stats import benjamini_hochberg, bootstrap_ci, fit_slope, mean_ci
from farfield.analysis.summary import split_gap, summary_table


def _structures(n: int, model: str = "painn", split: str = "cluster", seed: int = 0, **columns) -> pd.DataFrame:
    table = pd.DataFrame({
        "run_id": f"{model}-{split}-{seed}", "model": model, "backbone": "painn",
        "long_range": model.split("+")[1] if "+" in model else "none", "split": split, "split_hash": f"h-{split}",
        "seed": seed, "layers": 1, "structure_id": [f"s{i}" for i in range(n)], "parent_id": [f"p{i}" for i in range(n)],
        "n_atoms": 20 + np.arange(n) % 40, "cluster": np.arange(n) % 3, "elements": "C H O Zn", "metals": "Zn",
        "nearest_train_distance": np.linspace(0.1, 2.0, n), "e_error_per_atom_mev": 0.0, "f_mae_mev": 10.0,
        "q_mae_me": np.nan,
    })
    for name, values in columns.items():
        table[name] = values
    table["e_abs_error_mev"] = table["e_error_per_atom_mev"].abs()
    return table


@pytest.mark.parametrize("true_slope", [30.0, -12.0, 0.0])
def test_distance_slope_is_recovered_from_data_with_a_known_slope(true_slope):
    rng = np.random.default_rng(3)
    distance = rng.uniform(0.2, 2.5, 400)
    errors = 80.0 + true_slope * distance + rng.normal(0, 6.0, len(distance))
    table = _structures(400, nearest_train_distance=distance, f_mae_mev=errors)
    fit = distance_slopes(table, metrics=("f_mae_mev",)).iloc[0]
    assert fit["ci_low"] <= true_slope <= fit["ci_high"]
    assert fit["slope"] == pytest.approx(true_slope, abs=2.0)
    assert fit["ci_high"] - fit["ci_low"] < 4.0
    if true_slope != 0.0:
        assert fit["p_value"] < 1e-6
    curves = distance_curves(table, "f_mae_mev", n_bins=5)
    assert len(curves) == 5 and (curves["n"] == 80).all()
    assert ((curves["ci_low"] <= curves["mean"]) & (curves["mean"] <= curves["ci_high"])).all()
    steps = np.diff(curves["mean"])
    assert (np.sign(steps) == np.sign(true_slope)).all() if true_slope else np.abs(steps).max() < 5.0


def test_replicate_seeds_are_averaged_before_the_fit():
    rng = np.random.default_rng(0)
    distance = np.linspace(0.1, 2.0, 50)
    seeds = [_structures(50, seed=s, nearest_train_distance=distance,
                         f_mae_mev=5.0 * distance + rng.normal(0, 0.1, 50)) for s in range(3)]
    fit = distance_slopes(pd.concat(seeds), metrics=("f_mae_mev",)).iloc[0]
    assert fit["n"] == 50 and fit["slope"] == pytest.approx(5.0, abs=0.1)


def test_fit_slope_and_ci_helpers_handle_degenerate_input():
    assert np.isnan(fit_slope([1, 1, 1], [1, 2, 3]).slope)
    assert np.isnan(fit_slope([1, 2], [1, 2]).slope)
    mean, half, n = mean_ci([4.0])
    assert mean == 4.0 and np.isnan(half) and n == 1
    rng = np.random.default_rng(1)
    mean, low, high = bootstrap_ci(rng.normal(2.0, 0.5, 200))
    assert low < 2.0 < high and low < mean < high
    adjusted = benjamini_hochberg([0.01, 0.04, np.nan, 0.03])
    assert np.isnan(adjusted[2]) and np.allclose(adjusted[[0, 1, 3]], [0.03, 0.04, 0.04])


def test_student_t_interval_covers_the_true_mean_at_its_nominal_rate():
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(2000):
        mean, half, _ = mean_ci(rng.normal(5.0, 2.0, 5))
        hits += abs(mean - 5.0) <= half
    assert 0.93 < hits / 2000 < 0.97


def test_a_biased_cluster_is_flagged_and_an_unbiased_one_is_not():
    rng = np.random.default_rng(5)
    n = 60
    cluster = np.arange(n) % 3
    errors = rng.normal(0.0, 5.0, n) + np.where(cluster == 1, 40.0, 0.0)
    table = bucket_table(_structures(n, cluster=cluster, e_error_per_atom_mev=errors), "cluster").set_index("bucket")
    assert bool(table.loc["1", "biased"]) and table.loc["1", "bias_mev"] == pytest.approx(40.0, abs=5.0)
    assert not table.loc["0", "biased"] and not table.loc["2", "biased"]
    assert table.loc["1", "n"] == 20


def test_element_metal_and_size_buckets():
    table = _structures(6, elements=["C H", "C H Zn", "C O Cu", "C H", "H O Zn", "C Cu"],
                        metals=["", "Zn", "Cu", "", "Zn", "Cu"], n_atoms=[10, 10, 20, 20, 30, 40])
    elements = bucket_table(table, "element").set_index("bucket")["n"]
    assert elements.to_dict() == {"C": 5, "Cu": 2, "H": 4, "O": 2, "Zn": 2}
    metals = bucket_table(table, "metal").set_index("bucket")["n"]
    assert metals.to_dict() == {"(no metal)": 2, "Cu": 2, "Zn": 2}
    assert bucket_table(table, "size")["n"].sum() == 6
    assert size_bins(pd.Series([5, 5, 5])).nunique() == 1
    with pytest.raises(ValueError, match="bucket kind 'shape' is unknown"):
        bucket_table(table, "shape")


def _charges(q_pred, q_ref, run="r1") -> pd.DataFrame:
    return pd.DataFrame({"run_id": run, "model": "painn+les", "split": "cluster", "seed": 0, "layers": 1,
                         "head": "les", "structure_id": "s0", "atom": np.arange(len(q_pred)), "element": "C",
                         "q_pred": q_pred, "q_ref": q_ref})


def test_collapse_detector_flags_collapsed_charges_only():
    rng = np.random.default_rng(2)
    reference = rng.normal(0.0, 0.4, 300)
    sensible = _charges(reference + rng.normal(0, 0.05, 300), reference, "sensible")
    collapsed = _charges(0.02 * reference + 0.001, reference, "collapsed")
    unreferenced_flat = _charges(np.full(300, 0.003), np.full(300, np.nan), "flat")
    unreferenced_spread = _charges(rng.normal(0, 0.3, 300), np.full(300, np.nan), "spread")
    summary = charge_summary(pd.concat([sensible, collapsed, unreferenced_flat, unreferenced_spread])).set_index("run_id")
    assert summary["collapsed"].to_dict() == {"collapsed": True, "flat": True, "sensible": False, "spread": False}
    assert summary.loc["sensible", "parity_r"] > 0.95
    assert summary.loc["sensible", "q_mae_me"] == pytest.approx(40, rel=0.2)  # E|N(0, 0.05)| = 0.04 e
    assert "reference spread" in summary.loc["collapsed", "reason"]
    with pytest.raises(ValueError, match="collapse thresholds must be > 0"):
        charge_summary(sensible, ratio=0)


def test_paired_long_range_differences_find_where_it_helps():
    rng = np.random.default_rng(4)
    n = 40
    short = _structures(n, "painn", f_mae_mev=rng.uniform(50, 60, n))
    helps = np.where(np.arange(n) % 3 == 0, 10.0, 0.0)  # cluster 0 improves by 10 meV/Å
    long = _structures(n, "painn+celli", f_mae_mev=short["f_mae_mev"] - helps + rng.normal(0, 0.5, n))
    differences = paired_differences(pd.concat([short, long]))
    assert len(differences) == n
    summary = paired_summary(differences).set_index("metric").loc["f_mae_mev"]
    assert summary["model"] == "painn+celli" and summary["reference_model"] == "painn"
    assert summary["mean_diff"] == pytest.approx(-helps.mean(), abs=0.5) and summary["p_value"] < 0.01
    from farfield.analysis.pairing import help_by_bucket

    by_cluster = help_by_bucket(differences).set_index("cluster")["mean_diff"]
    assert by_cluster[0] == pytest.approx(-10.0, abs=0.5) and abs(by_cluster[1]) < 0.5


def _trials(rows: list[dict]) -> pd.DataFrame:
    base = {"backbone": "painn", "long_range": "none", "model": "painn", "seed": 0, "layers": 2,
            "test/e_mae": 1.0, "test/e_rmse": 1.0, "test/f_mae": 10.0, "test/f_rmse": 12.0, "test/q_mae": np.nan,
            "train/e_mae": 0.5, "train/f_mae": 5.0, "baseline_e_mae": 10.0, "baseline_f_mae": 100.0}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_summary_gap_and_depth_on_known_numbers():
    rows = [{"split": "random", "seed": s, "test/f_mae": 10.0 + s} for s in range(3)]
    rows += [{"split": "cluster", "seed": s, "test/f_mae": 30.0 + s, "baseline_f_mae": 150.0} for s in range(3)]
    trials = _trials(rows)
    summary = summary_table(trials).set_index("split")
    assert summary.loc["random", "test/f_mae_mean"] == pytest.approx(11.0)
    assert summary.loc["random", "test/f_mae_ci95"] == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)
    assert summary.loc["cluster", "f_skill_mean"] == pytest.approx(1 - 31.0 / 150.0)
    gap = split_gap(trials).iloc[0]
    assert gap["ratio"] == pytest.approx(31.0 / 11.0) and gap["baseline_ratio"] == pytest.approx(1.5)
    assert gap["p_value"] < 0.001
    depth_rows = [{"split": "random", "layers": L, "seed": s, "train/f_mae": 10.0 - L, "test/f_mae": 10.0 + 2 * L}
                  for L in (1, 2, 3, 4) for s in range(2)]
    depth_rows.append({"split": "random", "layers": 4, "long_range": "les", "model": "painn+les"})
    depth = _trials(depth_rows)
    table = depth_table(depth)
    assert list(table["layers"]) == [1, 2, 3, 4] and list(table["gap"]) == [3.0, 6.0, 9.0, 12.0]
    slope = depth_slopes(depth).iloc[0]
    assert slope["gap_slope"] == pytest.approx(3.0) and slope["test_slope"] == pytest.approx(2.0)


def test_diagnostic_modules_do_not_import_mlflow():
    """Only mlflow_queries (and loading/report through it) talk to MLflow (docs/analysis.md)."""
    import subprocess
    import sys

    modules = ["stats", "summary", "distance", "buckets", "charges", "depth", "pairing", "diagnostics", "findings",
               "plots", "render", "md_probe", "placement", "baseline", "dataset_context", "run_layout"]
    code = ("import sys; " + "; ".join(f"import farfield.analysis.{m}" for m in modules) +
            "; print([m for m in ('mlflow', 'ray') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_variance_ratio_test_is_one_sided_against_the_scaled_reference():
    from farfield.analysis.stats import variance_ratio_test

    rng = np.random.default_rng(9)
    reference = rng.normal(0, 0.4, 500)
    assert variance_ratio_test(0.02 * reference + rng.normal(0, 0.001, 500), reference, scale=0.1)[0] < 1e-6
    assert variance_ratio_test(reference + rng.normal(0, 0.05, 500), reference, scale=0.1)[0] > 0.99
    assert np.isnan(variance_ratio_test([1.0], reference)[0])


def _frames(errors_by_parent: dict[str, list[float]], spread: float = 10.0) -> pd.DataFrame:
    """Test frames of one trial: per parent, its frames' per-atom energy errors (meV/atom); the
    reference energies of a parent's frames alternate ±``spread`` meV/atom around a base."""
    rows = []
    for p, (parent, errors) in enumerate(errors_by_parent.items()):
        for i, error in enumerate(errors):
            n_atoms = 50 + 10 * p
            e_ref = (-5.0 + (spread if i % 2 else -spread) / 1000.0) * n_atoms
            rows.append({"run_id": "r", "model": "painn", "layers": 2, "split": "random", "seed": 0,
                         "structure_id": f"{parent}-c{i}", "parent_id": parent, "n_atoms": n_atoms,
                         "energy_ref": e_ref, "e_error_per_atom_mev": error})
    return pd.DataFrame(rows)


def test_energy_error_splits_into_parent_offsets_and_relative_energies():
    offsets_only = energy_offset_table(_frames({"A": [30.0, 30.0], "B": [-50.0, -50.0, -50.0, -50.0]}))
    row = offsets_only.iloc[0]
    assert row["e_mae"] == pytest.approx((2 * 30 + 4 * 50) / 6)
    assert row["offset_mae"] == pytest.approx(row["e_mae"]) and row["offset_share"] == pytest.approx(1.0)
    assert row["within_mae"] == pytest.approx(0.0) and row["within_skill"] == pytest.approx(1.0)
    assert row["within_spread"] == pytest.approx(10.0)

    relative_only = energy_offset_table(_frames({"A": [10.0, -10.0], "B": [10.0, -10.0, 10.0, -10.0]})).iloc[0]
    assert relative_only["offset_mae"] == pytest.approx(0.0)
    assert relative_only["within_mae"] == pytest.approx(10.0) and relative_only["within_skill"] == pytest.approx(0.0)

    # a single-frame parent has an offset but no relative energy to get right
    lone = energy_offset_table(_frames({"A": [20.0], "B": [5.0, -5.0]})).iloc[0]
    assert lone["n_in_multi_frame_parents"] == 2 and lone["within_mae"] == pytest.approx(5.0)
    assert lone["offset_mae"] == pytest.approx(20.0 / 3)


def test_offsets_that_follow_the_beyond_cutoff_energy_correlate_with_it():
    rng = np.random.default_rng(0)
    parents = {f"P{k}": [0.0, 0.0] for k in range(40)}
    frames = _frames(parents)
    beyond = frames.groupby("parent_id")["structure_id"].transform(lambda s: rng.normal()) * 30.0
    following = frames.assign(e_beyond_per_atom_mev=beyond, e_error_per_atom_mev=-0.8 * beyond + 50.0)
    assert energy_offset_table(following).iloc[0]["offset_beyond_r"] == pytest.approx(-1.0)
    unrelated = rng.normal(size=40).repeat(2) * 30.0
    noise = frames.assign(e_beyond_per_atom_mev=beyond, e_error_per_atom_mev=unrelated)
    assert abs(energy_offset_table(noise).iloc[0]["offset_beyond_r"]) < 0.4
    assert np.isnan(energy_offset_table(frames).iloc[0]["offset_beyond_r"])  # no yardstick column


def test_tests_on_nearly_equal_values_keep_the_console_quiet():
    """scipy warns of precision loss on nearly equal values; the report's console stays clean."""
    import warnings

    from farfield.analysis.stats import one_sample_test, welch_test
    from farfield.analysis.verdicts import difference_effect

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p_one, _ = one_sample_test([0.3, 0.3 + 1e-15, 0.3])
        p_welch, _ = welch_test([1.0, 1.0 + 1e-15], [2.0, 2.5, 3.0])
        ratio = difference_effect("ratio", "test/f_mae", [1.0, 1.0 + 1e-15], [2.0, 2.5, 3.0], "x", "replicas")
    assert 0.0 <= ratio.p_value <= 1.0
    assert 0.0 <= p_welch <= 1.0 and (p_one != p_one or 0.0 <= p_one <= 1.0)
