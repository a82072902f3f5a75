"""Training steps per second of one trial config, in a trial's own data path → JSON.

Loads the config's dataset and split and the training graphs from the workspace's graph cache
exactly as a trial does (``farfield.orchestrator.trial_pipeline``), builds its trainer, and
times ``--steps`` of its training steps (``Trainer.train_step``: energy + forces loss, double
backward, AdamW, EMA) after
``--warmup``, each measurement in a fresh process. With ``--compare-malloc`` every measurement
is repeated with the C library's allocator left as it is (``FARFIELD_MALLOC=system``,
models/training/allocator.py), alternating, ``--repeats`` times. Never asserts on timings.

    python benchmarks/trial_step.py configs/study-paper.yaml --workspace workspace \\
        --compare-malloc --repeats 3 --out benchmarks/results/trial_step_malloc.json

A sweep config's trial is its base config (random split); ``--variant NAME`` (repeatable)
times the grid's variants of that name instead, each with the variant's ``set`` applied, so
the cost of every model of a study is measured in one run:

    python benchmarks/trial_step.py configs/study-paper.yaml --workspace workspace \
        --variant short-range --variant les --variant celli-q --variant celli --variant efa \
        --variant short-range-4L --repeats 3 --out benchmarks/results/trial_step_variants.json

``--ablation LABEL:PATH=VALUE[,PATH=VALUE...]`` (repeatable) times each trial again with those
settings changed (values read as YAML), to price a model's parts, e.g. CELLI's charge feedback
and the width of its edge MLPs:

    python benchmarks/trial_step.py configs/study-paper.yaml --workspace workspace --variant celli-q \
        --ablation no-feedback:model.heads.celli.feedback=false \
        --ablation hidden-32:model.heads.celli.hidden=32 --repeats 3 --out benchmarks/results/trial_step_celli.json

Rows and the summary then name ``VARIANT/LABEL``; compare ``cpu_seconds_per_step`` when the
machine is shared (wall time counts the other processes' turns).
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch
import yaml

from farfield.models.training.allocator import ENV_VAR


def _measure(raw: dict, malloc: str, steps: int, warmup: int, threads: int) -> dict:
    os.environ[ENV_VAR] = malloc  # read when the trainer is built (retain_freed_memory)
    from farfield.models.training import iterate_batches
    from farfield.models.training.loss import target_scales
    from farfield.orchestrator.config import TrialConfig
    from farfield.orchestrator.trial_pipeline import (
        EpochReporters, make_trainer, open_data, seed_everything, side_ids, trial_graphs,
    )

    config = TrialConfig.model_validate(raw)
    seed_everything(config.seed)
    torch.set_num_threads(threads)
    store, split = open_data(config)
    graphs = trial_graphs(config, store, side_ids(config, store, split), config.model.torch_dtype)
    trainer, _ = make_trainer(config, graphs["train"], EpochReporters([]), progress=False)
    trainer.scales = target_scales(graphs["train"], trainer._reference_energy)
    batches = list(iterate_batches(graphs["train"], config.training.batch_size, shuffle=False))
    batches = (batches * (1 + (steps + warmup) // len(batches)))[: steps + warmup]
    n_atoms = 0
    for k, batch in enumerate(batches):
        if k == warmup:
            start, cpu_start = time.perf_counter(), time.process_time()
        trainer.train_step(batch)  # the trainer's own step (loss, backward, clipping, AdamW, EMA)
        if k >= warmup:
            n_atoms += int(batch.n_atoms.sum())
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
    return {"malloc": malloc, "seconds_per_step": elapsed / steps, "cpu_seconds_per_step": cpu_elapsed / steps,
            "atoms_per_s": n_atoms / elapsed, "n_train_structures": len(graphs["train"]),
            "device": str(trainer.device),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def _trials(path: Path, variants: list[str], workspace: Path | None) -> dict[str, dict]:
    """``{variant name (\"\" for the base): trial-config mapping}`` of a trial or sweep config."""
    raw = yaml.safe_load(path.read_text())
    if workspace is not None:
        raw["workspace"] = str(workspace.resolve())
    if not variants:
        raw.pop("sweep", None)
        return {"": raw}
    from farfield.orchestrator.sweep.config import SweepConfig, trial_data

    config = SweepConfig.model_validate(raw)
    grid = {v.name: v.model_dump(mode="json") for v in config.sweep.grid.variant or []}
    unknown = [name for name in variants if name not in grid]
    if unknown:
        raise SystemExit(f"{path}: no sweep.grid.variant named {', '.join(unknown)} (has: {', '.join(grid) or 'none'})")
    return {name: trial_data(config, {"variant": grid[name]}, {}) for name in variants}


def parse_ablation(text: str) -> tuple[str, dict]:
    """``LABEL:PATH=VALUE[,PATH=VALUE...]`` → ``(LABEL, {PATH: value})``, values read as YAML."""
    label, sep, body = text.partition(":")
    settings = {}
    for item in body.split(",") if sep else []:
        path, eq, value = item.partition("=")
        if not eq or not path.strip():
            break
        settings[path.strip()] = yaml.safe_load(value)
    else:
        if label.strip() and settings:
            return label.strip(), settings
    raise SystemExit(f"--ablation {text!r}: expected LABEL:PATH=VALUE[,PATH=VALUE...]")


def ablated(raw: dict, settings: dict) -> dict:
    """A deep copy of the trial mapping ``raw`` with each dotted ``PATH`` set (missing mappings created)."""
    from farfield.orchestrator.external.commands import set_dotted

    changed = copy.deepcopy(raw)
    for path, value in settings.items():
        set_dotted(changed, path, value, where="--ablation ")
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--workspace", type=Path, default=None, help="default: the config's")
    parser.add_argument("--steps", type=int, default=45)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compare-malloc", action="store_true")
    parser.add_argument("--variant", action="append", default=[],
                        help="a sweep.grid.variant name of the config (repeatable); default: the base config")
    parser.add_argument("--ablation", action="append", default=[], type=parse_ablation,
                        help="LABEL:PATH=VALUE[,PATH=VALUE...]: also time each trial with these settings (repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    trials = _trials(args.config, args.variant, args.workspace)
    for variant, raw in list(trials.items()):
        for label, settings in args.ablation:
            trials[f"{variant or 'base'}/{label}"] = ablated(raw, settings)
    mallocs = ["farfield", "system"] if args.compare_malloc else ["farfield"]
    context = multiprocessing.get_context("spawn")  # a fresh process (and heap) per measurement
    rows = []
    for repeat in range(args.repeats):
        for variant, raw in trials.items():
            for malloc in mallocs:
                with context.Pool(1) as pool:
                    row = pool.apply(_measure, (raw, malloc, args.steps, args.warmup, args.threads))
                rows.append({"repeat": repeat, "variant": variant, **row})
                print(f"repeat {repeat} {variant or 'base'} malloc={malloc:<8} {row['seconds_per_step']:.3f} s/step "
                      f"{row['cpu_seconds_per_step']:.3f} CPU s/step peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    key = "variant" if args.variant or args.ablation else "malloc"
    groups = list(trials) if key == "variant" else mallocs

    def medians(field: str) -> dict[str, float]:
        return {group: statistics.median(r[field] for r in rows if r[key] == group) for group in groups}

    summary, cpu_summary = medians("seconds_per_step"), medians("cpu_seconds_per_step")
    report = {"benchmark": "trial_step", "config": str(args.config), "steps": args.steps, "warmup": args.warmup,
              "threads": args.threads, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "median_seconds_per_step": summary, "median_cpu_seconds_per_step": cpu_summary,
              "ablations": {label: settings for label, settings in args.ablation}, "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"median s/step: {summary}; wrote {args.out}")


if __name__ == "__main__":
    main()
