"""Orchestration overhead of a sweep: how much wall time is not spent inside trials.

For each trial length (``--epochs``) it runs an 8-trial sweep (grid ``seed`` × samples)
of small PaiNN trials on the bundled data, on a local Ray with ``--cpus`` slots (one CPU
per trial) and a light MLflow server, and measures:

* ``wall_s``: ``run_sweep`` from call to return (data/split preparation, Tune, summary run);
* ``trial_s``: each trial's time inside ``run_trial`` (its MLflow run's start → end: data
  loading, graphs, training, evaluation, logging);
* ``overhead_fraction`` = 1 − Σ trial_s / (slots × wall_s): the share of the slots' time
  not spent inside a trial (startup, scheduling, reporting, checkpoint syncing, idle tail);
* ``start_latency_s``: per trial, the time from a slot becoming free (sweep start, or the
  previous trial in that slot ending) to the trial's MLflow run starting;
* ``ray_init_s`` and ``mlflow_server_start_s``: one-off costs, measured separately.

``decompose`` splits the overhead into a one-off start, the gap between trials in a slot
and a tail, and predicts the overhead fraction for trials of a few minutes.

    python benchmarks/orchestration.py --out benchmarks/results/orchestration.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def _trial_times(uri: str, experiment_id: str, sweep_id: str) -> list[tuple[float, float]]:
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(uri).search_runs([experiment_id], f"tags.sweep_id = '{sweep_id}'")
    return sorted((r.info.start_time / 1000, r.info.end_time / 1000) for r in runs
                  if "tune_trial_id" in r.data.tags and r.info.end_time)


def _start_latencies(times: list[tuple[float, float]], t0: float, slots: int) -> list[float]:
    free = [t0] * slots
    latencies = []
    for start, end in times:
        slot = min(range(slots), key=lambda i: free[i] if free[i] <= start else float("inf"))
        latencies.append(start - free[slot] if free[slot] <= start else 0.0)
        free[slot] = end
    return latencies


def measure(epochs: int, trials: int, slots: int, root: Path, server_uri: str) -> dict:
    from farfield.orchestrator.sweep.run import run_sweep
    from farfield.orchestrator.sweep.config import SweepConfig

    name = f"overhead-e{epochs}"
    config = SweepConfig.model_validate({
        "name": name, "workspace": str(root / "ws"),
        "data": {"dataset": "bundled", "max_structures": 48},
        "model": {"channels": 16, "layers": 2, "cutoff": 4.5},
        "training": {"epochs": epochs, "batch_size": 4, "patience": None},
        "tracking": {"experiment": "overhead", "uri": server_uri},
        "resources": {"num_cpus": 1},
        "sweep": {"grid": {"seed": list(range(trials))}, "max_concurrent": slots, "storage_path": str(root / "sw")},
    })
    t0 = time.time()
    result = run_sweep(config, progress_every_s=3600)
    wall = time.time() - t0
    times = _trial_times(result.tracking_uri, result.experiment_id, result.sweep_id)
    trial_s = [end - start for start, end in times]
    latencies = _start_latencies(times, t0, slots)
    return {
        "epochs": epochs, "trials": len(times), "slots": slots, "wall_s": wall,
        "trial_s_mean": float(np.mean(trial_s)), "trial_s": trial_s,
        "overhead_fraction": 1 - sum(trial_s) / (slots * wall),
        "start_latency_s_mean": float(np.mean(latencies)), "start_latency_s_first": latencies[0],
        "start_latency_s": latencies,
    }


def decompose(rows: list[dict]) -> dict:
    """Split the overhead into a one-off start, a gap between trials in a slot, and a tail.

    ``startup_s``: mean latency of the first trial of each slot (driver preparation, Tune
    start, the first worker process and its imports); ``between_trials_s``: mean latency of
    the later trials (a warm, reused worker); ``tail_s``: wall time after the slots' last
    trials (final reports, the summary run). From these, the predicted overhead fraction of
    an 8-trial, 2-slot sweep whose trials each take ``m`` minutes.
    """
    starts, gaps, tails = [], [], []
    for r in rows:
        lat = r["start_latency_s"]
        starts += lat[: r["slots"]]
        gaps += lat[r["slots"]:]
        tails.append(r["wall_s"] - (sum(r["trial_s"]) + sum(lat)) / r["slots"])
    start, gap, tail = float(np.mean(starts)), float(np.mean(gaps)) if gaps else 0.0, float(np.mean(tails))
    predicted = {}
    for minutes in (1, 3, 5, 10):
        trial, n, slots = 60.0 * minutes, 8, 2
        wall = start + tail + (n / slots) * trial + (n / slots - 1) * gap
        predicted[f"{minutes}min_trials"] = 1 - n * trial / (slots * wall)
    return {"startup_s": start, "between_trials_s": gap, "tail_s": tail,
            "predicted_overhead_fraction_8_trials_2_slots": predicted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/orchestration.json")
    parser.add_argument("--from-json", help="only recompute the summary of an earlier result file")
    args = parser.parse_args()
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        report = {k: v for k, v in report.items() if k not in ("per_trial_overhead_s", "predicted_overhead_fraction")}
        report.update(decompose(report["sweeps"]))
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(json.dumps({k: v for k, v in report.items() if k != "sweeps"}, indent=1))
        return

    import ray

    from farfield.orchestrator.mlflow_server import ManagedServer

    root = Path(tempfile.mkdtemp(prefix="farfield-overhead-"))
    t = time.time()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray_init_s = time.time() - t
    t = time.time()
    with ManagedServer.start(root / "ws") as server:
        server_s = time.time() - t
        rows = [measure(e, args.trials, args.cpus, root, server.uri) for e in args.epochs]
    ray.shutdown()

    report = {
        "benchmark": "orchestration_overhead",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1m": os.getloadavg()[0]},
        "ray_init_s": ray_init_s, "mlflow_server_start_s": server_s,
        "sweeps": rows,
        **decompose(rows),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    for r in rows:
        print(f"epochs {r['epochs']}: {r['trials']} trials, wall {r['wall_s']:.0f} s, mean trial {r['trial_s_mean']:.0f} s, "
              f"overhead {100 * r['overhead_fraction']:.1f} %, mean start latency {r['start_latency_s_mean']:.1f} s")
    print(f"start {report['startup_s']:.1f} s, between trials {report['between_trials_s']:.2f} s, tail "
          f"{report['tail_s']:.1f} s → {100 * report['predicted_overhead_fraction_8_trials_2_slots']['3min_trials']:.1f} "
          f"% overhead for 8 three-minute trials; wrote {args.out}")


if __name__ == "__main__":
    main()
