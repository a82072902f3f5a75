"""One external trial: the split to extxyz, the library's own trainer in its own environment,
then the same MLflow run as a farfield trial.

Called by ``farfield.orchestrator.trial.run_trial`` for ``model.backbone: external``. The
run gets what a farfield trial logs — params, the resolved config, the split, per-epoch
``curve/...`` (parsed from the trainer's own log, after training), final
``{train,val,test}/{e_mae,e_rmse,f_mae,f_rmse,q_mae}`` computed by farfield's metrics from
the library calculator's predictions, ``key/...``, ``n_parameters``, ``best_epoch``,
``epochs_run``, ``predictions/test_predictions.parquet``, latent charges as
``charges/<structure_id>.parquet`` with ``test/q_std``... (MACELES) — and, as its checkpoint,
the library's own model file under ``checkpoint/``. Also under ``external/``: the trainer's
arguments (``trainer_spec.json``), Ray's ``runtime_env.json`` and the trainer's log.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout
from farfield.data.splits import SIDES
from farfield.models.graph import collate
from farfield.models.heads.report import HeadSummary
from farfield.models.training import METRIC_NAMES
from farfield.models.training.metrics import ErrorAccumulator
from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.external.commands import MODEL_NAME, mace_options, nequip_config, render_arguments
from farfield.orchestrator.external.environment import run_script, runtime_env
from farfield.orchestrator.external.handoff import write_sides
from farfield.orchestrator.trial_logging import (
    TrialResult,
    epoch_reporter,
    log_final_metrics,
    log_head_report,
    log_test_predictions,
    log_trial_inputs,
)
from farfield.orchestrator.trial_pipeline import fit_reference, trial_graphs, with_parent_ids

#: The script that runs inside the trainer's environment.
WORKER = Path(__file__).resolve().parent / "worker.py"
#: Name of the LES head in the charge tables and metrics (as farfield's own LES head).
LATENT_HEAD = "les"


def trainer_spec(config: TrialConfig, files: dict[str, Path], workdir: Path, elements: list[str]) -> dict:
    """What ``worker.py`` reads: trainer, its arguments or YAML, the side files, where to write.
    ``elements``: chemical symbols of the dataset (the model's element table)."""
    external = config.model.external
    spec = {"trainer": external.trainer, "workdir": str(workdir / "trainer"), "out": str(workdir),
            "files": {side: str(path) for side, path in files.items()}, "dtype": config.model.dtype,
            "device": config.resources.device,
            "threads": config.resources.torch_threads or max(1, int(config.resources.num_cpus))}
    if external.trainer in ("mace", "maceles"):
        spec["arguments"] = render_arguments(mace_options(config, files, workdir / "trainer", elements))
        spec["model_name"] = MODEL_NAME
    else:
        spec["config"] = nequip_config(config, files, workdir / "trainer", elements)
    return spec


def _gpu_environment() -> dict[str, str]:
    """``CUDA_VISIBLE_DEVICES`` of this trial's GPUs for the script (its task asks for none)."""
    import ray

    ids = ray.get_gpu_ids() if ray.is_initialized() else []
    if ids:
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in ids)}
    return {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES",) if k in os.environ}


def evaluate_predictions(graphs: list, predictions: dict[str, np.ndarray], batch_size: int = 16):
    """farfield's metrics (``ErrorAccumulator``) of external ``predictions`` (``worker.py``'s
    npz arrays) on the side's ``graphs``; returns (metrics, per-structure table)."""
    offsets = np.concatenate([[0], np.cumsum(predictions["n_atoms"])])
    row = {sid: k for k, sid in enumerate(predictions["structure_id"].tolist())}
    errors = ErrorAccumulator()
    for start in range(0, len(graphs), batch_size):
        batch = collate(list(graphs[start : start + batch_size]))
        rows = [row[sid] for sid in batch.structure_ids]
        forces = np.concatenate([predictions["forces"][offsets[k] : offsets[k + 1]] for k in rows])
        prediction = {"energy": torch.as_tensor(predictions["energy"][rows], dtype=torch.float64),
                      "forces": torch.as_tensor(forces, dtype=torch.float64)}
        errors.add(prediction, batch)
    return errors.metrics(), errors.table()


def latent_charge_report(graphs: list, predictions: dict[str, np.ndarray]):
    """The ``HeadReport`` of an external model's latent charges (MACELES): charge tables per
    structure and ``q_std_les``, ``lr_energy_share_les``, ... as farfield's LES head reports."""
    summary = HeadSummary()
    offsets = np.concatenate([[0], np.cumsum(predictions["n_atoms"])])
    row = {sid: k for k, sid in enumerate(predictions["structure_id"].tolist())}
    for graph in graphs:
        sid = graph.structure_ids[0]
        k = row[sid]
        charges = predictions["charges"][offsets[k] : offsets[k + 1]]
        summary.add(sid, graph.numbers.numpy(), graph.charges.double().numpy(),
                    {LATENT_HEAD: float(predictions["head_energy"][k])}, float(predictions["short_energy"][k]),
                    {LATENT_HEAD: charges})
    return summary.summary()


def train_and_log_external(config: TrialConfig, client: MlflowClient, run_id: str, progress: bool,
                           reporters: list) -> TrialResult:
    """Train ``config.model.external`` on the trial's split and log it like a farfield trial."""
    store, _split, ids = log_trial_inputs(config, client, run_id)
    if not ids["val"]:
        raise ValueError("an external trainer needs a validation side (its own early stopping and model "
                         "selection); the split has none: give split.val > 0")
    external = config.model.external
    workdir = Path(config.workspace).resolve() / "external" / "runs" / run_id
    files = write_sides(store, ids, workdir / "data")
    elements = sorted(store.manifest.get("elements") or _elements(store, ids))
    spec = trainer_spec(config, files, workdir, elements)
    (workdir / "spec.json").write_text(json.dumps(spec, indent=1))
    env = runtime_env(external, config.workspace)
    client.log_dict(run_id, spec, f"{run_layout.EXTERNAL_DIR}/trainer_spec.json")
    client.log_dict(run_id, env, f"{run_layout.EXTERNAL_DIR}/runtime_env.json")
    client.set_tag(run_id, run_layout.TAG_EXTERNAL_TRAINER, f"{external.trainer} ({' '.join(env_packages(env))})")

    run = run_script(env, WORKER, [str(workdir / "spec.json")], workdir / "trainer.log", _gpu_environment())
    client.log_artifact(run_id, str(workdir / "trainer.log"), run_layout.EXTERNAL_DIR)
    if run.returncode != 0:
        raise RuntimeError(f"the {external.trainer} trainer failed (exit {run.returncode}, environment "
                           f"{run.python}; full log in {workdir / 'trainer.log'}):\n{run.log_tail}")
    result = json.loads((workdir / "result.json").read_text())
    client.set_tag(run_id, run_layout.TAG_DEVICE, result["device"])
    client.set_tag(run_id, run_layout.TAG_EXTERNAL_VERSIONS, json.dumps(result["versions"], sort_keys=True))
    client.log_metric(run_id, run_layout.METRIC_N_PARAMETERS, result["n_parameters"])
    reporter = epoch_reporter(client, run_id, reporters)
    for row in result["curves"]:
        reporter.on_epoch(row["epoch"], row)
    scored = [row for row in result["curves"] if "val_loss" in row]
    best_epoch = min(scored, key=lambda row: row["val_loss"])["epoch"] if scored else -1

    graphs = trial_graphs(config, store, ids, torch.float64, progress=progress)
    client.set_tag(run_id, run_layout.TAG_EXTERNAL_TRAIN_SECONDS, f"{result['train_seconds']:.1f}")
    metrics: dict[str, float] = {run_layout.METRIC_BEST_EPOCH: best_epoch,
                                 run_layout.METRIC_EPOCHS_RUN: len(result["curves"])}
    with tempfile.TemporaryDirectory() as tmp:
        for side in SIDES:
            if not graphs[side]:
                continue
            predictions = dict(np.load(workdir / f"predictions-{side}.npz"))
            side_metrics, table = evaluate_predictions(graphs[side], predictions)
            metrics.update({run_layout.final_metric(side, name): side_metrics[name] for name in METRIC_NAMES})
            if side == "test":
                log_test_predictions(client, run_id, with_parent_ids(table, store), Path(tmp))
                if "charges" in predictions:
                    metrics.update(log_head_report(client, run_id, latent_charge_report(graphs[side], predictions),
                                                   Path(tmp)))
    client.log_artifact(run_id, result["model_file"], run_layout.CHECKPOINT_DIR)
    metrics = log_final_metrics(client, run_id, metrics, fit_reference(graphs["train"]), graphs["test"])
    shutil.rmtree(workdir, ignore_errors=True)  # everything worth keeping is in the run
    return TrialResult(run_id, "", "", metrics, best_epoch, len(result["curves"]))


def env_packages(env: dict) -> list[str]:
    """The pinned requirements of a ``runtime_env`` (pip or uv)."""
    return list((env.get("pip") or env.get("uv") or {}).get("packages", []))


def _elements(store, ids: dict[str, list[str]]) -> list[str]:
    from ase.data import chemical_symbols

    frames = store.read([sid for side in ids.values() for sid in side])
    return sorted({chemical_symbols[z] for atoms in frames for z in atoms.numbers})
