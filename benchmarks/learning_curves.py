"""Learning curves and final errors of a sweep's trials, read back from MLflow.

    python benchmarks/learning_curves.py --experiment protocol-check --workspace workspace \
        --out benchmarks/results/learning_curves.json --figure docs/figures/learning-curves.png

For every finished run of the experiment: the per-epoch validation force and energy MAE
(``curve/val_f_mae`` meV/Å, ``curve/val_e_mae`` meV/atom), the seconds per epoch (from the
metrics' timestamps, so they include evaluation), the final test MAEs next to the dummy
baseline on the same test structures (zero forces, per-element reference energies:
``key/baseline_*``) and the skill ``1 − MAE / baseline``. Writes JSON and one figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def collect(experiment: str, workspace: str, sweep: str | None = "latest") -> list[dict]:
    """Finished trial runs of ``experiment``: of the sweep named by its id, of the latest sweep
    (``"latest"``, by start time) or of every sweep (None)."""
    from mlflow.tracking import MlflowClient

    from farfield.orchestrator.config import TrackingConfig
    from farfield.orchestrator.tracking import tracking_uri

    client = MlflowClient(tracking_uri(TrackingConfig(experiment=experiment), Path(workspace)))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"no MLflow experiment {experiment!r} in {workspace}")
    finished = [run for run in client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'")
                if "test/f_mae" in run.data.metrics]  # not a sweep's summary run
    if sweep == "latest" and finished:
        sweep = max(finished, key=lambda run: run.info.start_time).data.tags.get("sweep_id")
    if sweep is not None:
        finished = [run for run in finished if run.data.tags.get("sweep_id") == sweep]
    runs = []
    for run in finished:
        curves = {}
        for key in ("curve/val_f_mae", "curve/val_e_mae", "curve/train_loss"):
            history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
            curves[key.split("/")[1]] = [m.value for m in history]
            stamps = [m.timestamp for m in history]
        per_epoch = float(np.median(np.diff(stamps)) / 1e3) if len(stamps) > 1 else float("nan")
        m = run.data.metrics
        runs.append({
            "run_id": run.info.run_id, "name": run.info.run_name,
            "sweep_id": run.data.tags.get("sweep_id"), "dataset_hash": run.data.tags.get("dataset_hash"),
            "split": run.data.tags.get("split", run.data.params.get("split.strategy")),
            "epochs_run": int(m.get("epochs_run", len(curves["val_f_mae"]))),
            "seconds_per_epoch": per_epoch, "curves": curves,
            "test_f_mae": m["test/f_mae"], "test_e_mae": m["test/e_mae"],
            "train_f_mae": m.get("train/f_mae"), "train_e_mae": m.get("train/e_mae"),
            # the baselines on the same test structures, from the logged skill = 1 − MAE / baseline
            "baseline_f_mae": _baseline(m["test/f_mae"], m.get("key/f_skill")),
            "baseline_e_mae": _baseline(m["test/e_mae"], m.get("key/e_skill")),
            "f_skill": m.get("key/f_skill"), "e_skill": m.get("key/e_skill"),
        })
    return sorted(runs, key=lambda r: r["name"])


def _baseline(error: float, skill: float | None) -> float | None:
    return None if skill is None or skill >= 1 else error / (1.0 - skill)


def draw(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for run in runs:
        epochs = np.arange(1, len(run["curves"]["val_f_mae"]) + 1)
        axes[0].plot(epochs, run["curves"]["val_f_mae"], label=run["name"])
        axes[1].plot(epochs, run["curves"]["val_e_mae"], label=run["name"])
    for ax, unit, key in ((axes[0], "force MAE (meV/Å)", "baseline_f_mae"),
                          (axes[1], "energy MAE (meV/atom)", "baseline_e_mae")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation {unit}")
        ax.set_yscale("log")
        values = [r[key] for r in runs if r.get(key)]
        if values:
            ax.axhline(float(np.mean(values)), color="grey", ls="--", lw=1,
                       label="baseline (test side, mean over runs)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--workspace", default="workspace")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--sweep", default="latest",
                        help="sweep id to read, 'latest' (default) or 'all'")
    args = parser.parse_args()
    runs = collect(args.experiment, args.workspace, None if args.sweep == "all" else args.sweep)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"experiment": args.experiment, "runs": runs}, indent=1) + "\n")
    if args.figure:
        draw(runs, args.figure)
    print("| trial | epochs | s/epoch | test f MAE (meV/Å) | zero-force | test e MAE (meV/atom) | ref-energy baseline |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['name']} | {r['epochs_run']} | {r['seconds_per_epoch']:.0f} | {r['test_f_mae']:.0f} | "
              f"{r['baseline_f_mae'] or float('nan'):.0f} | {r['test_e_mae']:.1f} | {r['baseline_e_mae'] or float('nan'):.1f} |")


if __name__ == "__main__":
    main()
