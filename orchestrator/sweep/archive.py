"""A sweep's finished trials as files that travel with git: export them, import them elsewhere.

A long study outlives the machine it runs on: its MLflow store and Tune experiment live in a
workspace that a new machine does not have. The archive is what a study commits beside its
report (``<study out>/runs/``) so that ``farfield study --resume NAME`` continues there::

    sweep.json                       format, sweep id, name, experiment, the resolved sweep config
    <run id>/run.json                one FINISHED trial run: name, times, tags, params, and every
                                     logged point of every metric (curves included)
    <run id>/artifacts/...           its artifacts, the checkpoint left out (config, split,
                                     predictions and charges: what the report reads); tables
                                     compressed, charges as float32 where that loses nothing
    atoms.parquet                    per atom of every structure whose charges a run logged:
                                     atomic number and reference charge, kept once for all runs
                                     (each run's charge table keeps its own columns only)
    trial_state/<slot>-<hash>.pt     training states of trials not finished yet
                                     (``tune_reporter.trial_state_file``), mirrored

``export_runs`` adds the sweep's FINISHED trial runs that are not there yet (a finished run
never changes) and mirrors the training states; ``import_runs`` creates, on another tracking
server, the archived runs it lacks, tagged ``origin_run_id`` (MLflow gives them new ids), and
puts the training states back. A run is written under a temporary name and renamed into place,
so an interrupted export leaves no half run; an interrupted import leaves a RUNNING run, which
the next import deletes and makes again.

The checkpoints stay out: they are not read by the report, and git would carry one per trial
(``include_checkpoints`` keeps them, e.g. for an archive that is not committed).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout
from farfield.analysis.disk_cache import write_atomic

__all__ = ["ARCHIVE_FORMAT", "SWEEP_FILE", "STATE_DIR", "TAG_ORIGIN_RUN_ID", "ArchivedSweep", "Archiver", "export_runs",
           "compact_table", "import_runs", "joined_charges", "mirror_states", "portable_config", "read_sweep",
           "split_charges", "write_sweep"]

ARCHIVE_FORMAT = 1
SWEEP_FILE = "sweep.json"
RUN_FILE = "run.json"
#: The archive's table of atom facts shared by the runs' charge tables (``split_charges``).
ATOMS_FILE = "atoms.parquet"
#: zstd level of the archive's Parquet tables: a charge table is ~22 % smaller than at the default
#: level 3 (418 vs 536 kB for LES's 97,459 test atoms), and rewriting it takes well under a second.
ZSTD_LEVEL = 19
#: Key and shared columns of a logged charge table (``run_layout.LOGGED_CHARGE_COLUMNS``).
ATOM_KEY = ("structure_id", "atom")
ATOM_FACTS = ("number", "reference_charge")
ARTIFACTS_DIR = "artifacts"
#: Folder of the archive that mirrors the sweep's unfinished training states.
STATE_DIR = "trial_state"
#: Tag of an imported run: the id of the run it was exported from (its folder in the archive).
TAG_ORIGIN_RUN_ID = "origin_run_id"
#: MLflow's limits per ``log_batch`` call.
_BATCH_METRICS, _BATCH_PARAMS = 1000, 100


@dataclass
class ArchivedSweep:
    """``sweep.json``: which sweep an archive holds."""

    sweep_id: str
    name: str
    experiment: str
    config: dict


def write_sweep(folder: str | Path, sweep: ArchivedSweep) -> Path:
    """Write ``sweep.json`` into ``folder`` (made if missing), the config without this machine's
    folders (``portable_config``)."""
    path = Path(folder) / SWEEP_FILE
    text = json.dumps({"format": ARCHIVE_FORMAT, "sweep_id": sweep.sweep_id, "name": sweep.name,
                       "experiment": sweep.experiment, "config": portable_config(sweep.config)}, indent=1) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))
    return path


def portable_config(config: dict) -> dict:
    """``config`` (a sweep config as JSON data) without the absolute folders of the machine it ran
    on — ``workspace`` and ``sweep.storage_path`` — which then take their defaults (``workspace``
    under the folder the command runs in) where the archive is resumed; relative ones are kept."""
    config = json.loads(json.dumps(config))
    if Path(str(config.get("workspace", ""))).is_absolute():
        config.pop("workspace")
    sweep = config.get("sweep") or {}
    if sweep.get("storage_path") and Path(str(sweep["storage_path"])).is_absolute():
        sweep.pop("storage_path")
    return config


def read_sweep(folder: str | Path) -> ArchivedSweep | None:
    """The archive's ``sweep.json``; None when ``folder`` holds no archive."""
    path = Path(folder) / SWEEP_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not a sweep archive ({err})") from None
    if data.get("format") != ARCHIVE_FORMAT:
        raise ValueError(f"{path}: archive format {data.get('format')!r}; this farfield reads format {ARCHIVE_FORMAT}")
    return ArchivedSweep(data["sweep_id"], data["name"], data["experiment"], data["config"])


def archived_run_ids(folder: str | Path) -> set[str]:
    """Ids (origin ids) of the runs the archive holds."""
    folder = Path(folder)
    return {path.parent.name for path in folder.glob(f"*/{RUN_FILE}")} if folder.is_dir() else set()


# ---------------------------------------------------------------------------- export
def export_runs(tracking_uri: str, experiment_id: str, sweep_id: str, folder: str | Path,
                state_dir: str | Path | None = None, workspaces: list[Path] | None = None,
                include_checkpoints: bool = False) -> list[str]:
    """Add the FINISHED trial runs of ``sweep_id`` missing from the archive ``folder``; mirror the
    training states of ``state_dir`` into ``folder/trial_state``. ``workspaces``: where the runs'
    artifacts may lie on this machine (read in place, ``run_layout.local_artifact_dir``).
    Returns the ids of the runs added."""
    from farfield.orchestrator.sweep.tune_reporter import sweep_runs

    folder = Path(folder)
    client = MlflowClient(tracking_uri=tracking_uri)
    have = archived_run_ids(folder)
    added = []
    for run in sweep_runs(client, experiment_id, sweep_id, "attributes.status = 'FINISHED'"):
        tags = run.data.tags
        if run_layout.TAG_BACKBONE not in tags or tags.get(run_layout.TAG_SWEEP_SUMMARY) == run_layout.TRUE:
            continue
        origin = tags.get(TAG_ORIGIN_RUN_ID, run.info.run_id)
        if origin in have:
            continue
        _export_run(client, run, folder / origin, workspaces or [], include_checkpoints)
        added.append(origin)
    if state_dir is not None:
        mirror_states(Path(state_dir), folder / STATE_DIR)
    return added


def _export_run(client: MlflowClient, run, target: Path, workspaces: list[Path], include_checkpoints: bool) -> None:
    history = {key: [[m.step, m.value, m.timestamp] for m in client.get_metric_history(run.info.run_id, key)]
               for key in sorted(run.data.metrics)}
    record = {"run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
              "start_time": run.info.start_time, "end_time": run.info.end_time,
              "tags": {k: v for k, v in sorted(run.data.tags.items()) if not k.startswith("mlflow.")},
              "params": dict(sorted(run.data.params.items())), "metrics": history,
              "exported_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would stay on the renamed folder
    try:
        _copy_artifacts(client, run, tmp / ARTIFACTS_DIR, workspaces, include_checkpoints)
        charges = tmp / ARTIFACTS_DIR / run_layout.CHARGES_ARTIFACT
        if charges.is_file():
            split_charges(charges, target.parent / ATOMS_FILE)
        for table in (tmp / ARTIFACTS_DIR).rglob("*.parquet"):
            compact_table(table, narrow=table == charges)
        (tmp / RUN_FILE).write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_artifacts(client: MlflowClient, run, target: Path, workspaces: list[Path], include_checkpoints: bool) -> None:
    target.mkdir(parents=True)
    skip = set() if include_checkpoints else {run_layout.CHECKPOINT_DIR}
    local = run_layout.local_artifact_dir(run.info.artifact_uri or "", workspaces)
    if local is not None:
        for entry in sorted(local.iterdir()):
            if entry.name in skip:
                continue
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, target / entry.name)
        return
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for item in client.list_artifacts(run.info.run_id):
        if item.path not in skip:
            client.download_artifacts(run.info.run_id, item.path, str(target))


def compact_table(path: Path, narrow: bool = False) -> None:
    """Rewrite the Parquet table ``path`` with zstd compression (``ZSTD_LEVEL``), kept as it was where that is not
    smaller; ``narrow``: also store float64 columns whose values are all float32 numbers (a float32
    model's charges, a float32 store's reference charges) as float32 — same values, other width,
    for tables whose readers take values only (``loading.charge_rows`` reads float64)."""
    import numpy as np
    import pandas as pd

    table = pd.read_parquet(path)
    for name in table.columns if narrow else ():
        column = table[name]
        if column.dtype == np.float64:
            narrowed = column.astype(np.float32)
            if np.array_equal(narrowed.to_numpy(np.float64), column.to_numpy(), equal_nan=True):
                table[name] = narrowed
    tmp = path.with_name(f".{path.name}.compact")
    table.to_parquet(tmp, index=False, compression="zstd", compression_level=ZSTD_LEVEL)
    if tmp.stat().st_size < path.stat().st_size:
        os.replace(tmp, path)
    else:
        tmp.unlink()


def split_charges(path: Path, atoms_path: Path) -> None:
    """Move the atom facts (``ATOM_FACTS``: atomic number, reference charge) of the charge table
    ``path`` into the archive's ``atoms_path`` (rows of atoms it lacks added), leaving ``path``
    with the key, the head and the run's charge. The reference charges are the dataset's, equal
    in every run: kept once, they cost bytes per atom instead of per atom and run."""
    import pandas as pd

    table = pd.read_parquet(path)
    key = list(ATOM_KEY)
    facts = table[[*key, *ATOM_FACTS]].drop_duplicates(key)
    known = pd.read_parquet(atoms_path) if atoms_path.is_file() else None
    if known is not None:
        both = facts.merge(known, on=key, suffixes=("", "_known"))
        for name in ATOM_FACTS:
            same = (both[name] == both[f"{name}_known"]) | (both[name].isna() & both[f"{name}_known"].isna())
            if not same.all():
                raise ValueError(f"{path}: {name} of {int((~same).sum())} atom(s) differs from {atoms_path}; "
                                 "the runs of one sweep share one dataset")
        found = facts.merge(known[key], on=key, how="left", indicator=True)["_merge"].to_numpy() == "both"
        facts = pd.concat([known, facts[~found]], ignore_index=True)
    if known is None or len(facts) > len(known):
        def write(tmp: Path) -> None:
            facts.to_parquet(tmp, index=False)
            compact_table(tmp, narrow=True)

        write_atomic(atoms_path, write)
    table.drop(columns=list(ATOM_FACTS)).to_parquet(path, index=False)


def joined_charges(path: Path, atoms_path: Path, target: Path) -> None:
    """The charge table as the run logged it (columns in ``run_layout`` order) from the archive's
    ``path`` and ``atoms_path``, written to ``target``."""
    import pandas as pd

    table = pd.read_parquet(path)
    if all(name in table for name in ATOM_FACTS):  # kept whole
        shutil.copy2(path, target)
        return
    joined = table.merge(pd.read_parquet(atoms_path), on=list(ATOM_KEY), how="left", validate="many_to_one")
    joined[["structure_id", *run_layout.LOGGED_CHARGE_COLUMNS]].to_parquet(target, index=False)


def mirror_states(source: Path, target: Path) -> None:
    """Make ``target`` hold the training states (``*.pt``) of ``source``: new and changed files
    copied (to a temporary name, then renamed), those gone from ``source`` removed (their trial
    finished). States are written atomically by the trainer, so a copy is a whole state."""
    present = {path.name: path for path in source.glob("*.pt")} if source.is_dir() else {}
    if target.is_dir():
        for stale in target.glob("*.pt"):
            if stale.name not in present:
                stale.unlink(missing_ok=True)
    for name, path in present.items():
        copy = target / name
        try:
            stat = path.stat()
            if copy.is_file() and copy.stat().st_size == stat.st_size and copy.stat().st_mtime >= stat.st_mtime:
                continue
            write_atomic(copy, lambda tmp, source=path: shutil.copy2(source, tmp))
        except FileNotFoundError:  # the trial finished meanwhile and removed its state
            continue


# ---------------------------------------------------------------------------- import
def import_runs(folder: str | Path, tracking_uri: str, experiment_id: str, state_dir: str | Path | None = None,
                progress=lambda line: None) -> tuple[list[str], int]:
    """Create on ``tracking_uri`` the archived runs of ``folder`` that it lacks (found by their
    ``origin_run_id`` tag or their own id); put the archived training states into ``state_dir``
    where it has none of that name. Returns (the origin ids imported, the states restored)."""
    folder = Path(folder)
    sweep = read_sweep(folder)
    if sweep is None:
        raise FileNotFoundError(f"{folder}: no {SWEEP_FILE}, so not a sweep archive")
    client = MlflowClient(tracking_uri=tracking_uri)
    present = set()
    from farfield.orchestrator.sweep.tune_reporter import sweep_runs

    for run in sweep_runs(client, experiment_id, sweep.sweep_id):
        origin = run.data.tags.get(TAG_ORIGIN_RUN_ID)
        if origin is not None and run.info.status != "FINISHED":  # an import that was interrupted
            client.delete_run(run.info.run_id)
            continue
        present.add(origin or run.info.run_id)
    wanted = sorted(archived_run_ids(folder) - present,
                    key=lambda rid: json.loads((folder / rid / RUN_FILE).read_text())["start_time"] or 0)
    for index, origin in enumerate(wanted, 1):
        record = json.loads((folder / origin / RUN_FILE).read_text())
        progress(f"importing trial {index}/{len(wanted)}: {record['run_name']}")
        _import_run(client, experiment_id, record, folder / origin / ARTIFACTS_DIR)
    restored = 0
    archived_states = folder / STATE_DIR
    if state_dir is not None and archived_states.is_dir():
        state_dir = Path(state_dir)
        for path in sorted(archived_states.glob("*.pt")):
            if not (state_dir / path.name).exists():
                state_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, state_dir / path.name)
                restored += 1
    return wanted, restored


def _import_run(client: MlflowClient, experiment_id: str, record: dict, artifacts: Path) -> str:
    tags = {**record["tags"], TAG_ORIGIN_RUN_ID: record["tags"].get(TAG_ORIGIN_RUN_ID, record["run_id"])}
    run = client.create_run(experiment_id, start_time=record["start_time"], tags=tags, run_name=record["run_name"])
    run_id = run.info.run_id
    params = [mlflow.entities.Param(k, v) for k, v in record["params"].items()]
    for start in range(0, len(params), _BATCH_PARAMS):
        client.log_batch(run_id, params=params[start : start + _BATCH_PARAMS])
    points = [mlflow.entities.Metric(key, value, timestamp, step)
              for key, history in record["metrics"].items() for step, value, timestamp in history]
    for start in range(0, len(points), _BATCH_METRICS):
        client.log_batch(run_id, metrics=points[start : start + _BATCH_METRICS])
    if artifacts.is_dir() and any(artifacts.iterdir()):
        charges = artifacts / run_layout.CHARGES_ARTIFACT
        if charges.is_file():  # logged whole again, its atom facts joined back
            with tempfile.TemporaryDirectory() as tmp:
                whole = Path(tmp) / run_layout.CHARGES_FILE
                joined_charges(charges, artifacts.parent.parent / ATOMS_FILE, whole)
                client.log_artifact(run_id, str(whole), run_layout.PREDICTIONS_DIR)
        for file in sorted(p for p in artifacts.rglob("*") if p.is_file() and p != charges):
            folder = file.parent.relative_to(artifacts).as_posix()
            client.log_artifact(run_id, str(file), None if folder == "." else folder)
    client.set_terminated(run_id, status="FINISHED", end_time=record["end_time"])
    return run_id



class Archiver:
    """Keeps a running sweep's archive current, called by the driver's progress callback
    (``SweepProgress``): ``trial_ended`` exports the runs that finished, ``tick`` (every step of
    the Tune loop) mirrors the training states every ``every_s`` seconds. A failure is reported
    once through ``echo`` and never stops the sweep: the archive is a copy, MLflow the record."""

    def __init__(self, folder: Path, tracking_uri: str, experiment_id: str, sweep_id: str,
                 state_dir: Path | None, workspaces: list[Path], every_s: float = 60.0, echo=print):
        self.folder, self.tracking_uri, self.experiment_id, self.sweep_id = Path(folder), tracking_uri, experiment_id, sweep_id
        self.state_dir, self.workspaces, self.every_s, self.echo = state_dir, workspaces, every_s, echo
        self.last_tick = 0.0
        self.warned = False

    def export(self) -> list[str]:
        """Export what finished and mirror the states now; the ids added."""
        try:
            return export_runs(self.tracking_uri, self.experiment_id, self.sweep_id, self.folder, self.state_dir,
                               self.workspaces)
        except (OSError, mlflow.exceptions.MlflowException) as err:
            if not self.warned:
                self.warned = True
                self.echo(f"archive {self.folder}: not updated ({type(err).__name__}: {err}); the runs stay in MLflow")
            return []

    def trial_ended(self) -> None:
        added = self.export()
        if added:
            self.echo(f"archived {len(added)} finished trial run(s) in {self.folder}")

    def tick(self) -> None:
        import time

        if self.state_dir is None or time.monotonic() - self.last_tick < self.every_s:
            return
        self.last_tick = time.monotonic()
        try:
            mirror_states(self.state_dir, self.folder / STATE_DIR)
        except OSError as err:
            if not self.warned:
                self.warned = True
                self.echo(f"archive {self.folder}: training states not copied ({err})")
