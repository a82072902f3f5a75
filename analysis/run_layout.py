"""The MLflow run layout: what a trial's run holds and under which names.

One module for both sides of the contract: the writer (``orchestrator/trial.py``, the sweep
modules) logs under these names and the reader (``analysis/loading.py``,
``analysis/mlflow_queries.py``) looks them up here, so a renamed artifact or tag cannot leave
the other side behind. It lives in ``analysis`` because the orchestrator may import the
analysis and never the reverse (docs/architecture.md). Plain constants; no MLflow import.

A trial run (one per trial, DESIGN.md "MLflow run"):

- **tags**: ``backbone`` (marks a run as a trial run), ``long_range`` (``les,celli`` or
  ``none``), ``split`` (strategy), ``trial_name``, ``git_commit``, ``dataset_hash``,
  ``split_hash``, ``device``; ``failure_reason`` when it failed; an external model's
  ``external_trainer``, ``external_versions``, ``external_train_seconds``; in a sweep also
  ``sweep_id``, ``sweep_name``, ``tune_trial_id``, ``grid_cell``, ``sampled``, ``sampled_json``,
  ``sweep_slot``, ``ray_node_id`` and, once Tune has judged it, ``sweep_outcome``.
- **params**: the flattened ``TrialConfig``, one per field, named by its dotted path
  (``model.layers``, ``training.loss.charges``).
- **metrics**: ``{train,val,test}/{e_mae,e_rmse,f_mae,f_rmse,q_mae}`` (meV/atom, meV/Å, me),
  ``best_epoch``, ``epochs_run``, ``n_parameters``, the heads' ``test/q_std…`` and
  ``test/lr_energy_share…``, ``key/…`` (the numbers to sort by) and per-epoch ``curve/…``.
- **artifacts**: ``config/trial_config.json``, ``split/split.json``,
  ``predictions/test_predictions.parquet`` (one row per test structure),
  ``predictions/test_charges.parquet`` (models with charge heads: one row per atom of every
  test structure, columns ``structure_id`` and :data:`LOGGED_CHARGE_COLUMNS`; runs logged
  before 2026-11-30 have ``charges/<structure id>.parquet`` instead, one file per test
  structure, which readers still take) and ``checkpoint/model.pt`` (an external model: its
  library's model file, and ``external/`` with the trainer's spec, environment and log).

A sweep's summary run carries ``sweep_summary = "true"``, ``sweep_id`` and ``sweep_name``;
a report attached to an experiment without a sweep goes to a run tagged
``farfield_report = "true"``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

# ---------------------------------------------------------------- tags of a trial run
TAG_BACKBONE = "backbone"
TAG_LONG_RANGE = "long_range"
TAG_SPLIT = "split"
TAG_TRIAL_NAME = "trial_name"
TAG_GIT_COMMIT = "git_commit"
TAG_DATASET_HASH = "dataset_hash"
TAG_SPLIT_HASH = "split_hash"
TAG_DEVICE = "device"
TAG_FAILURE_REASON = "failure_reason"
#: The epoch an interrupted trial's training continued from (its state file; absent: from the start).
TAG_RESUMED_AT_EPOCH = "resumed_at_epoch"
#: A resumed trial's training, one JSON record per stretch of epochs trained by one process:
#: ``[{"from_epoch": 0, "git_commit": ...}, {"from_epoch": 11, "git_commit": ...}]`` (a stretch
#: from a state saved before 2026-11-30 has no commit). Differing commits: the model code may
#: have changed mid-training, and the result may differ from a run of either commit alone.
TAG_TRAINING_SEGMENTS = "training_segments"
#: An external trial's (``model.backbone: external``): the trainer and its pinned packages, the
#: library versions it ran with, and its own training wall time (s).
TAG_EXTERNAL_TRAINER = "external_trainer"
TAG_EXTERNAL_VERSIONS = "external_versions"
TAG_EXTERNAL_TRAIN_SECONDS = "external_train_seconds"
#: Value of ``long_range`` for a short-range model.
NO_LONG_RANGE = "none"

# ---------------------------------------------------------------- sweep and report tags
TAG_SWEEP_ID = "sweep_id"
TAG_SWEEP_NAME = "sweep_name"
TAG_SWEEP_SUMMARY = "sweep_summary"
TAG_REPORT = "farfield_report"
TAG_TUNE_TRIAL_ID = "tune_trial_id"
TAG_LOST_TUNE_TRIAL_ID = "lost_tune_trial_id"
TAG_SWEEP_SLOT = "sweep_slot"
TAG_GRID_CELL = "grid_cell"
TAG_SAMPLED = "sampled"
TAG_SAMPLED_JSON = "sampled_json"
TAG_RAY_NODE_ID = "ray_node_id"
TAG_SWEEP_OUTCOME = "sweep_outcome"
TAG_BEST_TRIAL_ID = "best_trial_id"
TAG_BEST_RUN_ID = "best_run_id"
TAG_BEST_CELL = "best_cell"
TAG_TUNE_EXPERIMENT_PATH = "tune_experiment_path"
#: Value of the boolean tags (``sweep_summary``, ``farfield_report``).
TRUE = "true"

# ---------------------------------------------------------------- params (dotted TrialConfig paths)
PARAM_SEED = "seed"
PARAM_WORKSPACE = "workspace"
PARAM_DATASET = "data.dataset"
PARAM_MAX_STRUCTURES = "data.max_structures"
PARAM_SPLIT_STRATEGY = "split.strategy"
PARAM_SPLIT_SEED = "split.seed"
PARAM_LAYERS = "model.layers"
PARAM_CHANNELS = "model.channels"
PARAM_CUTOFF = "model.cutoff"
PARAM_LOSS_CHARGES = "training.loss.charges"


def split_param(field: str) -> str:
    """The param of the split config's ``field`` (``split.metric``, ``split.min_cluster_size``)."""
    return f"split.{field}"


# ---------------------------------------------------------------- metrics
METRIC_BEST_EPOCH = "best_epoch"
METRIC_EPOCHS_RUN = "epochs_run"
METRIC_N_PARAMETERS = "n_parameters"
#: ``key/test_f_mae``: the numbers to compare trials by, sorted together in the UI.
KEY_PREFIX = "key/"
#: ``curve/train_loss``: a per-epoch number as a curve (step = epoch).
CURVE_PREFIX = "curve/"


def final_metric(side: str, name: str) -> str:
    """``test/f_mae``: the final metric ``name`` (``METRIC_NAMES``, or a head's) on ``side``."""
    return f"{side}/{name}"


# ---------------------------------------------------------------- artifacts
CONFIG_ARTIFACT = "config/trial_config.json"
SPLIT_ARTIFACT = "split/split.json"
PREDICTIONS_DIR = "predictions"
PREDICTIONS_FILE = "test_predictions.parquet"
PREDICTIONS_ARTIFACT = f"{PREDICTIONS_DIR}/{PREDICTIONS_FILE}"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "model.pt"
CHECKPOINT_ARTIFACT = f"{CHECKPOINT_DIR}/{CHECKPOINT_FILE}"
#: The learned charges of every test atom, one table (see the module docstring).
CHARGES_FILE = "test_charges.parquet"
CHARGES_ARTIFACT = f"{PREDICTIONS_DIR}/{CHARGES_FILE}"
#: The earlier layout of the learned charges, one file per test structure (still read).
CHARGES_DIR = "charges"
#: An external trial's trainer spec, runtime environment and trainer log; its checkpoint is the
#: library's own model file under ``checkpoint/``.
EXTERNAL_DIR = "external"
#: Columns of a logged charge table (``farfield.models.heads.report.HeadReport.charges``):
#: atom index, atomic number, head name, the head's charge (e), the reference charge (e, NaN
#: where the structure has none).
LOGGED_CHARGE_COLUMNS = ("atom", "number", "head", "charge", "reference_charge")
#: Folder of the sweep summary run's tables and config; of a report.
SWEEP_DIR = "sweep"
REPORT_DIR = "report"
#: ``<workspace>/mlartifacts``: where a workspace's artifacts are stored — by its MLflow server
#: for proxied artifacts (``mlflow-artifacts:/<path>`` is ``<workspace>/mlartifacts/<path>``),
#: directly for a ``sqlite:`` store without a server.
WORKSPACE_ARTIFACTS = "mlartifacts"
#: Scheme of artifact URIs proxied through an MLflow server.
PROXIED_SCHEME = "mlflow-artifacts:"


def local_artifact_dir(artifact_uri: str, workspaces: list[Path]) -> Path | None:
    """The folder on this machine that holds a run's artifacts, or None: ``file:`` URIs (and
    plain paths) as they are; a proxied ``mlflow-artifacts:/<path>`` under the first of
    ``workspaces`` whose ``mlartifacts/<path>`` exists (run ids are unique, so a folder found
    there is the run's). Readers take artifacts from it in place instead of downloading each
    file through the server."""
    if artifact_uri.startswith(PROXIED_SCHEME):
        relative = unquote(urlparse(artifact_uri).path).lstrip("/")
        found = (Path(w) / WORKSPACE_ARTIFACTS / relative for w in workspaces)
        return next((folder for folder in found if relative and folder.is_dir()), None)
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        folder = Path(unquote(parsed.path))
    elif parsed.scheme == "" and artifact_uri:
        folder = Path(artifact_uri)
    else:
        return None
    return folder if folder.is_dir() else None


def charge_file_name(structure_id: str) -> str:
    """The file name of ``structure_id``'s charge table in the earlier ``charges/`` layout:
    characters other than letters, digits and ``-_.`` become ``_`` (``mof/1:a`` → ``mof_1_a.parquet``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in structure_id)
    return f"{safe}.parquet"


