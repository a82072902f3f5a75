"""The split report: PNG figures and one self-contained HTML page for a split file.

Reads ``SPLIT.json`` and the per-parent table next to it (``SPLIT.parents.parquet``, written
by ``farfield split make``) and draws: the 2-D embedding coloured by side and by cluster,
the nearest-train distance histogram of the test set against a random split of the same
sizes, and atoms-per-parent histograms per side. Uses matplotlib's object API (no pyplot
state), so it is safe in workers and tests.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from farfield.data.splitting import SIDES, Split, parents_table_path

__all__ = ["FIGURES", "write_split_report"]

SIDE_COLOURS = {"train": "#9aa5b1", "val": "#2f7ed8", "test": "#d62728", "excluded": "#f2c14e"}
FIGURES = ("embedding_by_side", "embedding_by_cluster", "nearest_train_distance", "size_by_side")


def _metric(split: Split) -> str:
    """The split's metric, as the figures name it."""
    metric = split.statistics.get("nearest_train_distance", {}).get("metric", "joint")
    return {"joint": "joint metric", "soap_cosine": "1 − cosine of mean SOAP"}.get(metric, metric)


def _embedding_by_side(parents: pd.DataFrame, split: Split) -> Figure:
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    for side in ("train", "excluded", "val", "test"):
        rows = parents[parents["side"] == side]
        if len(rows):
            ax.scatter(rows["embedding_1"], rows["embedding_2"], s=12, c=SIDE_COLOURS[side],
                       label=f"{side} ({len(rows)})", alpha=0.85, linewidths=0)
    ax.set(xlabel=f"PC 1 ({_metric(split)} space)", ylabel="PC 2", title="parents by side")
    ax.legend(fontsize=8)
    return fig


def _embedding_by_cluster(parents: pd.DataFrame, split: Split) -> Figure:
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    colours = dict(cmap="tab20", vmin=0, vmax=max(int(parents["cluster"].max()), 1))
    clustered = parents[~parents["is_noise"]]
    ax.scatter(clustered["embedding_1"], clustered["embedding_2"], s=12, c=clustered["cluster"],
               linewidths=0, **colours)
    noise = parents[parents["is_noise"]]
    if len(noise):
        ax.scatter(noise["embedding_1"], noise["embedding_2"], s=22, c=noise["cluster"], marker="x",
                   linewidths=1.0, label=f"HDBSCAN noise ({len(noise)}), coloured by assigned cluster",
                   **colours)
        ax.legend(fontsize=8)
    method = "KMeans" if split.parameters.get("clustering", {}).get("method") == "kmeans" else "HDBSCAN"
    ax.set(xlabel=f"PC 1 ({_metric(split)} space)", ylabel="PC 2",
           title=f"{parents['cluster'].nunique()} clusters ({method})")
    return fig


def _distance_histogram(parents: pd.DataFrame, split: Split) -> Figure:
    fig = Figure(figsize=(5.5, 4.0))
    ax = fig.add_subplot()
    split_d = parents.loc[parents["side"] == "test", "nearest_train_distance"].dropna()
    random_d = parents["random_nearest_train_distance"].dropna()
    both = np.concatenate([split_d, random_d])
    bins = np.linspace(0.0, float(both.max()) * 1.05 if len(both) else 1.0, 30)
    ax.hist(random_d, bins=bins, alpha=0.55, color="#7f7f7f", label=f"random split (median {np.median(random_d):.3g})")
    ax.hist(split_d, bins=bins, alpha=0.55, color=SIDE_COLOURS["test"],
            label=f"this split (median {np.median(split_d):.3g})")
    ax.set(xlabel=f"distance from a test parent to its nearest train parent ({_metric(split)})",
           ylabel="test parents", title="how far test is from train")
    ax.legend(fontsize=8)
    return fig


def _size_histogram(parents: pd.DataFrame, split: Split) -> Figure:
    fig = Figure(figsize=(5.5, 4.0))
    ax = fig.add_subplot()
    bins = np.histogram_bin_edges(parents["n_atoms"], bins=25)
    for side in SIDES:
        rows = parents.loc[parents["side"] == side, "n_atoms"]
        if len(rows):
            ax.hist(rows, bins=bins, alpha=0.55, color=SIDE_COLOURS[side], label=side, density=True)
    ax.set(xlabel="atoms per configuration", ylabel="density", title="parent sizes per side")
    ax.legend(fontsize=8)
    return fig


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(split: Split, images: dict[str, bytes]) -> str:
    stats = split.statistics
    sizes = [[side, stats[side]["n_parents"], stats[side]["n_structures"], stats[side]["n_atoms_min"],
              stats[side]["n_atoms_max"], len(stats[side]["elements"])] for side in SIDES]
    distances = stats.get("nearest_train_distance", {})
    quantile_keys = [k for k in distances.get("test", {})]
    distance_rows = [[name] + [distances[name].get(k, "") for k in quantile_keys]
                     for name in ("test", "random_test", "val") if distances.get(name)]
    missing = stats.get("test_elements_missing_from_train", [])
    rare, unseen = stats.get("rare_elements"), stats.get("test_unseen_elements")
    coverage = ""
    if rare:
        coverage += (f"<p>dropped before splitting: {rare['n_structures_dropped']} structures, "
                     f"{rare['n_parents_dropped']} parents with elements in fewer than {rare['min_element_parents']} "
                     f"parents ({html.escape(' '.join(rare['elements'])) or 'none'})</p>")
    if unseen:
        coverage += (f"<p>test parents excluded for elements absent from train: {unseen['n_parents']} "
                     f"({html.escape(' '.join(unseen['elements'])) or 'none'})</p>")
    figures = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>{name.replace('_', ' ')}</figcaption></figure>" for name, data in images.items())
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>split report: {html.escape(split.strategy)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} figure{{display:inline-block;margin:0.5em}}
.warn{{color:#b00}} pre{{background:#f6f6f6;padding:0.6em}}</style></head><body>
<h1>Split report: {html.escape(split.strategy)}</h1>
<p>dataset {html.escape(split.dataset_hash)} · seed {split.seed} · split {html.escape(split.content_hash)}</p>
<h2>Sizes</h2>{_table(sizes, ["side", "parents", "structures", "min atoms", "max atoms", "elements"])}
<p>excluded parents: {len(split.excluded)}</p>{coverage}
<p class="{'warn' if missing else ''}">test elements missing from train: {html.escape(' '.join(missing)) or 'none'}</p>
<h2>Nearest-train distance ({html.escape(_metric(split))})</h2>
{_table(distance_rows, ["set"] + quantile_keys)}
<p>median ratio test / random: {distances.get('test_over_random_median', 'n/a')}</p>
<h2>Figures</h2>{figures}
<h2>Parameters</h2><pre>{html.escape(json.dumps(split.parameters, indent=1, sort_keys=True))}</pre>
</body></html>
"""


def write_split_report(split_path: str | Path, out_dir: str | Path) -> Path:
    """Write ``FIGURES`` as PNGs and ``report.html`` (PNGs embedded) into ``out_dir``; return the HTML path."""
    split = Split.load(split_path)
    table_path = parents_table_path(split_path)
    if not table_path.is_file():
        raise FileNotFoundError(f"{table_path} not found: the split report needs the per-parent table that "
                                f"`farfield split make` writes next to the split file")
    parents = pd.read_parquet(table_path)
    makers = {"embedding_by_side": _embedding_by_side, "embedding_by_cluster": _embedding_by_cluster,
              "nearest_train_distance": _distance_histogram, "size_by_side": _size_histogram}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {name: _png(makers[name](parents, split)) for name in FIGURES}
    for name, data in images.items():
        (out_dir / f"{name}.png").write_bytes(data)
    path = out_dir / "report.html"
    path.write_text(_html(split, images), encoding="utf-8")
    return path
