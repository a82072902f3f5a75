"""How out-of-distribution are the paper's splits? Median nearest-train distance per split.

For each of the paper's strategies — ``random``, ``size`` (``max_train_atoms`` 100), ``kmeans``
(20 clusters, half held out) and ``farthest_from_seed`` — made as a trial makes them
(``farfield.data.splitting.make_split``) with the paper's metric (``soap_cosine``: 1 − cosine of
mean SOAP vectors), rare elements dropped (``min_element_parents`` 10) and seed 0, this
records the median distance from each test parent to its nearest training parent, and the
same for a random split with the same side sizes over the same parents (the split file's
``random_test``; a random split's file records no distances, so its row is read from its
parents table). Writes JSON and prints a markdown table (the one in docs/splits.md).

    python benchmarks/split_distances.py --dataset bundled --out benchmarks/results/split_distances.json

SOAP descriptors are computed once per dataset (``--workers`` Ray actors, 0 = in this
process) and cached under ``WORKSPACE/descriptors``; later runs only split.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from farfield.data.config import SplitConfig
from farfield.data.datasets import resolve_dataset
from farfield.data.splitting import SplitOutcome, make_split
from farfield.data.splitting.statistics import distance_summary

STRATEGIES = ("random", "size", "kmeans", "farthest_from_seed")


def split_config(strategy: str, args: argparse.Namespace) -> SplitConfig:
    """The paper's split ``strategy``: 10 % of the training side as validation (val / (train + val))."""
    extra = {"size": {"max_train_atoms": args.max_train_atoms}, "kmeans": {"n_clusters": args.n_clusters}}
    return SplitConfig(strategy=strategy, metric="soap_cosine", seed=args.seed, train=0.45, val=0.05, test=0.5,
                       **extra.get(strategy, {}))


def nearest_train_medians(outcome: SplitOutcome) -> tuple[float, float, float]:
    """``(median nearest-train distance of the test side, the same for a random split of the same
    sizes, their ratio)``: from the split file, or for a random split (whose file records no
    metric) from its parents table, rounded as the file rounds them."""
    distances = outcome.split.statistics.get("nearest_train_distance")
    if distances:
        return distances["test"]["q50"], distances["random_test"]["q50"], distances["test_over_random_median"]
    parents = outcome.parents
    test = distance_summary(parents.loc[parents["side"] == "test", "nearest_train_distance"].to_numpy())["q50"]
    random = distance_summary(parents["random_nearest_train_distance"].dropna().to_numpy())["q50"]
    return test, random, float(f"{test / max(random, 1e-12):.6g}")


def measure(args: argparse.Namespace) -> dict:
    store = resolve_dataset(args.dataset, args.workspace)
    rows, rare, started = [], None, time.perf_counter()
    for strategy in args.strategies:
        t0 = time.perf_counter()
        outcome = make_split(store, split_config(strategy, args), cache_dir=Path(args.workspace) / "descriptors",
                             n_workers=args.workers, min_element_parents=args.min_element_parents)
        split, stats = outcome.split, outcome.split.statistics
        rare = stats.get("rare_elements")
        median, median_random, ratio = nearest_train_medians(outcome)
        rows.append({
            "strategy": strategy, "parameters": {k: v for k, v in split.parameters.items() if k != "mean_soap"},
            "n_train": len(split.train), "n_val": len(split.val), "n_test": len(split.test),
            "n_excluded_unseen_elements": stats.get("test_unseen_elements", {}).get("n_parents", 0),
            "median_nearest_train": median, "median_nearest_train_random": median_random,
            "ratio": ratio, "seconds": round(time.perf_counter() - t0, 2),
            "split_hash": split.content_hash,
        })
    return {
        "what": "median nearest-train distance (1 - cosine of mean SOAP) of the test side, this split vs a "
                "random split of the same side sizes",
        "dataset": args.dataset, "dataset_hash": store.content_hash, "n_parents": int(store.index["parent_id"].nunique()),
        "min_element_parents": args.min_element_parents, "seed": args.seed,
        "rare_elements": rare, "splits": rows,
        "wall_seconds": round(time.perf_counter() - started, 1), "workers": args.workers,
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }


def markdown_table(result: dict) -> str:
    lines = ["| split | train / val / test parents | excluded (unseen elements) | median nearest-train distance, "
             "test | same, random split of the same sizes | ratio |", "|---|---|---|---|---|---|"]
    for row in result["splits"]:
        lines.append(f"| {row['strategy']} | {row['n_train']} / {row['n_val']} / {row['n_test']} | "
                     f"{row['n_excluded_unseen_elements']} | {row['median_nearest_train']:.4g} | "
                     f"{row['median_nearest_train_random']:.4g} | {row['ratio']:.3g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="bundled", help="dataset store directory, or 'bundled'")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/split_distances.json"))
    parser.add_argument("--workspace", type=Path, default=Path("workspace"),
                        help="folder for the bundled store and the descriptor cache")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors computing SOAP (0 = in this process)")
    parser.add_argument("--min-element-parents", type=int, default=10)
    parser.add_argument("--max-train-atoms", type=int, default=100)
    parser.add_argument("--n-clusters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    args = parser.parse_args(argv)
    result = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(result))
    print(f"\n{result['n_parents']} parents, dataset {result['dataset_hash'][:19]}; wall {result['wall_seconds']} s; "
          f"written {args.out}")
    return result


if __name__ == "__main__":
    main()
