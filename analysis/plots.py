"""Figures of the report as PNG bytes (matplotlib, Agg backend, no files, no display).

Each function takes diagnostics tables and returns PNG bytes, or None when the table
has nothing to draw (the report then says so instead of showing an empty frame).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["charge_figure", "cluster_bias_figure", "depth_figure", "distance_figure", "headline_figure",
           "long_range_figure", "md_probe_figure", "parity_figure", "summary_figure"]

DPI = 90


def _png(figure, rect=(0, 0, 1, 1)) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout(rect=rect)
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def _grid(n: int, width: float = 4.2, height: float = 3.6, columns: int = 3):
    columns = max(1, min(columns, n))
    rows = int(np.ceil(n / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return figure, axes.ravel()


def _colors(labels) -> dict:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {label: cycle[i % len(cycle)] for i, label in enumerate(sorted(set(labels)))}


def summary_figure(summary: pd.DataFrame) -> bytes | None:
    """Test force MAE per model and split (mean ± 95 % CI) with the baseline as a black tick."""
    if summary.empty:
        return None
    splits = sorted(summary["split"].unique())
    figure, axes = _grid(len(splits), width=4.6)
    for ax, split in zip(axes, splits):
        rows = summary[summary["split"] == split].reset_index(drop=True)
        labels = [f"{m}\n{int(L)}L" for m, L in zip(rows["model"], rows["layers"])]
        x = np.arange(len(rows))
        ax.bar(x, rows["test/f_mae_mean"], yerr=rows["test/f_mae_ci95"].fillna(0), capsize=3, color="#4c72b0")
        ax.scatter(x, rows["baseline_f_mae_mean"], marker="_", s=400, color="black", label="baseline (zero forces)")
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_title(f"{split} split")
        ax.set_ylabel("test force MAE (meV/Å)")
    axes[0].legend(fontsize=7)
    return _png(figure)


def _headline_labels(table: pd.DataFrame) -> pd.Series:
    """``model`` per row, with ``· NL`` where one model appears at several depths."""
    depths = table.groupby("model")["layers"].transform("nunique")
    return table["model"] + np.where(depths > 1, " · " + table["layers"].astype(str) + "L", "")


def headline_figure(table: pd.DataFrame) -> bytes | None:
    """The report's headline (``summary.headline_table`` rows, in their split order): test force
    (meV/Å) and energy (meV/atom) MAE per model × split, mean ± 95 % CI over seeds on a log
    scale; per split the zero-force / reference-energy baseline (black bar) and the long-range
    yardstick (red dashed: beyond-cutoff Coulomb of the reference charges, see ``yardstick``)."""
    if table.empty:
        return None
    splits = list(dict.fromkeys(table["split"]))
    labels = _headline_labels(table)
    models = list(dict.fromkeys(labels))
    colors = _colors(models)
    width = 0.84 / len(models)
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    panels = (("test/f_mae", "baseline_f_mae_mean", "yardstick_f_mae", "test force MAE (meV/Å)"),
              ("test/e_mae", "baseline_e_mae_mean", "yardstick_e_mae", "test energy MAE (meV/atom)"))
    for ax, (metric, baseline, yardstick, ylabel) in zip(axes, panels):
        for j, model in enumerate(models):
            rows = table[labels == model].set_index("split").reindex(splits)
            x = np.arange(len(splits)) - 0.42 + width * (j + 0.5)
            ax.bar(x, rows[f"{metric}_mean"], width * 0.92, yerr=rows[f"{metric}_ci95"].fillna(0), capsize=2,
                   color=colors[model], label=model, error_kw={"lw": 0.8})
        marks = table.groupby("split", sort=False)[[baseline, yardstick]].mean().reindex(splits)
        for i, split in enumerate(splits):
            ax.hlines(marks[baseline].iloc[i], i - 0.46, i + 0.46, colors="black", lw=2,
                      label="baseline (zero forces, reference energies)" if i == 0 else None)
            if np.isfinite(marks[yardstick].iloc[i]):
                ax.hlines(marks[yardstick].iloc[i], i - 0.46, i + 0.46, colors="#d62728", linestyles="--", lw=2,
                          label="long-range yardstick (beyond-cutoff Coulomb)" if i == 0 else None)
        ax.set_yscale("log")
        drawn = np.r_[table[f"{metric}_mean"], marks[baseline], marks[yardstick]]
        drawn = drawn[np.isfinite(drawn) & (drawn > 0)]
        if len(drawn):
            ax.set_ylim(drawn.min() / 1.6, drawn.max() * 1.6)
        ax.set_xticks(np.arange(len(splits)), [f"{s}\n(in distribution)" if s == "random" else f"{s}\n(biased)"
                                               for s in splits])
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", which="both", alpha=0.25)
    handles, names = axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="upper center", ncol=min(len(names), 5), fontsize=8, frameon=False)
    return _png(figure, rect=(0, 0, 1, 1 - 0.06 * int(np.ceil(len(names) / 5))))


def parity_figure(structures: pd.DataFrame) -> bytes | None:
    """Predicted vs reference energy per atom (eV/atom), one panel per split, coloured by model."""
    if structures.empty:
        return None
    splits = sorted(structures["split"].unique())
    colors = _colors(structures["model"])
    figure, axes = _grid(len(splits))
    for ax, split in zip(axes, splits):
        rows = structures[structures["split"] == split]
        for model, group in rows.groupby("model"):
            ax.scatter(group["energy_ref"] / group["n_atoms"], group["energy_pred"] / group["n_atoms"], s=10,
                       alpha=0.7, color=colors[model], label=model)
        low, high = ax.get_xlim()
        ax.plot([low, high], [low, high], color="grey", lw=0.8)
        ax.set_title(f"{split} split")
        ax.set_xlabel("reference energy (eV/atom)")
        ax.set_ylabel("predicted energy (eV/atom)")
        ax.legend(fontsize=7)
    return _png(figure)


def distance_figure(curves: pd.DataFrame, structures: pd.DataFrame) -> bytes | None:
    """Binned error vs nearest-train distance (mean, bootstrap 95 % CI), forces and energies."""
    if curves.empty:
        return None
    colors = _colors(curves["model"])
    figure, axes = _grid(2, width=5.2, columns=2)
    for ax, (metric, unit) in zip(axes, (("f_mae_mev", "force MAE (meV/Å)"), ("e_abs_error_mev", "|energy error| (meV/atom)"))):
        for model, group in curves[curves["metric"] == metric].groupby("model"):
            ax.plot(group["distance_mid"], group["mean"], marker="o", color=colors[model], label=model)
            ax.fill_between(group["distance_mid"], group["ci_low"], group["ci_high"], color=colors[model], alpha=0.2)
            points = structures[structures["model"] == model]
            ax.scatter(points["nearest_train_distance"], points[metric], s=4, alpha=0.25, color=colors[model])
        ax.set_xlabel("nearest-train distance (joint metric)")
        ax.set_ylabel(unit)
        ax.legend(fontsize=7)
    return _png(figure)


def cluster_bias_figure(table: pd.DataFrame, max_panels: int = 6) -> bytes | None:
    """Mean signed energy error per cluster (± 95 % CI); a star marks a significant bias."""
    if table.empty:
        return None
    keys = list(table.groupby(["model", "split"]).groups)[:max_panels]
    figure, axes = _grid(len(keys))
    for ax, (model, split) in zip(axes, keys):
        rows = table[(table["model"] == model) & (table["split"] == split)].reset_index(drop=True)
        x = np.arange(len(rows))
        colors = np.where(rows["biased"], "#c44e52", "#8c8c8c")
        ax.bar(x, rows["bias_mev"], yerr=rows["bias_ci95"].fillna(0), color=colors, capsize=2)
        for i in np.flatnonzero(rows["biased"]):
            ax.annotate("*", (x[i], rows["bias_mev"][i]), ha="center", fontsize=12)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(x, rows["bucket"], fontsize=7)
        ax.set_title(f"{model}, {split}", fontsize=9)
        ax.set_xlabel("cluster")
        ax.set_ylabel("bias (meV/atom)")
    return _png(figure)


def charge_figure(charges: pd.DataFrame, max_panels: int = 4) -> bytes | None:
    """Per (model, head): parity of predicted vs reference charges and both histograms."""
    if charges.empty:
        return None
    keys = list(charges.groupby(["model", "head"]).groups)[:max_panels]
    figure, axes = plt.subplots(len(keys), 2, figsize=(9, 3.6 * len(keys)), squeeze=False)
    for (parity, histogram), (model, head) in zip(axes, keys):
        rows = charges[(charges["model"] == model) & (charges["head"] == head)]
        has_ref = rows["q_ref"].notna()
        if has_ref.any():
            parity.scatter(rows.loc[has_ref, "q_ref"], rows.loc[has_ref, "q_pred"], s=5, alpha=0.5)
            low, high = rows.loc[has_ref, "q_ref"].min(), rows.loc[has_ref, "q_ref"].max()
            parity.plot([low, high], [low, high], color="grey", lw=0.8)
        else:
            parity.text(0.5, 0.5, "no reference charges", ha="center", transform=parity.transAxes)
        parity.set_xlabel("reference charge (e)")
        parity.set_ylabel("predicted charge (e)")
        parity.set_title(f"{model}: {head} charges", fontsize=9)
        bins = np.linspace(np.nanmin(rows[["q_pred", "q_ref"]].to_numpy()) - 1e-3,
                           np.nanmax(rows[["q_pred", "q_ref"]].to_numpy()) + 1e-3, 40)
        histogram.hist(rows["q_pred"], bins=bins, alpha=0.6, label="predicted")
        if has_ref.any():
            histogram.hist(rows.loc[has_ref, "q_ref"], bins=bins, alpha=0.6, label="reference")
        histogram.set_xlabel("charge (e)")
        histogram.legend(fontsize=7)
    return _png(figure)


def depth_figure(depth: pd.DataFrame) -> bytes | None:
    """Train→test force gap (and test MAE) against message-passing layers, short-range models."""
    if depth.empty:
        return None
    figure, axes = _grid(2, width=5.0, columns=2)
    for (backbone, split), rows in depth.groupby(["backbone", "split"]):
        label = f"{backbone}, {split}"
        axes[0].errorbar(rows["layers"], rows["gap"], yerr=rows["gap_ci95"].fillna(0), marker="o", capsize=3,
                         label=label)
        axes[1].errorbar(rows["layers"], rows["test"], yerr=rows["test_ci95"].fillna(0), marker="o", capsize=3,
                         label=label)
    axes[0].set_ylabel("test − train force MAE (meV/Å)")
    axes[1].set_ylabel("test force MAE (meV/Å)")
    for ax in axes:
        ax.set_xlabel("message-passing layers")
        ax.legend(fontsize=7)
    return _png(figure)


def long_range_figure(differences: pd.DataFrame) -> bytes | None:
    """Per-structure force-error difference (long-range − short-range) against distance to train."""
    if differences.empty or "f_mae_mev_diff" not in differences:
        return None
    figure, ax = plt.subplots(figsize=(6.5, 4))
    colors = _colors(differences["model"])
    for (model, split), rows in differences.groupby(["model", "split"]):
        ax.scatter(rows["nearest_train_distance"], rows["f_mae_mev_diff"], s=12, alpha=0.7, color=colors[model],
                   marker="o" if split == "random" else "^", label=f"{model}, {split}")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("nearest-train distance (joint metric)")
    ax.set_ylabel("force MAE difference (meV/Å), < 0: long-range helps")
    ax.legend(fontsize=7)
    return _png(figure)


def md_probe_figure(probe: pd.DataFrame) -> bytes | None:
    """Energy drift per trajectory (meV/atom/ps, log scale), intact ones in blue, broken in red."""
    if probe.empty:
        return None
    figure, ax = plt.subplots(figsize=(6.5, 3.8))
    labels = [f"{m}\n{s}" for m, s in zip(probe["model"], probe["structure_id"])]
    colors = np.where(probe["intact"], "#4c72b0", "#c44e52")
    ax.bar(np.arange(len(probe)), np.abs(probe["drift_mev_per_atom_ps"]) + 1e-6, color=colors)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(probe)), labels, fontsize=6, rotation=60)
    ax.set_ylabel("|energy drift| (meV/atom/ps)")
    return _png(figure)
