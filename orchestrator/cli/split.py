"""``farfield split``: make biased train/val/test splits of a dataset store, and report on them.

Only argument parsing and printing live here; the work is done by
:func:`farfield.data.splitting.make_split` and :func:`farfield.data.split_report.write_split_report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from farfield.data.config import STRATEGY_NAMES, SplitConfig
from farfield.orchestrator.cli.errors import fail

__all__ = ["split_app"]

split_app = typer.Typer(
    help="Make train/val/test splits over parent MOFs (random, size, max_separation, cluster, "
         "element, metal; the paper's kmeans and farthest_from_seed) with chemical-space statistics, "
         "and draw their reports.",
    no_args_is_help=True,
)
console = Console()


def _config(values: dict) -> SplitConfig:
    try:
        return SplitConfig(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'split'}: {e['msg']}" for e in err.errors())
        raise fail(problems.replace("Value error, ", "")) from None


@split_app.command("make")
def make_command(
    dataset: str = typer.Option("bundled", help="Dataset store directory, or 'bundled'."),
    strategy: str = typer.Option("random", help=" | ".join(STRATEGY_NAMES) + "."),
    metric: str = typer.Option("joint", help="joint (farfield's geometry–composition metric) | soap_cosine "
                                             "(the paper's: 1 − cosine of mean SOAP)."),
    train: float = typer.Option(0.8, help="Fraction of parents for training."),
    val: float = typer.Option(0.1, help="Fraction of parents for validation (drawn from the non-test rest)."),
    test: float = typer.Option(0.1, help="Fraction of parents for test (element/metal/cluster folds decide themselves)."),
    seed: int = typer.Option(0, help="Seed of every random choice; same seed → identical split file."),
    weight: float = typer.Option(0.5, "--weight", "-w", help="w of the joint metric: 1 = geometry only, 0 = composition only."),
    min_cluster_size: int = typer.Option(5, help="HDBSCAN min_cluster_size."),
    min_samples: Optional[int] = typer.Option(None, help="HDBSCAN min_samples (default: min_cluster_size)."),
    pca_components: int = typer.Option(10, help="Principal components HDBSCAN clusters in."),
    noise: str = typer.Option("nearest", help="HDBSCAN noise points: 'nearest' cluster or 'singleton' clusters."),
    cluster_selection: str = typer.Option("eom", help="HDBSCAN cluster selection: 'eom' or 'leaf' (many small clusters)."),
    cluster: Optional[list[int]] = typer.Option(None, "--cluster", help="Hold out this cluster (repeatable; strategy cluster)."),
    n_folds: Optional[int] = typer.Option(None, help="k of k-fold over clusters (strategy cluster)."),
    fold: Optional[int] = typer.Option(None, help="Which fold is the test set, 0..n_folds-1."),
    element: Optional[str] = typer.Option(None, help="Element whose parents all go to test (element/metal)."),
    gap: float = typer.Option(0.0, help="max_separation: exclude non-test parents closer than this to the test set."),
    n_clusters: Optional[int] = typer.Option(None, help="kmeans: KMeans clusters, half held out (default 20)."),
    max_train_atoms: Optional[int] = typer.Option(None, help="size: parents with more atoms than this are test "
                                                             "(instead of the test fraction)."),
    min_element_parents: Optional[int] = typer.Option(None, help="Drop structures with an element present in "
                                                                 "fewer than N parents before splitting (paper: 10)."),
    workers: int = typer.Option(2, help="Ray actors computing descriptors (0 = in this process)."),
    workspace: Path = typer.Option(Path("workspace"), help="Folder for the bundled store, descriptor cache and splits."),
    out: Optional[Path] = typer.Option(None, help="Split file to write (default: WORKSPACE/splits/STRATEGY-HASH.json)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address; default: a local Ray started here."),
) -> None:
    """Make a split and write it (JSON) plus its per-parent table (parquet) for the report.

    Example:  farfield split make --dataset bundled --strategy cluster --min-cluster-size 3 --n-folds 2 --fold 0
    Paper:    farfield split make --strategy kmeans --metric soap_cosine --min-element-parents 10
    """
    from farfield.data.datasets import resolve_dataset
    from farfield.data.splitting import make_split, split_path

    config = _config(dict(strategy=strategy, train=train, val=val, test=test, seed=seed, weight=weight,
                          min_cluster_size=min_cluster_size, min_samples=min_samples, pca_components=pca_components,
                          noise=noise, cluster_selection=cluster_selection, held_out_clusters=cluster or None, n_folds=n_folds, fold=fold,
                          element=element, gap=gap, metric=metric, n_clusters=n_clusters,
                          max_train_atoms=max_train_atoms))
    try:
        store = resolve_dataset(dataset, workspace)
        outcome = make_split(store, config, cache_dir=workspace / "descriptors", n_workers=workers, address=address,
                             min_element_parents=min_element_parents)
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    split = outcome.split
    path = outcome.save(out or split_path(workspace, split))
    _print_summary(split, path)


def _print_summary(split, path: Path) -> None:
    stats = split.statistics
    table = Table(title=f"split {split.strategy!r} (seed {split.seed})")
    for column in ("side", "parents", "structures", "atoms min–max"):
        table.add_column(column, justify="right")
    for side in ("train", "val", "test"):
        s = stats[side]
        table.add_row(side, str(s["n_parents"]), str(s["n_structures"]), f"{s['n_atoms_min']:g}–{s['n_atoms_max']:g}")
    console.print(table)
    distances = stats.get("nearest_train_distance")  # none in a random split's file (no metric)
    if distances:
        console.print(f"median nearest-train distance of test: {distances['test'].get('q50')} "
                      f"(random split of the same sizes: {distances['random_test'].get('q50')}, "
                      f"ratio {distances['test_over_random_median']})")
    rare = stats.get("rare_elements")
    if rare:
        console.print(f"dropped before splitting (elements in < {rare['min_element_parents']} parents: "
                      f"{' '.join(rare['elements']) or 'none'}): {rare['n_structures_dropped']} structures, "
                      f"{rare['n_parents_dropped']} parents")
    missing = stats["test_elements_missing_from_train"]
    if missing:
        console.print(f"[yellow]test elements missing from train:[/] {' '.join(missing)}")
    unseen = stats.get("test_unseen_elements")
    if unseen and unseen["n_parents"]:
        console.print(f"test parents excluded for elements absent from train ({' '.join(unseen['elements'])}): "
                      f"{unseen['n_parents']}")
    if split.excluded:
        console.print(f"excluded parents (gap or unseen elements): {len(split.excluded)}")
    console.print(f"split file: {path}\nreport    : farfield split report {path}")


@split_app.command("report")
def report_command(
    split_file: Path = typer.Argument(..., help="Split JSON written by `farfield split make`."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: next to the split file, SPLIT-report/)."),
) -> None:
    """Write PNGs and a self-contained HTML page: embedding by side and cluster, nearest-train
    distances against a random split, sizes per side.

    Example:  farfield split report workspace/splits/cluster-0123abcd4567.json
    """
    from farfield.data.split_report import write_split_report

    out = out or split_file.with_name(split_file.name.removesuffix(".json") + "-report")
    try:
        path = write_split_report(split_file, out)
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    console.print(f"report: {path}")
