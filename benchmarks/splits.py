"""Benchmark: descriptors + clustering + every split strategy on the full CoRE MOF 2019 catalogue.

Reads every CIF of the ``CoRE_MOF`` package's 2019-ASR and 2019-FSR archives (each tarball
opened once; no labels needed). Each CIF is one structure; its parent is the CSD refcode
family (an ASR and an FSR version of one MOF are two configurations of one parent). Ray
actors parse the CIFs and compute descriptors shard by shard
(:func:`farfield.data.chemspace.describe_shards`); then the joint metric, PCA + HDBSCAN
and the splits run on the driver. Measured: wall time of each stage and of the whole
pipeline, and the Ray scaling efficiency from 1 to 2 workers (T1 / (2 T2)) of the
descriptor stage on a subset. Writes JSON (default ``benchmarks/results/splits.json``).

CIF parsing uses farfield's fast reader for P1 files (``farfield.data.cif_p1``), ~10x faster
than ASE's general CIF parser; the rare non-P1 file falls back to ASE. Needs the ``CoRE_MOF``
package (``pip install core-mof``, in the ``dev`` extra).

    python benchmarks/splits.py --out benchmarks/results/splits.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tarfile
import time
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from farfield.data.chemspace import FrameDescriptors, chemical_space, cluster_parents, describe_shards
from farfield.data.config import SplitConfig
from farfield.data.splitting import split_parents

SUBSETS = ("2019-ASR", "2019-FSR")


def read_catalogue(subsets=SUBSETS, limit: int | None = None) -> list[tuple[str, str, str]]:
    """``[(parent_id, structure_id, cif text)]`` for every CIF of ``subsets`` (archive order)."""
    entries = []
    for subset in subsets:
        path = resources.files("CoRE_MOF") / "data" / f"{subset}.tar.xz"
        with path.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:xz") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or not name.endswith(".cif") or name.startswith("."):
                    continue
                text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                stem = name[: -len(".cif")]
                entries.append((stem.split("_")[0], f"{subset}/{stem}", text))
                if limit is not None and len(entries) >= limit:
                    return entries
    return entries


def parse_p1_cif(text: str):
    """``Atoms`` of a CIF: farfield's fast P1 reader, ASE (symmetry expanded) otherwise."""
    from farfield.data.cif_p1 import read_p1_cif

    fast = read_p1_cif(text)
    if fast is not None:
        return fast.atoms
    from ase.io import read

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read(io.StringIO(text), format="cif")


def load_cifs(payload: list[tuple[str, str, str]]):
    """Shard loader run inside the Ray actors: CIF texts → Atoms with parent/structure ids."""
    frames = []
    for parent_id, structure_id, text in payload:
        try:
            atoms = parse_p1_cif(text)
        except (ValueError, KeyError, IndexError, AttributeError, RuntimeError):
            continue  # unreadable CIF: counted as skipped by the driver
        if len(atoms) == 0:
            continue
        atoms.info.update(structure_id=structure_id, parent_id=parent_id)
        frames.append(atoms)
    return frames


def result_of_cache(path: Path) -> float:
    """The descriptor wall time recorded when the cache file was written."""
    return float(FrameDescriptors.load(path)[1]["descriptors_s"])


def _shards(entries: list, size: int) -> list[list]:
    return [entries[k : k + size] for k in range(0, len(entries), size)]


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/splits.json"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N CIFs (smoke runs)")
    parser.add_argument("--scaling-subset", type=int, default=1500,
                        help="CIFs for the 1 vs 2 worker comparison (0 = skip it)")
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--scaling-shard-size", type=int, default=25, help="smaller shards balance the subset")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved 1/2-worker repeats (min is kept)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None,
                        help="descriptor .npz: reuse if present (timings then exclude the descriptor stage)")
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="also save the max_separation and cluster splits here and draw their reports")
    args = parser.parse_args()
    try:
        import CoRE_MOF  # noqa: F401
    except ImportError:
        raise SystemExit("benchmarks/splits.py needs the CoRE_MOF package: pip install -e '.[dev]'") from None

    import ray
    from threadpoolctl import threadpool_limits

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "load_average_at_start": os.getloadavg()}, "subsets": list(SUBSETS)}
    try:
        entries, t_read = _timed(read_catalogue, SUBSETS, args.limit)
        picked = np.sort(np.random.default_rng(0).choice(len(entries), min(args.scaling_subset, len(entries)),
                                                         replace=False))
        subset = [entries[k] for k in picked]
        runs: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.repeats if args.scaling_subset > 0 else 0):  # interleaved: load drifts
            for n_workers in (1, 2):
                _, seconds = _timed(describe_shards, _shards(subset, args.scaling_shard_size), load_cifs,
                                    n_workers=n_workers)
                runs[n_workers].append(seconds)
                print(f"scaling subset, {n_workers} worker(s): {seconds:.1f} s", flush=True)
        scaling = {n: min(times, default=float("nan")) for n, times in runs.items()}
        result["descriptors_from_cache"] = args.cache is not None and args.cache.is_file()
        if result["descriptors_from_cache"]:
            descriptors, t_describe = FrameDescriptors.load(args.cache)[0], result_of_cache(args.cache)
        else:
            descriptors, t_describe = _timed(describe_shards, _shards(entries, args.shard_size), load_cifs,
                                             n_workers=args.workers)
            if args.cache is not None:
                descriptors.save(args.cache, {"subsets": list(SUBSETS), "n_cifs": len(entries),
                                              "descriptors_s": t_describe})
        print(f"descriptors of {len(descriptors)} structures: {t_describe:.1f} s", flush=True)
    finally:
        ray.shutdown()
    stages = {"read_archives_s": t_read, "descriptors_s": t_describe}
    with threadpool_limits(limits=1):
        config = SplitConfig()
        space, stages["metric_s"] = _timed(chemical_space, descriptors, config.weight)
        clustering, stages["pca_hdbscan_s"] = _timed(cluster_parents, space, config.min_cluster_size,
                                                     config.min_samples, config.pca_components, config.noise)
        leaf, stages["pca_hdbscan_leaf_s"] = _timed(cluster_parents, space, config.min_cluster_size,
                                                    config.min_samples, config.pca_components, config.noise, "leaf")
        splits = {}
        strategies = {"random": {}, "size": {}, "max_separation": {}, "cluster": {},
                      "cluster_5fold_0": {"strategy": "cluster", "n_folds": 5, "fold": 0},
                      "cluster_leaf_5fold_0": {"strategy": "cluster", "n_folds": 5, "fold": 0,
                                               "cluster_selection": "leaf"},
                      "element_Zn": {"strategy": "element", "element": "Zn"}, "metal": {}}
        for name, extra in strategies.items():
            split_config = SplitConfig(**({"strategy": name} | extra))
            clusters = leaf if split_config.cluster_selection == "leaf" else clustering
            outcome, seconds = _timed(split_parents, space, split_config, "sha256:coremof-2019", clusters)
            stats = outcome.split.statistics
            if args.report_dir is not None and name in ("max_separation", "cluster"):
                from farfield.data.split_report import write_split_report

                saved = outcome.save(args.report_dir / f"coremof-{name}.json")
                write_split_report(saved, args.report_dir / f"coremof-{name}-report")
            splits[name] = {
                "seconds": seconds, "n": {side: stats[side]["n_parents"] for side in ("train", "val", "test")},
                "median_nearest_train": stats["nearest_train_distance"]["test"]["q50"],
                "median_nearest_train_random": stats["nearest_train_distance"]["random_test"]["q50"],
                "ratio": stats["nearest_train_distance"]["test_over_random_median"],
                "test_elements_missing_from_train": len(stats["test_elements_missing_from_train"]),
                "selection": outcome.split.parameters["selection"],
            }
    stages["splits_s"] = sum(s["seconds"] for s in splits.values())
    result.update({
        "n_cifs": len(entries), "n_structures": len(descriptors), "n_skipped": len(entries) - len(descriptors),
        "n_parents": len(space), "n_atoms_mean": float(descriptors.n_atoms.mean()),
        "n_atoms_max": int(descriptors.n_atoms.max()), "descriptor_dims": {
            "geometry": int(descriptors.geometry.shape[1]), "composition": int(space.composition.shape[1])},
        "clusters": {"eom": {"n_clusters": clustering.n_clusters, "n_noise": int(clustering.is_noise.sum()),
                             "largest": int(np.bincount(clustering.labels).max())},
                     "leaf": {"n_clusters": leaf.n_clusters, "n_noise": int(leaf.is_noise.sum()),
                              "largest": int(np.bincount(leaf.labels).max())}},
        "stages": stages, "total_wall_s": sum(stages.values()),
        "scaling": {"n_cifs": len(subset), "sample": "random CIFs of the catalogue (seed 0)",
                    "runs_s": runs, "one_worker_s": scaling[1], "two_workers_s": scaling[2],
                    "efficiency": scaling[1] / (2 * scaling[2]),
                    "note": "includes starting the actors (imports) in every run"},
        "splits": splits, "load_average_at_end": os.getloadavg(),
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("n_structures", "n_parents", "stages", "total_wall_s", "scaling")},
                     indent=1))


if __name__ == "__main__":
    main()
