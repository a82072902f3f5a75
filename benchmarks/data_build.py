"""Benchmark: GFN-xTB labelling with 1 and 2 Ray actors, and the CoRE MOF catalogue build.

* ``labelling``: the same 20 real CoRE MOF structures (input geometries of the first
  usable P1 frameworks with ``--min-atoms``…``--max-atoms`` atoms, distinct refcodes),
  one structure per shard, labelled by :func:`farfield.data.label_shards.label_shards`
  with 1 and then 2 actors (GFN1-xTB, one OpenMP thread per actor, OpenBLAS preloaded
  when installed). Reported: atoms/s and structures/s of the labelling phase (first
  task submitted → last result; Ray start-up and actor start reported separately),
  and the scaling efficiency T1 / (2 T2).
* ``catalogue``: :func:`farfield.data.catalogue.build_catalogue` over all three CoRE MOF
  subsets (23,845 CIFs) with 1 and 2 Ray workers, cache disabled (fresh directory).

    python benchmarks/data_build.py --out benchmarks/results/data_build.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from farfield.data.catalogue import build_catalogue
from farfield.data.coremof import (
    SUBSETS,
    StructureRejected,
    cif_to_atoms,
    iter_coremof_cifs,
    normalise_hydrogens,
    refcode_of,
)
from farfield.data.extxyz import format_frame
from farfield.data.label_shards import INPUTS, label_shards, openblas_preload
from farfield.data.labelling import XtbSettings
from farfield.data.records import PARENT_ID, STRUCTURE_ID


def benchmark_structures(n: int, min_atoms: int, max_atoms: int):
    """Input geometries (H normalised) of the first ``n`` usable distinct 2019-ASR MOFs."""
    found, seen = [], set()
    for entry in iter_coremof_cifs(["2019-ASR"], max_sites=max_atoms):
        if entry.n_sites < min_atoms or refcode_of(entry.name) in seen:
            continue
        try:
            atoms, _ = normalise_hydrogens(cif_to_atoms(entry.text, entry.name))
        except StructureRejected:
            continue
        if not min_atoms <= len(atoms) <= max_atoms:
            continue
        seen.add(refcode_of(entry.name))
        atoms.info = {STRUCTURE_ID: entry.name, PARENT_ID: refcode_of(entry.name)}
        found.append(atoms)
        if len(found) == n:
            return found
    raise RuntimeError(f"only {len(found)} structures with {min_atoms}-{max_atoms} atoms")


def time_labelling(structures, n_workers: int) -> dict:
    import ray

    work = Path(tempfile.mkdtemp(prefix=f"label-bench-{n_workers}-"))
    (work / INPUTS).mkdir()
    for k, atoms in enumerate(structures):
        (work / INPUTS / f"shard-{k:05d}.extxyz").write_text(format_frame(atoms))
    t0 = time.perf_counter()
    ray.init(num_cpus=n_workers, include_dashboard=False, log_to_driver=False)
    t_ray = time.perf_counter() - t0
    try:
        costs = {f"shard-{k:05d}.extxyz": len(a) ** 2 for k, a in enumerate(structures)}
        summary = label_shards(work, xtb=XtbSettings(method="GFN1-xTB"), n_workers=n_workers, shard_costs=costs,
                               progress=False)
    finally:
        ray.shutdown()
    atoms = sum(len(a) for a in structures)
    # wall_s spans actor start-up + labelling; per-structure time is in the shard summaries
    return {"workers": n_workers, "ray_init_s": round(t_ray, 2),
            "wall_s": round(summary["wall_s"], 2), "structures": summary["structures"],
            "atoms": atoms, "atoms_per_s": round(atoms / summary["wall_s"], 2),
            "structures_per_s": round(summary["structures"] / summary["wall_s"], 4),
            "blas": sorted({w["blas"] for w in summary["workers"]}), "failed": summary["failed"]}


def time_catalogue(n_workers: int, subsets) -> dict:
    t0 = time.perf_counter()
    table = build_catalogue(subsets, cache_dir=tempfile.mkdtemp(prefix="cat-bench-"),
                            n_workers=n_workers, progress=False, refresh=True)
    wall = time.perf_counter() - t0
    return {"workers": n_workers, "wall_s": round(wall, 1), "cifs": len(table),
            "usable": int((table["status"] == "ok").sum()), "cifs_per_s": round(len(table) / wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--structures", type=int, default=20)
    p.add_argument("--min-atoms", type=int, default=40)
    p.add_argument("--max-atoms", type=int, default=80)
    p.add_argument("--skip-catalogue", action="store_true")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/data_build.json"))
    args = p.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    structures = benchmark_structures(args.structures, args.min_atoms, args.max_atoms)
    one = time_labelling(structures, 1)
    two = time_labelling(structures, 2)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_start": os.getloadavg()},
        "openblas": openblas_preload(),
        "labelling": {"structures": [len(a) for a in structures], "one_worker": one,
                      "two_workers": two,
                      "scaling_efficiency": round(one["wall_s"] / (2 * two["wall_s"]), 3)},
    }
    if not args.skip_catalogue:
        c1 = time_catalogue(1, SUBSETS)
        c2 = time_catalogue(2, SUBSETS)
        result["catalogue"] = {"one_worker": c1, "two_workers": c2,
                               "scaling_efficiency": round(c1["wall_s"] / (2 * c2["wall_s"]), 3)}
    result["machine"]["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
