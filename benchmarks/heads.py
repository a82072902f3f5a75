"""Cost of the long-range heads and of the electrostatics core → JSON.

Measures on supercells of the smallest bundled MOF (13 atoms; ~100, ~300, ~1000,
~5000 atoms):
  * per head: time of one energy + forces evaluation of PaiNN alone and of PaiNN + head,
    and the head's own cost (its forward and backward on fixed backbone features);
    ``overhead = t_head_only / t_backbone`` (the whole-potential difference is reported
    too, but on a shared machine it is dominated by noise);
  * CELLI dense vs conjugate-gradient solver (same model), to find the crossover;
  * Ewald (k-sum) vs PME energy + forces of random charges at relative accuracy 1e-6
    (parameters from ``tune``), to find the crossover (``PME_MIN_ATOMS``).
The fastest of ``--repeats`` runs after one warm-up (the minimum is the least disturbed
by other processes on a shared machine); never asserts on timings.

    python benchmarks/heads.py --out benchmarks/results/heads.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import ase.io
import numpy as np
import torch

from farfield.models import AtomicGraph, ModelConfig, build_potential
from farfield.models.config import DTYPES
from farfield.models.electrostatics import energy_and_forces, tune

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "mof_small.extxyz"
REPEATS = {"~100": (2, 2, 2), "~300": (2, 3, 4), "~1000": (4, 4, 5), "~5000": (8, 8, 6)}
HEADS = ("celli", "les", "efa", "d3")


def _timed(fn, repeats: int, device) -> float:
    if repeats > 1:
        fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _potential_time(graph, long_range, heads, device, dtype, repeats) -> float:
    torch.manual_seed(0)
    config = ModelConfig(long_range=long_range, heads=heads, dtype=dtype)
    potential = build_potential(config).to(device)
    batch = graph.to(device, next(potential.parameters()).dtype)
    return _timed(lambda: potential(batch, compute_forces=True), repeats, device)


def _head_only_time(graph, head_name, device, dtype, repeats) -> float:
    """Forward + backward (to positions and features) of one head on fixed backbone features."""
    torch.manual_seed(0)
    potential = build_potential(ModelConfig(long_range=[head_name], dtype=dtype)).to(device)
    batch = graph.to(device, next(potential.parameters()).dtype)
    with torch.no_grad():
        features = potential.backbone(batch, batch.edge_vectors())
    features.node_features.requires_grad_(True)
    head = potential.heads[head_name]

    def run():
        positions = batch.positions.detach().requires_grad_(True)
        energy = head(batch, features, positions, batch.cell)["energy"].sum()
        torch.autograd.grad(energy, [positions, features.node_features], allow_unused=True)

    return _timed(run, repeats, device)


def bench_heads(atoms, device, dtype: str, repeats: int, max_dense: int) -> dict:
    graph = AtomicGraph.from_atoms(atoms, ModelConfig().cutoff)
    row = {"n_atoms": len(atoms)}
    base = _potential_time(graph, [], {}, device, dtype, repeats)
    row["backbone_s"] = base
    for head in HEADS:
        try:
            only = _head_only_time(graph, head, device, dtype, repeats)
            row[f"{head}_only_s"], row[f"{head}_overhead"] = only, only / base
            row[f"{head}_potential_s"] = _potential_time(graph, [head], {}, device, dtype, repeats)
        except (RuntimeError, MemoryError) as err:  # e.g. out of memory at the largest size
            row[f"{head}_error"] = f"{type(err).__name__}: {str(err)[:200]}"
    for solver in ("dense", "cg"):
        if solver == "dense" and len(atoms) > max_dense:
            row["celli_dense_s"] = None
            continue
        row[f"celli_{solver}_s"] = _potential_time(
            graph, ["celli"], {"celli": {"solver": solver}}, device, dtype, repeats
        )
    return row


def bench_ewald_pme(atoms, device, repeats: int, accuracy: float) -> dict:
    rng = np.random.default_rng(0)
    charges = rng.normal(size=len(atoms))
    charges -= charges.mean()
    positions = torch.tensor(atoms.positions, device=device)
    cell = torch.tensor(atoms.cell.array, device=device)
    q = torch.tensor(charges, device=device)
    row = {"n_atoms": len(atoms), "accuracy": accuracy}
    for method in ("ewald", "pme"):
        params = tune(cell, len(atoms), accuracy, method)
        row[f"{method}_s"] = _timed(lambda: energy_and_forces(positions, cell, q, None, params, method), repeats, device)
        row[f"{method}_parameters"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.__dict__.items()}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/heads.json"))
    parser.add_argument("--sizes", nargs="*", default=list(REPEATS), choices=list(REPEATS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-repeats", type=int, default=1, help="repeats (no warm-up if 1) from 2000 atoms on")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--max-dense", type=int, default=5000, help="largest structure for the dense CELLI solve")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)
    cell = ase.io.read(FIXTURE)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = {
        "benchmark": "heads", "torch": torch.__version__, "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(), "model_dtype": args.dtype, "structure": FIXTURE.name, "runs": [],
    }
    for device in devices:
        for size in args.sizes:
            atoms = cell.repeat(REPEATS[size])
            print(f"[{device}] {size}: {len(atoms)} atoms", flush=True)
            repeats = args.repeats if len(atoms) < 2000 else args.large_repeats
            run = {"device": str(device), "size": size, "repeats": repeats}
            run["heads"] = bench_heads(atoms, device, args.dtype, repeats, args.max_dense)
            run["ewald_vs_pme"] = bench_ewald_pme(atoms, device, repeats, 1e-6)
            print(json.dumps(run), flush=True)
            results["runs"].append(run)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))  # after every size: partial results survive
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
