"""Training-step throughput of each backbone on the bundled MOF data → JSON.

Measures, per backbone and batch size: training steps/s (energy + forces loss,
backward, optimiser step), atoms/s, and peak memory (CUDA: max allocated; CPU: max RSS of a
fresh process that loads the data, builds the model and trains). Never asserts on timings.

    python benchmarks/train_step.py --out benchmarks/results/train_step.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from farfield.data.datasets import bundled_store
from farfield.models import BACKBONES, ModelConfig, TrainingConfig, build_potential
from farfield.models.config import DTYPES
from farfield.models.training import Trainer, build_graphs, force_rms, iterate_batches, resolve_device

from _training_step import training_step


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_backbone(backbone: str, graphs, batch_size: int, device, dtype, steps: int, warmup: int) -> dict:
    config = ModelConfig(backbone=backbone, dtype=dtype)
    potential = build_potential(config, energy_scale=force_rms(graphs))
    trainer = Trainer(potential, TrainingConfig(batch_size=batch_size, ema_decay=0.99), device=device, progress=False)
    batches = [b.to(device, trainer.dtype) for b in iterate_batches(graphs, batch_size, shuffle=False)]
    batches = (batches * (1 + (steps + warmup) // len(batches)))[: steps + warmup]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    n_atoms = 0
    for k, batch in enumerate(batches):
        if k == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            cpu_start = time.process_time()
        training_step(trainer.potential, trainer.optimizer, batch)
        trainer.ema.update(trainer.potential)
        if k >= warmup:
            n_atoms += int(batch.n_atoms.sum())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    cpu_elapsed = time.process_time() - cpu_start
    peak = (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else _max_rss_mb()
    return {
        "backbone": backbone,
        "batch_size": batch_size,
        "atoms_per_batch_mean": n_atoms / steps,
        "steps_per_s": steps / elapsed,
        "atoms_per_s": n_atoms / elapsed,
        "seconds_per_step": elapsed / steps,
        "cpu_seconds_per_step": cpu_elapsed / steps,
        "peak_memory_mb": peak,
        "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_process_max_rss",
        "n_parameters": sum(p.numel() for p in potential.parameters()),
        "channels": config.channels,
        "layers": config.layers,
        "cutoff": config.cutoff,
        "dtype": dtype,
    }


def _measure(frames, backbone: str, batch_size: int, device: str, args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch_dtype = DTYPES[args.dtype]
    graphs = build_graphs(frames, ModelConfig().cutoff, torch_dtype)
    return bench_backbone(backbone, graphs, batch_size, torch.device(device), args.dtype, args.steps, args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step.json"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as workspace:
        store = bundled_store(workspace)
        frames = store.read()
    # each measurement in a fresh process, so peak memory is that configuration's own
    context = multiprocessing.get_context("spawn")
    results = []
    for name in sorted(BACKBONES):
        for bs in args.batch_sizes.split(","):
            with context.Pool(1) as pool:
                results.append(pool.apply(_measure, (frames, name, int(bs), str(device), args)))
    report = {
        "benchmark": "train_step",
        "dataset": store.content_hash,
        "n_structures": len(frames),
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for row in results:
        print(f"{row['backbone']:>8} bs={row['batch_size']:<3} {row['steps_per_s']:7.2f} steps/s "
              f"{row['cpu_seconds_per_step']:6.3f} CPU s/step "
              f"{row['atoms_per_s']:9.0f} atoms/s  peak {row['peak_memory_mb']:.0f} MB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
