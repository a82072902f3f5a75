"""Benchmark: ``.aselmdb`` import (:func:`farfield.data.aselmdb_import.import_aselmdb`) of a
generated ODAC-like set on 1 and 2 Ray workers.

The set: ``--frames`` rows (default 200,000) in ``--files`` shards written through
``ase-db-backends``, ``--configs-per-parent`` configurations per parent (key ``mof_name``),
16-atom periodic NaCl-type cells (rattled by 0.05 Å, zero-sum charges in ``row.data``,
random forces, energies around -3.4 eV/atom) and one row in every 10,000 with a NaN force
(a bad frame, imported with ``skip_invalid``). Each import keeps the
``--lowest`` lowest-energy configurations per parent (the paper's ODAC25 rule) and runs in a
fresh process (so its driver's peak memory is its own).

Reported per worker count: wall time (Ray start included), reading time (Ray start →
last chunk done), store writing time, frames/s over the wall and the reading time, the
workers' CPU seconds and frames per CPU second (robust on a shared machine, where a
worker may get a fraction of a core), peak RSS of each Ray worker process and of the
driver (MB), and the scaling T1 / (2 T2) of the wall and reading times.

    python benchmarks/import_aselmdb.py --out benchmarks/results/import_aselmdb.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

ATOMS_PER_FRAME = 16
BAD_EVERY = 10_000


def write_shard(path: str, first: int, n_rows: int, configs_per_parent: int, seed: int) -> int:
    """Write rows ``first`` … ``first + n_rows - 1`` of the set into the shard ``path``
    through ase-db-backends; returns the number of rows written."""
    import ase.db
    from ase.build import bulk
    from ase.db.row import AtomsRow

    rng = np.random.default_rng(seed)
    base = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 1, 1))
    charges = np.tile([0.8, -0.8], len(base) // 2)
    with ase.db.connect(path, use_lock_file=False) as db:
        for k in range(first, first + n_rows):
            forces = rng.normal(scale=0.3, size=(len(base), 3))
            if k % BAD_EVERY == BAD_EVERY - 1:
                forces[0, 0] = np.nan
            row = AtomsRow({"numbers": base.numbers, "cell": base.cell.array, "pbc": base.pbc,
                            "positions": base.positions + rng.normal(scale=0.05, size=(len(base), 3)),
                            "energy": -54.4 - rng.random(), "forces": forces,
                            "unique_id": f"{k:032x}"})
            db.write(row, data={"mof_name": f"mof{k // configs_per_parent:06d}", "charge": 0,
                                "ddec_charges": charges})
    return n_rows


def generate(folder: Path, n_frames: int, n_files: int, configs_per_parent: int) -> float:
    """Write the set with two processes; returns the seconds taken."""
    t0 = time.perf_counter()
    per_file = -(-n_frames // n_files)
    jobs = [(str(folder / f"data.{i:04d}.aselmdb"), i * per_file,
             min(per_file, n_frames - i * per_file), configs_per_parent, i) for i in range(n_files)
            if i * per_file < n_frames]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.starmap(write_shard, jobs)
    return time.perf_counter() - t0


def _import_once(folder: str, out: str, n_workers: int, lowest: int, chunk_rows: int) -> dict:
    """One import in this (fresh) process; its report and the driver's peak RSS."""
    from farfield.data.aselmdb_import import import_aselmdb
    from farfield.data.importers.aselmdb import AselmdbOptions
    from farfield.data.selection import SelectionRules

    t0 = time.perf_counter()
    report = import_aselmdb([folder], out, options=AselmdbOptions(parent_key="mof_name"),
                            rules=SelectionRules(lowest_energy_per_parent=lowest),
                            key_map={"charges": "ddec_charges", "total_charge": "charge"},
                            skip_invalid=True, n_workers=n_workers, chunk_rows=chunk_rows,
                            progress=False, overwrite=True)
    wall = time.perf_counter() - t0
    reading = report.reading
    return {"n_workers": n_workers, "wall_s": round(wall, 1),
            "read_s": round(reading["read_s"], 1), "write_s": round(reading["write_s"], 1),
            "rows": reading["n_rows"], "chunks": reading["chunks"],
            "frames_per_s_wall": round(reading["n_rows"] / wall, 1),
            "frames_per_s_reading": round(reading["n_rows"] / reading["read_s"], 1),
            "cpu_s_workers": round(sum(w["cpu_s"] for w in reading["workers"]), 1),
            "frames_per_cpu_s": round(reading["n_rows"] / sum(w["cpu_s"] for w in reading["workers"]), 1),
            "problems": len(report.problems), "selection": report.selection,
            "stored": len(report.store), "workers": reading["workers"],
            "peak_rss_mb_worker_max": max(w["peak_rss_mb"] for w in reading["workers"]),
            "peak_rss_mb_driver": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "content_hash": report.store.content_hash}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--configs-per-parent", type=int, default=20)
    parser.add_argument("--lowest", type=int, default=10)
    parser.add_argument("--chunk-rows", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/import_aselmdb.json"))
    args = parser.parse_args()
    result = {"benchmark": "import_aselmdb", "frames": args.frames, "files": args.files,
              "atoms_per_frame": ATOMS_PER_FRAME, "configs_per_parent": args.configs_per_parent,
              "lowest_energy_per_parent": args.lowest, "chunk_rows": args.chunk_rows,
              "bad_rows": args.frames // BAD_EVERY, "machine": {
                  "cpus": os.cpu_count(), "python": platform.python_version(),
                  "load_average_start": list(os.getloadavg())}, "runs": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="farfield-aselmdb-bench-") as tmp:
        folder = Path(tmp) / "source"
        folder.mkdir()
        result["generate_s"] = round(generate(folder, args.frames, args.files,
                                              args.configs_per_parent), 1)
        result["source_bytes"] = sum(p.stat().st_size for p in folder.glob("*.aselmdb"))
        print(f"generated {args.frames} frames in {result['generate_s']} s", flush=True)
        context = multiprocessing.get_context("spawn")
        for n_workers in args.workers:
            with context.Pool(1) as pool:
                run = pool.apply(_import_once, (str(folder), str(Path(tmp) / f"store-{n_workers}"),
                                                n_workers, args.lowest, args.chunk_rows))
            run["load_average_end"] = list(os.getloadavg())
            result["runs"].append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "workers"}), flush=True)
            if len(result["runs"]) > 1:
                t1 = result["runs"][0]["wall_s"] * result["runs"][0]["n_workers"]
                result["scaling_wall"] = round(t1 / (n_workers * run["wall_s"]), 2)
                t1 = result["runs"][0]["read_s"] * result["runs"][0]["n_workers"]
                result["scaling_reading"] = round(t1 / (n_workers * run["read_s"]), 2)
            args.out.write_text(json.dumps(result, indent=1) + "\n")  # partial results survive
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
