"""The issue's reference point: one NequIP-style training step on ~200 atoms with 2 threads → JSON.

Reference measured on this machine before farfield: a 75k-parameter 3-layer NequIP-style
e3nn model took ~1.3 s per step (energy + forces). This times farfield's NequIP-style
backbone (default and a ~75k-parameter size) on bundled MOF cells batched to ~200 atoms.

    python benchmarks/nequip_baseline.py --out benchmarks/results/nequip_baseline.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from farfield.data.datasets import bundled_store
from farfield.models import ModelConfig, build_potential, collate
from farfield.models.training import build_graphs

from _training_step import training_step

REFERENCE_S_PER_STEP = 1.3


def batch_of_about(frames, n_atoms: int):
    chosen, total = [], 0
    for atoms in sorted(frames, key=len, reverse=True):
        if total + len(atoms) <= n_atoms + 5:
            chosen.append(atoms)
            total += len(atoms)
        if total >= n_atoms - 5:
            break
    return collate(build_graphs(chosen, 5.0, torch.float32))


def time_steps(config: ModelConfig, batch, steps: int) -> tuple[float, int]:
    potential = build_potential(config)
    optimizer = torch.optim.AdamW(potential.parameters())
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        training_step(potential, optimizer, batch)
        times.append(time.perf_counter() - start)
    return sorted(times[2:])[len(times[2:]) // 2], sum(p.numel() for p in potential.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/nequip_baseline.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--atoms", type=int, default=200)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as workspace:
        frames = bundled_store(workspace).read()
    batch = batch_of_about(frames, args.atoms)
    results = []
    for label, config in (("default", ModelConfig(backbone="nequip", layers=3)),
                          ("about_75k", ModelConfig(backbone="nequip", layers=3, channels=28))):
        seconds, n_params = time_steps(config, batch, args.steps)
        results.append({"model": label, "n_parameters": n_params, "channels": config.channels, "layers": 3,
                        "seconds_per_step_median": seconds, "speedup_vs_reference": REFERENCE_S_PER_STEP / seconds})
        print(f"{label:>10}: {n_params} params, {seconds:.3f} s/step, {REFERENCE_S_PER_STEP / seconds:.1f}x the reference")
    report = {"benchmark": "nequip_baseline", "n_atoms": int(batch.n_atoms.sum()), "threads": args.threads,
              "reference_seconds_per_step": REFERENCE_S_PER_STEP, "torch": torch.__version__, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
