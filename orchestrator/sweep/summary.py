"""The sweep's table of trials and its MLflow summary run.

One row per Tune trial: grid cell, sampled values, outcome (complete / pruned /
failed / errored / stopped, the last: unfinished when the sweep was stopped), the sweep
metric (a full-budget value only for ``complete``; for ``pruned`` it is the last per-epoch value before ASHA stopped it, kept in a separate
column so nobody mistakes it for a result), epochs run, and its MLflow run id and
status. The summary run (tag ``sweep_summary = true``) holds the best complete trial,
counts per outcome, the search space, and the table as ``sweep/trials.csv``; it is named
``Σ sweep summary · <sweep name>`` so that it stands out among the trials' runs.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout
from farfield.orchestrator.sweep.config import SweepConfig, cell_label
from farfield.orchestrator.sweep.progress import trial_outcome
from farfield.orchestrator.tracking import now_ms
from farfield.orchestrator.trial import INTERRUPTED_PREFIX


def summary_run_name(sweep_name: str) -> str:
    """``Σ sweep summary · quickstart-sweep-20260101-120000``: recognisable even when the UI truncates it."""
    return f"Σ sweep summary · {sweep_name}"


def trial_table(grid, metric: str, cells: list[dict]) -> pd.DataFrame:
    """One row per trial of a Tune ``ResultGrid`` (run ids are filled in by ``log_summary``)."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        suggestion = result.config or {}
        outcome = trial_outcome(metrics, errored=result.error is not None)
        value = metrics.get(metric)
        value = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan
        row = {
            "trial_id": metrics.get("trial_id") or Path(result.path).name,
            "cell": cell_label(suggestion.get("cell", {})),
            **{f"grid.{k}": json.dumps(v) if isinstance(v, (list, dict)) else v
               for k, v in suggestion.get("cell", {}).items()},
            **{f"sampled.{k}": v for k, v in suggestion.get("sampled", {}).items()},
            "outcome": outcome,
            metric: value if outcome == "complete" else math.nan,
            f"last_{metric}": value,
            "test_f_mae": metrics.get("test_f_mae", math.nan) if outcome == "complete" else math.nan,
            "epochs": metrics.get("epoch"),
            "error": str(result.error).splitlines()[0][:300] if result.error is not None else
            metrics.get("failure_reason", ""),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def best_trial(table: pd.DataFrame, metric: str, mode: str) -> dict | None:
    complete = table[(table["outcome"] == "complete") & table[metric].notna()] if len(table) else table
    if not len(complete):
        return None
    index = complete[metric].idxmin() if mode == "min" else complete[metric].idxmax()
    return complete.loc[index].to_dict()


def _attach_runs(table: pd.DataFrame, client: MlflowClient, experiment_id: str, sweep_id: str) -> pd.DataFrame:
    runs = client.search_runs([experiment_id], f"tags.{run_layout.TAG_SWEEP_ID} = '{sweep_id}'", max_results=5000,
                              order_by=["start_time ASC"])
    chosen: dict[str, mlflow.entities.Run] = {}
    for run in runs:
        trial_id = run.data.tags.get(run_layout.TAG_TUNE_TRIAL_ID)
        if trial_id is None:
            continue
        previous = chosen.get(trial_id)
        if previous is None or previous.info.status != "FINISHED":
            chosen[trial_id] = run
    table = table.copy()
    table["mlflow_run_id"] = table["trial_id"].map(lambda t: chosen[t].info.run_id if t in chosen else "")
    table["mlflow_status"] = table["trial_id"].map(lambda t: chosen[t].info.status if t in chosen else "")
    table["mlflow_attempts"] = table["trial_id"].map(
        lambda t: sum(1 for r in runs if r.data.tags.get(run_layout.TAG_TUNE_TRIAL_ID) == t))
    # Tune's last result cannot tell a trial pruned by ASHA from one the stopped sweep interrupted; its run can
    stopped = table["trial_id"].map(lambda t: t in chosen and interrupted_run(chosen[t]))
    table.loc[stopped & (table["outcome"] == "pruned"), "outcome"] = "stopped"
    return table


def interrupted_run(run: mlflow.entities.Run, reason: str = INTERRUPTED_PREFIX) -> bool:
    """The run ended KILLED as an interrupted attempt (its ``failure_reason`` begins with
    ``reason``), not pruned by ASHA (a worker's stop reason may overwrite ASHA's)."""
    tags = run.data.tags
    return (run.info.status == "KILLED" and tags.get(run_layout.TAG_FAILURE_REASON, "").startswith(reason)
            and tags.get(run_layout.TAG_SWEEP_OUTCOME) != "pruned")


def log_summary(config: SweepConfig, table: pd.DataFrame, sweep_id: str, uri: str, experiment_id: str,
                experiment_path: str) -> tuple[str, dict | None, pd.DataFrame]:
    """Create (or on resume update) the sweep's summary run; returns ``(run_id, best row, table with run ids)``."""
    client = MlflowClient(tracking_uri=uri)
    if len(table):
        table = _attach_runs(table, client, experiment_id, sweep_id)
    spec = config.sweep
    best = best_trial(table, spec.metric, spec.mode)
    existing = client.search_runs([experiment_id], f"tags.{run_layout.TAG_SWEEP_ID} = '{sweep_id}' and "
                                          f"tags.{run_layout.TAG_SWEEP_SUMMARY} = '{run_layout.TRUE}'")
    if existing:
        run_id = existing[0].info.run_id
    else:
        run_id = client.create_run(experiment_id, run_name=summary_run_name(config.name),
                                   tags={run_layout.TAG_SWEEP_ID: sweep_id, run_layout.TAG_SWEEP_SUMMARY: run_layout.TRUE,
                                         run_layout.TAG_SWEEP_NAME: config.name}).info.run_id
        params = {"sweep.grid": json.dumps(spec.grid.model_dump(exclude_none=True)),
                  "sweep.ranges": json.dumps({k: v.model_dump(exclude_none=True) for k, v in spec.ranges.items()}),
                  "sweep.samples_per_cell": str(spec.samples_per_cell), "sweep.metric": spec.metric,
                  "sweep.mode": spec.mode, "sweep.scheduler": spec.scheduler.kind,
                  "sweep.max_concurrent": str(spec.max_concurrent), "sweep.n_trials": str(len(table))}
        client.log_batch(run_id, params=[mlflow.entities.Param(k, v[:6000]) for k, v in params.items()])
    counts = table["outcome"].value_counts().to_dict() if len(table) else {}
    metrics = {f"n_{kind}": float(counts.get(kind, 0)) for kind in ("complete", "pruned", "failed", "errored",
                                                                       "stopped")}
    if best is not None:
        metrics[f"best_{spec.metric}"] = float(best[spec.metric])
        client.set_tag(run_id, run_layout.TAG_BEST_TRIAL_ID, best["trial_id"])
        client.set_tag(run_id, run_layout.TAG_BEST_RUN_ID, best.get("mlflow_run_id", ""))
        client.set_tag(run_id, run_layout.TAG_BEST_CELL, best["cell"])
    client.set_tag(run_id, run_layout.TAG_TUNE_EXPERIMENT_PATH, experiment_path)
    client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, v, now_ms(), 0) for k, v in metrics.items()])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trials.csv"
        table.to_csv(path, index=False)
        client.log_artifact(run_id, str(path), run_layout.SWEEP_DIR)
        config_path = Path(tmp) / "sweep_config.json"
        config_path.write_text(json.dumps(config.model_dump(mode="json"), indent=1))
        client.log_artifact(run_id, str(config_path), run_layout.SWEEP_DIR)
    client.set_terminated(run_id, status="FINISHED")
    return run_id, best, table
