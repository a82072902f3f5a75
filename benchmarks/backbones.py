"""Training-step throughput and peak memory of every backbone on bundled MOF batches → JSON.

For each backbone and each target batch size (~100, ~300, ~1000 atoms of consecutive
bundled MOF structures): steps/s and atoms/s of a full training step (energy + forces
loss with ``create_graph``, backward, AdamW step), median over ``--steps`` after
``--warmup``; wall and process-CPU seconds (CPU time is robust to other processes on a
shared machine); peak memory (CUDA: max allocated; CPU: peak RSS of a fresh subprocess
per measurement, minus its RSS before the first step). Plus the issue's reference point:
a ~75k-parameter 3-layer NequIP-style model on ~200 atoms (baseline: 1.3 s/step with 2
threads). CPU here, CUDA when available. Never asserts on timings.

    python benchmarks/backbones.py --out benchmarks/results/backbones.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Hyperparameters per backbone (the rest are ModelConfig defaults); "nequip-75k" is the
#: issue's reference model size.
MODELS = {
    "painn": dict(backbone="painn", channels=64, layers=3),
    "nequip": dict(backbone="nequip", channels=32, layers=3, l_max=2, hidden_l_max=1),
    "mace": dict(backbone="mace", channels=64, layers=2, l_max=3, hidden_l_max=1, correlation=3,
                 radial_mlp=[64, 64, 64]),
    "nequip-75k": dict(backbone="nequip", channels=32, layers=3, l_max=2, hidden_l_max=2, radial_mlp=[32, 32]),
    # the reference's defaults (64 scalar, 16 tensor features, 2 layers, MLPs 64 wide and 1 deep), l_max 2
    "allegro": dict(backbone="allegro", channels=64, layers=2, l_max=2, tensor_features=16, radial_mlp=[64],
                    latent_mlp=[64]),
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(model: str, target_atoms: int, steps: int, warmup: int, device_name: str, dtype: str,
            compile_: bool) -> dict:
    """One (model, batch size) measurement in this process."""
    import numpy as np
    import torch

    from farfield.data.datasets import bundled_store
    from farfield.models import ModelConfig, build_potential
    from farfield.models.graph import collate
    from farfield.models.training import build_graphs, resolve_device

    from _training_step import training_step

    device = resolve_device(device_name)
    with tempfile.TemporaryDirectory() as tmp:
        frames = bundled_store(tmp).read()
    config = ModelConfig(dtype=dtype, compile=compile_, **MODELS[model])
    torch_dtype = config.torch_dtype
    graphs = build_graphs(frames, config.cutoff, torch_dtype)
    config.avg_neighbors = float(np.mean([g.edge_index.shape[1] / len(g.numbers) for g in graphs]))
    members, n = [], 0
    for graph in graphs:
        if n >= target_atoms:
            break
        members.append(graph)
        n += len(graph.numbers)
    batch = collate(members).to(device, torch_dtype)
    torch.manual_seed(0)
    potential = build_potential(config).to(device)
    optimizer = torch.optim.AdamW(potential.parameters(), lr=1e-3)
    rss_before = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        training_step(potential, optimizer, batch)

    wall, cpu = [], []
    for k in range(warmup + steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if k >= warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    seconds = sorted(wall)[len(wall) // 2]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _rss_mb() - rss_before
    return {
        "model": model, "backbone": config.backbone, "target_atoms": target_atoms, "n_atoms": n,
        "n_structures": len(members), "n_edges": int(batch.edge_index.shape[1]),
        "seconds_per_step": seconds, "cpu_seconds_per_step": sorted(cpu)[len(cpu) // 2],
        "steps_per_s": 1.0 / seconds, "atoms_per_s": n / seconds, "all_seconds": wall,
        "peak_memory_mb": peak, "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_rss_growth",
        "n_parameters": sum(p.numel() for p in potential.parameters()),
        "hyperparameters": config.model_dump(mode="json", exclude={"heads", "long_range"}),
        "device": str(device), "threads": torch.get_num_threads(),
    }


def main() -> None:
    from farfield.models.config import DTYPES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "backbones.json")
    parser.add_argument("--models", default="painn,nequip,mace,allegro,nequip-75k")
    parser.add_argument("--atoms", default="100,300,1000")
    parser.add_argument("--reference-atoms", type=int, default=200, help="batch size of the nequip-75k reference")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="1 by default: on a shared machine, multi-thread "
                        "CPU time includes spin-waiting and wall time includes the neighbours")
    parser.add_argument("--compile", action="store_true", help="also pass model.compile: true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.one:  # one measurement in a fresh process (clean peak RSS)
        model, atoms = args.one.split(":")
        print(json.dumps(measure(model, int(atoms), args.steps, args.warmup, args.device, args.dtype, args.compile)))
        return
    results, failures = [], []
    for model in args.models.split(","):
        sizes = [args.reference_atoms] if model == "nequip-75k" else [int(a) for a in args.atoms.split(",")]
        for atoms in sizes:
            cmd = [sys.executable, __file__, "--one", f"{model}:{atoms}", "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--threads", str(args.threads), "--device", args.device,
                   "--dtype", args.dtype] + (["--compile"] if args.compile else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                failures.append({"model": model, "target_atoms": atoms, "error": proc.stderr.strip()[-1500:]})
                print(f"{model:>10} ~{atoms} atoms: FAILED")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(row)
            print(f"{model:>10} {row['n_atoms']:>5} atoms: {row['seconds_per_step']:.3f} s/step "
                  f"({row['cpu_seconds_per_step']:.3f} CPU s), {row['atoms_per_s']:.0f} atoms/s, "
                  f"peak {row['peak_memory_mb']:.0f} MB, {row['n_parameters']} params")
    report = {"benchmark": "backbones", "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "threads": args.threads, "dtype": args.dtype, "compile": args.compile,
              "reference": {"model": "nequip-75k", "baseline_seconds_per_step": 1.3, "baseline_atoms": 200,
                            "baseline_threads": 2},
              "results": results, "failures": failures}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
