"""Run a sweep with Ray Tune + Optuna, tracked on an MLflow server; resume an interrupted one.

``run_sweep(config)`` on the driver:

1. connects to Ray (``address``/``RAY_ADDRESS``, else an in-process local Ray);
2. picks the tracking server: ``tracking.uri`` if set, else ``MLFLOW_TRACKING_URI``,
   else a managed light server for the workspace (a live one is reused) — never
   several processes writing one SQLite file; creates the experiment once, here;
3. prepares the shared inputs once (dataset store, one split file per grid cell), so
   trials only read them;
4. runs ``tune.Tuner`` with ``GridCrossedTPE`` (grid cells × TPE), optional ASHA,
   a concurrency limit, per-trial CPUs/GPUs, retries, and per-epoch checkpoints;
   or ``Tuner.restore`` for ``resume=True`` (finished trials are kept, unfinished and
   errored ones run again; see ``reconcile_resumed`` for how MLflow is brought in line
   with Tune's last experiment snapshot first);
5. logs a summary run (best trial, the table of all trials as an artifact); a sweep stopped
   before its end (Ctrl-C) ends its unfinished trials' runs KILLED first.

The Tune experiment lives in ``<storage_path>/<name>`` next to ``farfield_sweep.json``
(sweep id, resolved config, tracking URI) which ``--resume NAME`` reads.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from farfield.analysis import run_layout
from farfield.data.datasets import resolve_dataset
from farfield.data.ray_runtime import start_ray
from farfield.data.splitting import split_path
from farfield.orchestrator.config import TrackingConfig, TrialConfig, _merge
from farfield.orchestrator.launch import absolute_paths
from farfield.orchestrator.mlflow_server import ManagedServer, ensure_server
from farfield.orchestrator.sweep import archive as archives
from farfield.orchestrator.sweep.config import SweepConfig, grid_cells, load_sweep_config, range_kind, trial_data
from farfield.orchestrator.sweep.grid_search import REISSUE, RESTORED, GridCrossedTPE
from farfield.orchestrator.sweep.progress import ACTIVE, SweepProgress
from farfield.orchestrator.sweep.summary import interrupted_run, log_summary, trial_table
from farfield.orchestrator.sweep.tune_reporter import (REPORT_INDEX, TRIAL_STATE_DIR, close_open_runs, sweep_runs,
                                                       sweep_trainable)
from farfield.orchestrator.tracking import ensure_experiment
from farfield.orchestrator.trial import INTERRUPTED_PREFIX, STOPPED_REASON
from farfield.orchestrator.trial_pipeline import make_split, prepare_graph_cache

META_FILE = "farfield_sweep.json"
INTERRUPTED = f"{INTERRUPTED_PREFIX}: the sweep driver was lost; the trial runs again on --resume"
STOPPED = f"{INTERRUPTED_PREFIX}: the sweep was stopped before the trial finished; the trial runs again on --resume"
#: Where the sweep modules lived before they moved into this package: a Tune experiment saved
#: then pickled its searcher, callbacks and trainable under these names (``Tuner.restore``).
MOVED_MODULES = {
    "farfield.orchestrator.grid_search": "farfield.orchestrator.sweep.grid_search",
    "farfield.orchestrator.tune_reporter": "farfield.orchestrator.sweep.tune_reporter",
    "farfield.orchestrator.sweep_config": "farfield.orchestrator.sweep.config",
    "farfield.orchestrator.sweep_progress": "farfield.orchestrator.sweep.progress",
    "farfield.orchestrator.sweep_summary": "farfield.orchestrator.sweep.summary",
}


def resolve_moved_modules() -> None:
    """Make the old module names (``MOVED_MODULES``) resolve to the new modules in this process, so a
    sweep started before the move can be resumed (its pickled objects name the old modules)."""
    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))


@dataclass
class SweepResult:
    """A finished (or resumed-to-finish) sweep."""

    sweep_id: str
    name: str
    experiment_path: str
    tracking_uri: str
    experiment_id: str
    summary_run_id: str
    best: dict | None
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    wall_s: float = 0.0


def experiment_path(config: SweepConfig) -> str:
    return f"{config.storage_path().rstrip('/')}/{config.name}"


def _resolve_tracking(config: SweepConfig) -> tuple[str, ManagedServer | None]:
    """The sweep's tracking URI (a server), and the server if this call started it."""
    for source, uri in (("tracking.uri", config.tracking.uri), ("MLFLOW_TRACKING_URI",
                                                                 os.environ.get("MLFLOW_TRACKING_URI"))):
        if not uri:
            continue
        if not uri.startswith(("http://", "https://", "databricks")):
            raise ValueError(
                f"{source} = {uri!r}: a sweep's trials log concurrently, so they need a tracking server "
                f"(http://...), not a file or SQLite store; leave tracking.uri empty to get a managed server "
                f"on the workspace, or start one with `farfield mlflow-server`"
            )
        return uri, None
    return ensure_server(Path(config.workspace), host=_server_host())


def _server_host() -> str:
    """127.0.0.1, or this node's cluster address when trials may run on other nodes."""
    import ray

    alive = [node for node in ray.nodes() if node.get("Alive")]
    return ray.util.get_node_ip_address() if len(alive) > 1 else "127.0.0.1"


def _shared_inputs(config: SweepConfig, cells: list[dict], recorded: dict[str, str] | None = None) -> dict:
    """Dataset store path and one split file per cell, made once on the driver (equal splits once),
    and the per-shard graph cache of every trial's cutoff, computed by Ray tasks. ``recorded``:
    split config (JSON) → the file an earlier start of this sweep made for it; a file still there
    is taken as it is (a resumed sweep trains on the splits its finished trials had)."""
    store = resolve_dataset(config.data.dataset, config.workspace)
    made: dict[str, str] = {}
    split_files = []
    trials = [TrialConfig.model_validate(trial_data(config, cell, {})) for cell in cells]
    keys = [json.dumps(trial.split.model_dump(mode="json"), sort_keys=True) for trial in trials]
    n_splits = len(set(keys))
    for trial, key in zip(trials, keys):
        if key not in made and (recorded or {}).get(key) and Path(recorded[key]).is_file():
            made[key] = recorded[key]
            print(f"split {len(made)}/{n_splits}: {trial.split.strategy} seed {trial.split.seed} "
                  f"(as recorded) -> {Path(made[key]).name}", flush=True)
        if key not in made:
            started = time.monotonic()
            split = make_split(trial, store)
            path = split_path(Path(config.workspace).resolve(), split)
            if not path.is_file():
                split.save(path)
            made[key] = str(path)
            print(f"split {len(made)}/{n_splits}: {split.strategy} seed {trial.split.seed} "
                  f"({time.monotonic() - started:.0f} s) -> {path.name}", flush=True)
        split_files.append(made[key])
    if "model.cutoff" not in config.sweep.ranges:  # one cutoff for all trials: graphs now, on Ray
        print("graph cache: neighbour lists of every structure (once per dataset and cutoff)", flush=True)
        try:
            prepare_graph_cache(TrialConfig.model_validate(trial_data(config, cells[0], {})))
        except (OSError, ValueError) as err:  # trials then build their graphs themselves
            print(f"graph cache not prepared ({err}); trials will build their graphs")
    return {"dataset": str(Path(store.path).resolve()), "split_files": split_files, "splits": made}


def _scheduler(config: SweepConfig):
    spec = config.sweep.scheduler
    if spec.kind == "none":
        return None
    # The final report (selected weights, trial_complete) comes one report after the last
    # epoch, so the budget is epochs + 1 reports; ASHA must not stop it at `epochs`. Counted by
    # REPORT_INDEX, not Tune's training_iteration: a resumed trial reports its earlier epochs again.
    return ASHAScheduler(time_attr=REPORT_INDEX, max_t=config.training.epochs + 1,
                         grace_period=spec.grace_period, reduction_factor=spec.reduction_factor)


def _trainable(config: SweepConfig, meta: dict):
    resources = {"cpu": config.resources.num_cpus, "gpu": config.resources.num_gpus}
    return tune.with_resources(
        tune.with_parameters(sweep_trainable, sweep=config.model_dump(mode="json"), meta=meta), resources
    )


def run_sweep(config: SweepConfig, address: str | None = None, resume: bool = False,
              progress_every_s: float = 15.0, verbose: bool = False, archive: str | Path | None = None) -> SweepResult:
    """Run (or with ``resume`` continue) the sweep ``config``; see the module docstring.

    The console shows farfield's progress (``SweepProgress``); ``verbose`` also lets through
    Ray's per-checkpoint log lines of every trial (one per epoch). ``archive``: a folder kept
    current with the sweep's finished runs and training states (``archive.export_runs``, after
    every trial and at the end); ``resume`` where this machine has no Tune experiment of the
    sweep but the archive holds it continues from the archive: its runs are imported into the
    tracking server, its states put back, and the trials without a finished run train."""
    t0 = time.time()
    given = config.model_dump(mode="json")  # as written (relative paths): what an archive carries
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if not verbose:  # Tune's new console output prints its banner and paths even at verbose=0
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    config = SweepConfig.model_validate(absolute_paths(config).model_dump())
    path = experiment_path(config)
    meta_path = Path(path) / META_FILE if "://" not in path else None
    archived = archives.read_sweep(archive) if archive is not None else None
    from_archive = False
    if resume and (meta_path is None or not meta_path.is_file()):
        if archived is None:
            raise FileNotFoundError(f"no sweep to resume at {path} ({META_FILE} missing)"
                                    + (f" and no archive in {archive}" if archive is not None else ""))
        if archived.name != config.name:
            raise ValueError(f"{archive} archives the sweep {archived.name!r}, not {config.name!r}")
        sweep_id, from_archive = archived.sweep_id, True
    elif resume:
        sweep_id = json.loads(meta_path.read_text())["sweep_id"]
    else:
        if meta_path is not None and meta_path.exists():
            raise ValueError(f"sweep {config.name!r} already exists at {path}; resume it with "
                             f"`farfield sweep --resume {config.name}` or choose another name")
        if archived is not None:
            raise ValueError(f"{archive} holds the sweep {archived.sweep_id} "
                             f"({len(archives.archived_run_ids(archive))} finished trials); continue it with "
                             f"--resume {archived.name}, or choose another output folder")
        sweep_id = f"{config.name}-{uuid.uuid4().hex[:8]}"
    start_ray(address)
    uri, server = _resolve_tracking(config)
    try:
        tracking = TrackingConfig(uri=uri, experiment=config.tracking.experiment)
        experiment_id = ensure_experiment(tracking, config.workspace)
        cells = grid_cells(config)
        recorded = json.loads(meta_path.read_text()).get("splits") if resume and not from_archive else None
        shared = _shared_inputs(config, cells, recorded)
        splits = shared.pop("splits")
        meta = {**shared, "tracking_uri": uri, "experiment_id": experiment_id,
                "sweep_id": sweep_id, "verbose": verbose}
        state_dir = Path(path) / TRIAL_STATE_DIR if meta_path is not None else None
        if from_archive:
            imported, states = archives.import_runs(archive, uri, experiment_id, state_dir,
                                                    progress=lambda line: print(line, flush=True))
            print(f"continuing sweep {sweep_id} from {archive}: {len(imported)} finished trial run(s) imported, "
                  f"{states} training state(s) restored", flush=True)
        if meta_path is not None:  # a new sweep's record; a resumed one's gets its split files
            record = (json.loads(meta_path.read_text()) if resume and not from_archive else
                      {"sweep_id": sweep_id, "tracking_uri": uri, "config": config.model_dump(mode="json")})
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            meta_path.write_text(json.dumps({**record, "splits": splits}, indent=1))
        ACTIVE[sweep_id] = {"tracking_uri": uri, "experiment_id": experiment_id, "config": config}
        if archive is not None:
            archives.write_sweep(archive, archives.ArchivedSweep(sweep_id, config.name, config.tracking.experiment,
                                                                 archived.config if archived else given))
            ACTIVE[sweep_id]["archive"] = archives.Archiver(Path(archive), uri, experiment_id, sweep_id, state_dir,
                                                            [Path(config.workspace)], echo=SweepProgress.echo)
        total = len(cells) * config.sweep.samples_per_cell
        if resume and not from_archive:
            REISSUE[sweep_id] = reconcile_resumed(MlflowClient(uri), experiment_id, sweep_id)
            RESTORED[sweep_id] = restored_trials(path)
            resolve_moved_modules()
            tuner = tune.Tuner.restore(path, trainable=_trainable(config, meta), resume_errored=True)
        else:
            tuner = _new_tuner(config, cells, meta, sweep_id, total, progress_every_s)
        try:
            with _sigterm_as_sigint():
                grid = tuner.fit()
        finally:  # interrupted too: what did not finish ends KILLED, what finished is archived
            _end_stopped_runs(uri, experiment_id, sweep_id, config.name, since=t0)
            if archive is not None:
                ACTIVE[sweep_id]["archive"].trial_ended()
        table = trial_table(grid, config.sweep.metric, cells)
        summary_id, best, table = log_summary(config, table, sweep_id, uri, experiment_id, grid.experiment_path)
        return SweepResult(sweep_id, config.name, grid.experiment_path, uri, experiment_id, summary_id, best,
                           table, time.time() - t0)
    finally:
        ACTIVE.pop(sweep_id, None)
        REISSUE.pop(sweep_id, None)
        RESTORED.pop(sweep_id, None)
        if server is not None:
            server.stop()


@contextlib.contextmanager
def _sigterm_as_sigint():
    """While Tune runs: SIGTERM (``kill``, a batch scheduler's warning) stops the sweep as Ctrl-C
    does — Tune stops the trials and saves its experiment, the driver ends their runs and
    archives — instead of killing the driver outright. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _end_stopped_runs(uri: str, experiment_id: str, sweep_id: str, name: str, since: float = 0.0) -> None:
    """After ``Tuner.fit`` (which stops every trial first, Ctrl-C included): a trial stopped with the
    sweep (Ctrl-C, SIGTERM, an error) ends KILLED in MLflow now rather than staying RUNNING until a
    ``--resume`` that may never come, and the console says how many and how to continue. A trial's
    worker may have ended its run itself when Tune stopped it (``trial.STOPPED_REASON``): those
    ended since ``since`` (this driver's start, epoch seconds) count too, unless ASHA pruned them.
    Never raises: it runs while an interruption propagates, and ``--resume`` ends such runs too."""
    try:
        client = MlflowClient(uri)
        ended = set(close_open_runs(client, experiment_id, sweep_id, None, "KILLED", STOPPED))
        ended |= {run.info.run_id for run in sweep_runs(client, experiment_id, sweep_id, "attributes.status = "
                                                        f"'KILLED' and attributes.end_time >= {int(since * 1000)}")
                  if interrupted_run(run, STOPPED_REASON)}
    except Exception as err:  # noqa: BLE001 - the tracking server may be the thing that failed
        why = " ".join(str(err).split())[:300] or type(err).__name__  # one line, however long the error
        SweepProgress.echo(f"sweep {sweep_id}: could not end its unfinished trials' MLflow runs ({why}); "
                           f"`--resume {name}` ends them")
        return
    if ended:
        SweepProgress.echo(f"sweep {sweep_id}: stopped with {len(ended)} trial(s) unfinished, their MLflow "
                           f"run(s) ended KILLED; continue with --resume {name}")


def reconcile_resumed(client: MlflowClient, experiment_id: str, sweep_id: str) -> dict[str, dict]:
    """Before ``Tuner.restore``: end the runs the lost driver left RUNNING; the values each slot had.

    Nothing of this sweep runs now, so a RUNNING trial run is an attempt that died with the
    driver (its trial, if Tune restores it, trains again): it ends KILLED. Tune restores
    the experiment as of its last snapshot (taken every ~10 s and at each trial
    checkpoint), which can be older than MLflow: a trial that started after it is unknown
    to the restored experiment, and the restored searcher issues its slot again. The
    returned ``{slot: sampled values}`` (for ``grid_search.REISSUE``) makes it issue the
    same values, so the new trial takes over the slot's runs and reports a FINISHED one
    instead of training again (``tune_reporter.trial_runs``).
    """
    close_open_runs(client, experiment_id, sweep_id, None, "KILLED", INTERRUPTED)
    recorded: dict[str, dict] = {}
    from_finished: set[str] = set()
    for run in sweep_runs(client, experiment_id, sweep_id):
        tags = run.data.tags
        if run_layout.TAG_TUNE_TRIAL_ID not in tags:  # the summary run of an earlier attempt at finishing
            continue
        slot = tags.get(run_layout.TAG_SWEEP_SLOT)
        if slot and tags.get(run_layout.TAG_SAMPLED_JSON) and slot not in from_finished:
            if slot not in recorded or run.info.status == "FINISHED":  # a FINISHED run's values win
                recorded[slot] = json.loads(tags[run_layout.TAG_SAMPLED_JSON])
            if run.info.status == "FINISHED":
                from_finished.add(slot)
    return recorded


def restored_trials(experiment_dir: str) -> dict[str, dict]:
    """The trials ``Tuner.restore`` will restore from ``experiment_dir`` (a local folder): those of
    its newest ``experiment_state-*.json`` (Tune's choice: the greatest name), as
    {Tune trial id: {"slot", "sampled", "status", "last_result"}} for ``grid_search.RESTORED``.
    {} when there is none or it cannot be read (Tune's restore then says why)."""
    if "://" in experiment_dir:
        return {}
    files = sorted(Path(experiment_dir).glob("experiment_state-*.json"))
    try:
        state = json.loads(files[-1].read_text()) if files else {}
    except (OSError, ValueError):
        return {}
    trials = {}
    for trial_state, runtime in state.get("trial_data", []):
        trial = json.loads(trial_state) if isinstance(trial_state, str) else trial_state
        runtime = json.loads(runtime) if isinstance(runtime, str) else runtime
        suggestion = trial.get("config") or {}
        trials[trial["trial_id"]] = {"slot": suggestion.get("slot"), "sampled": suggestion.get("sampled"),
                                     "status": trial.get("status"), "last_result": runtime.get("last_result") or {}}
    return trials


def _new_tuner(config: SweepConfig, cells: list[dict], meta: dict, sweep_id: str, total: int,
               progress_every_s: float) -> tune.Tuner:
    spec = config.sweep
    ranges = {path: (range_kind(path, r), r) for path, r in spec.ranges.items()}
    searcher = GridCrossedTPE(cells, ranges, spec.samples_per_cell, seed=spec.search_seed, sweep_id=sweep_id)
    return tune.Tuner(
        _trainable(config, meta),
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, search_alg=searcher, scheduler=_scheduler(config),
            num_samples=total, max_concurrent_trials=spec.max_concurrent,
            reuse_actors=True,  # a trial after the first starts in a warm worker (no process start, no imports)
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=config.storage_path(),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[SweepProgress(sweep_id, total, spec.metric, spec.mode, every_s=progress_every_s)],
            verbose=0,
        ),
    )


def sweep_config_for(config_file: str | Path | None, resume: str | None, overrides: dict,
                     missing: str = "give a sweep CONFIG file, or --resume NAME to continue an "
                                    "interrupted sweep", archive: str | Path | None = None) -> SweepConfig:
    """The config to run: the sweep ``resume`` (see :func:`resumable_config`) or ``config_file``;
    ``missing`` is the error when neither is given."""
    if resume is not None:
        return resumable_config(resume, config_file, overrides, archive)
    if config_file is None:
        raise ValueError(missing)
    return load_sweep_config(config_file, overrides)


def resumable_config(name: str, config_file: str | Path | None = None, overrides: dict | None = None,
                     archive: str | Path | None = None) -> SweepConfig:
    """The config of the sweep ``name`` to resume: from ``config_file`` if given, else from its folder,
    else from the sweep ``archive`` (``archive.read_sweep``; a machine that never ran the sweep).

    Without a file the folder is ``<storage_path>/<name>`` with ``storage_path`` from
    ``overrides`` (``sweep.storage_path`` or ``workspace``), default ``workspace/sweeps``.
    """
    overrides = overrides or {}
    if config_file is not None:
        config = load_sweep_config(config_file, overrides)
        if config.name != name:
            raise ValueError(f"--resume {name!r} but {config_file} names the sweep {config.name!r}")
        return config
    storage = overrides.get("sweep", {}).get("storage_path")
    storage = storage or str(Path(overrides.get("workspace", "workspace")) / "sweeps")
    meta = Path(storage).expanduser() / name / META_FILE
    archived = archives.read_sweep(archive) if archive is not None and not meta.is_file() else None
    if archived is not None:
        if archived.name != name:
            raise ValueError(f"--resume {name!r} but {archive} archives the sweep {archived.name!r}")
        return SweepConfig.model_validate(_merge(archived.config, overrides))
    if not meta.is_file():
        raise FileNotFoundError(f"no sweep {name!r} to resume: {meta} not found (pass --workspace or --storage-path "
                                f"where the sweep ran, or the sweep CONFIG)"
                                + (f"; {archive} holds no sweep archive either" if archive is not None else ""))
    data = json.loads(meta.read_text())["config"]
    return SweepConfig.model_validate(_merge(data, overrides))
