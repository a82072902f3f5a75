"""Load an experiment (or one sweep of it) from MLflow into tidy pandas tables.

``load_experiment`` returns an :class:`AnalysisData` with

- ``trials``: one row per finished trial — tags (backbone, long_range, split, hashes),
  ``scheme``/``model`` labels (``celli(q)``: trained with reference charges), the knobs the
  diagnostics group by (``seed``, ``layers``, ``channels``, ``cutoff`` in Å, ``loss_charges``
  from the params ``seed``, ``model.layers``, ``model.channels``, ``model.cutoff``,
  ``training.loss.charges``), every final ``{train,val,test}/…`` metric and the dummy baseline's
  test metrics (``baseline_e_mae`` …);
- ``structures``: one row per (trial, test structure) — the logged prediction errors
  (signed energy error per atom in meV/atom, force MAE/RMSE in meV/Å, charge MAE in me),
  parent, size, elements, metals, cluster, nearest-train distance in the joint metric,
  and the baseline's errors on the same structure;
- ``charges``: one row per (trial, test atom, charge head) — predicted and reference
  charges (e), as the trial logged them (``charges/<structure id>.parquet``; run_layout).

A run without predictions is listed in ``skipped`` with the reason instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from ase.data import chemical_symbols
from farfield.analysis import mlflow_queries, run_layout
from farfield.analysis.baseline import baseline_errors, baseline_metrics
from farfield.analysis.dataset_context import DatasetContext, open_dataset
from farfield.analysis.disk_cache import cache_key, cached_table
from farfield.analysis.placement import parent_placement
from farfield.data.splits import SIDES
from farfield.data.splitting import Split
from farfield.models.training.metrics import METRIC_NAMES

__all__ = ["CHARGE_COLUMNS", "CHARGE_TRAINED", "TRIAL_KEYS", "AnalysisData", "charge_rows", "load_experiment",
           "logged_charges", "model_label", "scheme_label", "trial_row"]

#: Columns that identify what a trial is; the structure and charge tables carry them too.
TRIAL_KEYS = ("run_id", "backbone", "long_range", "model", "split", "split_hash", "seed", "layers")
#: Columns of the charge table (after ``TRIAL_KEYS``): charges in e, ``q_ref`` NaN without a reference.
CHARGE_COLUMNS = ("structure_id", "atom", "element", "head", "q_pred", "q_ref")
#: Where a workspace keeps what reports read from finished runs (``analysis.disk_cache``).
REPORT_CACHE = Path("cache") / "report"


@dataclass
class AnalysisData:
    """Tidy tables of an experiment (see the module docstring) and where they came from."""

    tracking_uri: str
    experiment: str
    sweep_id: str | None
    trials: pd.DataFrame
    structures: pd.DataFrame
    charges: pd.DataFrame
    checkpoints: dict[str, Path] = field(default_factory=dict)
    contexts: dict[str, DatasetContext] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


#: Suffix of a scheme trained with reference charges (``training.loss.charges`` > 0).
CHARGE_TRAINED = "(q)"


def scheme_label(long_range: str, loss_charges: float = 0.0) -> str:
    """``none``, ``les``, ``celli`` or ``celli(q)``: the long-range scheme, marked when it was
    trained with reference charges (charge-loss weight ``loss_charges`` > 0, (e)⁻² units)."""
    scheme = long_range or "none"
    return f"{scheme}{CHARGE_TRAINED}" if scheme != "none" and loss_charges > 0 else scheme


def model_label(backbone: str, long_range: str, loss_charges: float = 0.0) -> str:
    """``painn`` for a short-range model, ``painn+celli`` with a long-range scheme,
    ``painn+celli(q)`` when that scheme was trained with reference charges."""
    scheme = scheme_label(long_range, loss_charges)
    return backbone if scheme == "none" else f"{backbone}+{scheme}"


def _number(params: dict[str, str], name: str, default: float = float("nan")) -> float:
    try:
        return float(params[name])
    except (KeyError, ValueError):
        return default


def trial_row(run: mlflow_queries.TrialRun, n_test: int) -> dict:
    """One row of the ``trials`` table from a run's tags, params and final metrics as logged
    (without the baseline metrics, which need the dataset); ``n_test``: test structures."""
    tags, params, layout = run.tags, run.params, run_layout
    long_range = tags.get(layout.TAG_LONG_RANGE, layout.NO_LONG_RANGE)
    loss_charges = _number(params, layout.PARAM_LOSS_CHARGES, 0.0)
    backbone = tags[layout.TAG_BACKBONE]
    row = {
        "run_id": run.run_id, "run_name": run.run_name, "backbone": backbone, "long_range": long_range,
        "scheme": scheme_label(long_range, loss_charges), "model": model_label(backbone, long_range, loss_charges),
        "split": tags.get(layout.TAG_SPLIT, params.get(layout.PARAM_SPLIT_STRATEGY, "?")),
        "split_hash": tags.get(layout.TAG_SPLIT_HASH, ""), "dataset_hash": tags.get(layout.TAG_DATASET_HASH, ""),
        "sweep_id": tags.get(layout.TAG_SWEEP_ID, ""), "seed": int(_number(params, layout.PARAM_SEED, -1)),
        "split_seed": int(_number(params, layout.PARAM_SPLIT_SEED, -1)),
        "layers": int(_number(params, layout.PARAM_LAYERS, -1)),
        "channels": int(_number(params, layout.PARAM_CHANNELS, -1)), "cutoff": _number(params, layout.PARAM_CUTOFF),
        "loss_charges": loss_charges, "n_test": n_test,
        "epochs_run": run.metrics.get(layout.METRIC_EPOCHS_RUN, float("nan")),
    }
    for side in SIDES:
        for name in METRIC_NAMES:
            metric = layout.final_metric(side, name)
            row[metric] = run.metrics.get(metric, float("nan"))
    return row


def _descriptor_cache(workspace: Path, workdir: Path) -> Path:
    cached = workspace / "descriptors"
    return cached if cached.is_dir() else workdir / "descriptors"


def _workspace(params: dict[str, str], fallback: str | Path | None) -> Path:
    """The run's recorded workspace if it exists from here, else ``fallback`` (if given)."""
    recorded = Path(params.get(run_layout.PARAM_WORKSPACE, "workspace"))
    if recorded.is_dir() or fallback is None:
        return recorded
    return Path(fallback)


def load_experiment(tracking_uri: str, experiment: str, workdir: str | Path, sweep_id: str | None = None,
                    dataset: str | Path | None = None, with_charges: bool = True,
                    workspace: str | Path | None = None,
                    progress: Callable[[str], None] = lambda line: None) -> AnalysisData:
    """Read every finished trial of ``experiment`` (of ``sweep_id`` only, if given).

    ``workdir``: where artifacts are downloaded (checkpoints stay there for the MD probe);
    artifacts found on this machine (``run_layout.local_artifact_dir``: the workspace's
    ``mlartifacts/``) are read in place instead. ``progress``: called with one line per trial.
    ``dataset``: a store directory to use instead of each run's ``data.dataset``.
    ``workspace``: used for runs whose recorded workspace does not exist from here (e.g. a
    relative path recorded elsewhere); the bundled dataset and descriptor cache live there,
    and each run's charge table is cached in its ``cache/report/``.
    """
    workdir = Path(workdir)
    runs = mlflow_queries.find_trial_runs(tracking_uri, experiment, sweep_id)
    if not runs:
        where = f"sweep {sweep_id!r} of experiment {experiment!r}" if sweep_id else f"experiment {experiment!r}"
        raise ValueError(f"{where} has no finished trial runs (runs tagged 'backbone' with status FINISHED)")
    data = AnalysisData(tracking_uri, experiment, sweep_id, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    trial_rows, structure_parts, charge_parts = [], [], []
    placements: dict[tuple, pd.DataFrame] = {}
    baselines: dict[tuple, pd.DataFrame] = {}
    for index, run in enumerate(runs, 1):
        progress(f"reading trial {index}/{len(runs)}: {run.run_name}")
        folder = workdir / run.run_id
        run_workspace = _workspace(run.params, workspace)
        local = run_layout.local_artifact_dir(run.artifact_uri, [Path(w) for w in (workspace, run_workspace) if w])
        predictions_path = mlflow_queries.download_artifact(tracking_uri, run.run_id,
                                                            run_layout.PREDICTIONS_ARTIFACT, folder, local)
        split_path = mlflow_queries.download_artifact(tracking_uri, run.run_id, run_layout.SPLIT_ARTIFACT, folder, local)
        if predictions_path is None or split_path is None:
            data.skipped.append((run.run_id, f"no {run_layout.PREDICTIONS_ARTIFACT} or {run_layout.SPLIT_ARTIFACT} "
                                             "artifact"))
            continue
        split = Split(**json.loads(split_path.read_text()))
        context = open_dataset(run.params.get(run_layout.PARAM_DATASET, "bundled"), run_workspace,
                               run.tags.get(run_layout.TAG_DATASET_HASH), dataset)
        data.contexts[run.run_id] = context
        predictions = pd.read_parquet(predictions_path)
        max_structures = int(_number(run.params, run_layout.PARAM_MAX_STRUCTURES, 0)) or None
        key = (context.content_hash, split.content_hash, max_structures)
        if key not in placements:
            placements[key] = parent_placement(context, split, run.params, _descriptor_cache(run_workspace, workdir),
                                               max_structures)
            baselines[key] = baseline_errors(context, split, predictions["structure_id"].tolist(), max_structures)
        table = _structure_table(predictions, context, placements[key], baselines[key])
        row = trial_row(run, len(table))
        row.update(baseline_metrics(baselines[key].set_index("structure_id").loc[table["structure_id"]].reset_index()))
        trial_rows.append(row)
        for name in TRIAL_KEYS:
            table.insert(TRIAL_KEYS.index(name), name, row[name])
        structure_parts.append(table)
        checkpoint = mlflow_queries.download_artifact(tracking_uri, run.run_id, run_layout.CHECKPOINT_ARTIFACT,
                                                      folder, local)
        if checkpoint is not None:
            data.checkpoints[run.run_id] = checkpoint
        if with_charges and row["long_range"] != run_layout.NO_LONG_RANGE:
            charges = _logged_charges(tracking_uri, run.run_id, table["structure_id"].tolist(), folder, local,
                                      Path(workspace) / REPORT_CACHE if workspace is not None else None)
            for name in reversed(TRIAL_KEYS):
                charges.insert(0, name, row[name])
            charge_parts.append(charges)
    data.trials = pd.DataFrame(trial_rows)
    data.structures = pd.concat(structure_parts, ignore_index=True) if structure_parts else pd.DataFrame()
    nonempty = [part for part in charge_parts if len(part)]
    data.charges = (pd.concat(nonempty, ignore_index=True) if nonempty
                    else pd.DataFrame(columns=[*TRIAL_KEYS, *CHARGE_COLUMNS]))
    if data.trials.empty:
        raise ValueError(f"no usable trial in experiment {experiment!r}: " +
                         "; ".join(f"{rid}: {why}" for rid, why in data.skipped))
    return data


def charge_rows(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The charge table (``CHARGE_COLUMNS``) of logged charge tables ``{structure_id: table}``
    (columns ``run_layout.LOGGED_CHARGE_COLUMNS``, as ``farfield.models.heads.report`` makes
    them), in the order given; empty (with these columns) for none."""
    parts = [pd.DataFrame({"structure_id": structure_id, "atom": table["atom"].to_numpy(),
                           "element": np.asarray(chemical_symbols, dtype=object)[table["number"].to_numpy(int)],
                           "head": table["head"].to_numpy(), "q_pred": table["charge"].to_numpy(np.float64),
                           "q_ref": table["reference_charge"].to_numpy(np.float64)})
             for structure_id, table in tables.items() if len(table)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(CHARGE_COLUMNS))


def logged_charges(path: str | Path, structure_ids: list[str]) -> pd.DataFrame:
    """The charge table of a run's logged charges for ``structure_ids``, in their order (farfield's
    heads and external models with latent charges log alike): ``path`` is its
    ``predictions/test_charges.parquet`` or, for runs logged before that, its ``charges/`` folder
    (one file per structure). Structures without charges are left out."""
    path = Path(path)
    if path.is_file():
        groups = dict(tuple(pd.read_parquet(path).groupby("structure_id", sort=False)))
        return charge_rows({sid: groups[sid] for sid in structure_ids if sid in groups})
    paths = {sid: path / run_layout.charge_file_name(sid) for sid in structure_ids}
    return charge_rows({sid: pd.read_parquet(file) for sid, file in paths.items() if file.is_file()})


def _logged_charges(tracking_uri: str, run_id: str, structure_ids: list[str], folder: Path,
                    local: Path | None = None, cache: Path | None = None) -> pd.DataFrame:
    """The charges ``run_id`` logged for ``structure_ids`` (a run without charge heads logged none);
    with ``cache`` (a folder) kept there as one table per run and structure list: a finished
    run's charges never change, and reading a run of the earlier layout (one file per
    structure) is the slow part of a report."""
    def read() -> pd.DataFrame:
        logged = (mlflow_queries.download_artifact(tracking_uri, run_id, run_layout.CHARGES_ARTIFACT, folder, local)
                  or mlflow_queries.download_artifact(tracking_uri, run_id, run_layout.CHARGES_DIR, folder, local))
        return logged_charges(logged, structure_ids) if logged is not None else \
            pd.DataFrame(columns=list(CHARGE_COLUMNS))

    path = None if cache is None else cache / f"charges-{run_id}-{cache_key(structure_ids)}.parquet"
    return cached_table(path, read)


def _structure_table(predictions: pd.DataFrame, context: DatasetContext, placement: pd.DataFrame,
                     baseline: pd.DataFrame) -> pd.DataFrame:
    """Predictions + elements/metals + cluster/distance of the parent + baseline errors."""
    table = predictions.copy()
    if "q_mae_me" not in table:
        table["q_mae_me"] = float("nan")
    table = table.merge(context.facts(), on="structure_id", how="left")
    table = table.merge(placement[["parent_id", "cluster", "nearest_train_distance", "nearest_train_parent"]],
                        on="parent_id", how="left")
    table = table.merge(baseline.drop(columns=["n_atoms"]), on="structure_id", how="left")
    table["e_abs_error_mev"] = table["e_error_per_atom_mev"].abs()
    return table
