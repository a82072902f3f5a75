"""Driver-side Ray Tune callback: terminal progress (trials, best metric, ETA) and MLflow bookkeeping.

Each trial's MLflow run is ended by the trial itself when it finishes or raises. Runs
whose process was killed cannot end themselves; this callback ends them on the driver:
a trial stopped by ASHA → KILLED with ``sweep_outcome = pruned``; an attempt lost with
its node or actor → FAILED with the Ray error, before Ray retries the trial. Every
trial's run gets a ``sweep_outcome`` tag (complete / pruned / failed / errored).

Terminal output, farfield's own and nothing per epoch: one line when a trial starts, one
when it ends (what it is, outcome, metric, duration), and a status line (done/total,
outcomes, running, best, ETA) at most every ``every_s`` and after each trial. After
``--resume`` the trials that finished before the interruption count as done.

The ETA prices the work left in trial-epochs: every grid slot's epochs not yet run, each at
the seconds per epoch measured for its *kind* (the grid cell without its seed: variant ×
split × ... cost alike across seeds), or at the mean over the kinds measured so far for a kind
not yet seen, divided by the trials that run at once. Epochs a resumed trial reports again
from its training state are not timed. At its first step a driver reads the epochs that
earlier drivers timed from the sweep's MLflow runs (the gaps between a run's consecutive
per-epoch curve points), so a resumed sweep's ETA prices the kinds that ran before. Under ASHA every slot is priced at its full budget,
so the ETA is an upper bound. Before any epoch is timed (or without the sweep's config) it
falls back to trials left / trials finished per second.

The callback is pickled into the Tune experiment (for ``Tuner.restore``), so it holds
only the sweep id; the tracking URI and the config of the current driver's sweep are
looked up in ``ACTIVE``.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray import tune
from rich.console import Console

from farfield.analysis import run_layout
from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.sweep.config import cell_label, grid_cells, trial_data
from farfield.orchestrator.sweep.grid_search import TRIAL_COMPLETE, TRIAL_FAILED, slot_name
from farfield.orchestrator.sweep.tune_reporter import REPORT_INDEX, RESUMED_AT_EPOCH, close_open_runs, run_title

#: sweep id → {"tracking_uri", "experiment_id", "config" (the SweepConfig), and "archive" (an
#: ``archive.Archiver``, when the sweep keeps an archive)} for the sweep this driver runs.
ACTIVE: dict[str, dict] = {}
#: Tune trial states of a trial that will not run again.
_ENDED = ("TERMINATED", "ERROR")
#: The per-epoch curve whose points time a run's epochs (every trial logs it, step = epoch).
EPOCH_CURVE = f"{run_layout.CURVE_PREFIX}train_loss"
#: Curve points closer than this (s) are a resumed trial's replayed epochs, not timed ones.
REPLAY_GAP_S = 1.0


def trial_outcome(last_result: dict | None, errored: bool = False) -> str:
    """``complete`` (full budget), ``failed`` (NaN loss), ``errored`` (raised) or ``pruned``."""
    last_result = last_result or {}
    if errored:
        return "errored"
    if last_result.get(TRIAL_FAILED):
        return "failed"
    return "complete" if last_result.get(TRIAL_COMPLETE) else "pruned"


def _error_text(trial) -> str:
    try:
        path = trial.error_file
        text = Path(path).read_text().strip().splitlines() if path else []
    except OSError:
        text = []
    return (text[-1] if text else "trial raised (see the Tune trial's error.txt)")[:2000]


class SweepProgress(tune.Callback):
    """Prints ``done/total``, outcomes, running trials, best full-budget metric and an ETA."""

    def __init__(self, sweep_id: str, total: int, metric: str, mode: str, every_s: float = 15.0):
        self.sweep_id = sweep_id
        self.total = total
        self.metric = metric
        self.mode = mode
        self.every_s = every_s
        self.outcomes: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.durations: list[float] = []
        self.best: tuple[float, str] | None = None
        self.first_start: float | None = None
        self.restored: set[str] = set()  # trials that ended before a --resume
        self.announced_resumes: set[str] = set()  # trials whose "resumed at epoch" line is printed
        self._restore_checked = False
        self._last_print = 0.0
        self._t0 = time.time()
        self._driver_state()

    def _driver_state(self) -> None:
        """What only this driver knows: its clocks and the slots' progress (earlier drivers' epoch
        times are read back from MLflow, not carried in the pickle, so none is counted twice)."""
        self.epoch_seconds: dict[str, list[float]] = {}  # kind → measured seconds per epoch
        self.last_report: dict[str, float] = {}  # trial id → time of its last epoch (or its start)
        self.slot_epochs: dict[str, int] = {}  # slot → epochs run
        self.slots_ended: set[str] = set()
        self._plan: dict[str, tuple[str, int]] | None = None  # slot → (kind, epochs)

    def __setstate__(self, state: dict) -> None:
        """Unpickled by ``Tuner.restore``: this driver's clocks; ended trials are counted at the first step."""
        self.__dict__.update(state)
        self.restored = set()
        self.announced_resumes = set()
        self._restore_checked = False
        self.started, self.first_start, self._t0, self._last_print = {}, None, time.time(), 0.0
        self._driver_state()

    def _sweep_config(self):
        """The ``SweepConfig`` of this driver's sweep (None outside a driver, e.g. in tests)."""
        return ACTIVE.get(self.sweep_id, {}).get("config")

    @property
    def archiver(self):
        """The ``archive.Archiver`` of the sweep this driver runs, or None (no archive)."""
        return ACTIVE.get(self.sweep_id, {}).get("archive")

    # -- MLflow ---------------------------------------------------------------------------
    def _client(self) -> tuple[MlflowClient, str] | None:
        active = ACTIVE.get(self.sweep_id, {})
        if "tracking_uri" not in active:  # outside a driver (tests), or a driver with no store yet
            return None
        return MlflowClient(tracking_uri=active["tracking_uri"]), active["experiment_id"]

    def _tag_runs(self, trial_id: str, outcome: str, status: str | None = None, reason: str = "") -> None:
        found = self._client()
        if found is None:
            return
        client, experiment_id = found
        if status is not None:
            close_open_runs(client, experiment_id, self.sweep_id, trial_id, status, reason)
        runs = client.search_runs([experiment_id], f"tags.{run_layout.TAG_SWEEP_ID} = '{self.sweep_id}' and "
                                                   f"tags.{run_layout.TAG_TUNE_TRIAL_ID} = '{trial_id}'", order_by=["start_time DESC"])
        if runs:  # the trial's result: its FINISHED run (possibly taken over from a lost trial), else the latest
            run = next((r for r in runs if r.info.status == "FINISHED"), runs[0])
            client.set_tag(run.info.run_id, run_layout.TAG_SWEEP_OUTCOME, outcome)

    def title(self, trial) -> str:
        """What ``trial`` is (``painn+les · size · seed 0``), or its Tune id when that cannot be said."""
        config = self._sweep_config()
        try:
            return run_title(config, trial.config) if config is not None else trial.trial_id
        except (KeyError, TypeError, ValueError):
            return trial.trial_id

    # -- Tune hooks -----------------------------------------------------------------------
    def on_step_begin(self, iteration, trials, **info):
        if self._restore_checked:
            return
        self._restore_checked = True  # the first step: trials already ended come from before a --resume
        self._read_timed_epochs()
        for trial in trials:
            if trial.status in _ENDED:
                self.restored.add(trial.trial_id)
                self._slot_ended(trial)
                outcome = trial_outcome(trial.last_result, errored=trial.status == "ERROR")
                self.outcomes[trial.trial_id] = outcome
                self._update_best(trial, outcome)
        if self.restored:
            self.echo(f"resumed sweep {self.sweep_id}: {len(self.restored)} of {self.total} trials had finished "
                      f"before the interruption")

    def on_trial_start(self, iteration, trials, trial, **info):
        now = time.time()
        self.started.setdefault(trial.trial_id, now)
        self.first_start = min(self.first_start or now, now)
        self.last_report[trial.trial_id] = now
        self.echo(f"started  {self.title(trial)}  ({trial.trial_id})")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._time_epoch(trial, result)
        resumed = result.get(RESUMED_AT_EPOCH)
        if resumed is not None and trial.trial_id not in self.announced_resumes:
            self.announced_resumes.add(trial.trial_id)
            self.echo(f"resumed  {self.title(trial)}  ({trial.trial_id}) at epoch {int(resumed)}, "
                      "from its training state")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._tag_runs(trial.trial_id, "retried", "FAILED", f"attempt lost, Ray retries the trial: {_error_text(trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        outcome = trial_outcome(result)
        if outcome == "pruned":
            reason = f"stopped by the ASHA scheduler after epoch {result.get('epoch', '?')} (pruned, not a full-budget result)"
            self._tag_runs(trial.trial_id, outcome, "KILLED", reason)
        else:
            self._tag_runs(trial.trial_id, outcome)
        self._update_best(trial, outcome)
        self._finish(trial, outcome)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._tag_runs(trial.trial_id, "errored", "FAILED", _error_text(trial))
        self._finish(trial, "errored")

    def _update_best(self, trial, outcome: str) -> None:
        value = (trial.last_result or {}).get(self.metric)
        if outcome == "complete" and isinstance(value, (int, float)) and math.isfinite(value):
            better = self.best is None or (value < self.best[0] if self.mode == "min" else value > self.best[0])
            if better:
                self.best = (float(value), trial.trial_id)

    def _finish(self, trial, outcome: str) -> None:
        self.outcomes[trial.trial_id] = outcome
        self._slot_ended(trial)
        self.last_report.pop(trial.trial_id, None)
        took = ""
        if trial.trial_id in self.started:
            self.durations.append(time.time() - self.started.pop(trial.trial_id))
            took = f" in {_clock(self.durations[-1])}"
        value = (trial.last_result or {}).get(self.metric)
        shown = f", {self.metric} {value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else ""
        self.echo(f"finished {self.title(trial)}  ({trial.trial_id}): {outcome}{shown}{took}")
        self.print_status(trials_running=None, force=True)
        if self.archiver is not None:
            self.archiver.trial_ended()

    def on_step_end(self, iteration, trials, **info):
        running = sum(1 for t in trials if t.status == "RUNNING")
        self.print_status(running)
        if self.archiver is not None:
            self.archiver.tick()

    def on_experiment_end(self, trials, **info):
        self.print_status(0, force=True)

    # -- output ---------------------------------------------------------------------------
    def status_line(self, running: int | None) -> str:
        done = len(self.outcomes)
        counts = {k: sum(1 for o in self.outcomes.values() if o == k) for k in ("complete", "pruned", "failed",
                                                                              "errored")}
        parts = [f"sweep {self.sweep_id}: {done}/{self.total} trials done",
                 "(" + ", ".join(f"{n} {k}" for k, n in counts.items() if n) + ")" if done else ""]
        if running is not None:
            parts.append(f"{running} running")
        if self.best is not None:
            parts.append(f"best {self.metric} {self.best[0]:.4g} ({self.best[1]})")
        eta = self.eta_s(running)
        if eta is not None:
            parts.append(f"ETA {_clock(eta)}")
        parts.append(f"elapsed {_clock(time.time() - self._t0)}")
        return " ".join(p for p in parts if p)

    def eta_s(self, running: int | None = None) -> float | None:
        """Seconds left: the epochs left, priced per kind (``remaining_work_s``), over the trials that
        run at once; before an epoch is timed, trials left / observed trial throughput (None
        before one ends)."""
        work = self.remaining_work_s()
        if work is not None:
            config = self._sweep_config()
            parallel = (config.sweep.max_concurrent if config is not None else None) or running or 1
            return work / max(parallel, 1)
        done = len(self.outcomes)
        done_here = done - len(self.restored)  # trials ended by this driver (not before a --resume)
        if done_here <= 0 or self.first_start is None:
            return None
        return (self.total - done) * (time.time() - self.first_start) / done_here

    # -- the epoch clock ------------------------------------------------------------------
    def plan(self) -> dict[str, tuple[str, int]]:
        """Every slot of the sweep → (its kind, its epochs), from the active sweep's config ({} without)."""
        if self._plan is None:
            config = self._sweep_config()
            self._plan = {}
            if config is not None:
                for index, cell in enumerate(grid_cells(config)):
                    kind = cell_label({axis: value for axis, value in cell.items() if axis != "seed"})
                    epochs = TrialConfig.model_validate(trial_data(config, cell, {})).training.epochs
                    for sample in range(config.sweep.samples_per_cell):
                        self._plan[slot_name(index, sample)] = (kind, epochs)
        return self._plan

    @staticmethod
    def _slot(trial) -> str | None:
        config = getattr(trial, "config", None)
        return config.get("slot") if isinstance(config, dict) else None

    def _slot_ended(self, trial) -> None:
        slot = self._slot(trial)
        if slot is not None:
            self.slots_ended.add(slot)

    def _read_timed_epochs(self) -> None:
        """Add the epochs earlier drivers of this sweep ran to ``epoch_seconds``: the gaps between
        consecutive points of each slot-tagged run's ``EPOCH_CURVE`` (replays, < ``REPLAY_GAP_S``, left out)."""
        found, plan = self._client(), self.plan()
        if found is None or not plan:
            return
        client, experiment_id = found
        try:
            runs = client.search_runs([experiment_id], f"tags.{run_layout.TAG_SWEEP_ID} = '{self.sweep_id}'",
                                      max_results=50_000)
            for run in runs:
                planned = plan.get(run.data.tags.get(run_layout.TAG_SWEEP_SLOT, ""))
                if planned is None:
                    continue
                history = client.get_metric_history(run.info.run_id, EPOCH_CURVE)
                times = sorted(point.timestamp / 1000.0 for point in history)
                gaps = [later - earlier for earlier, later in zip(times, times[1:]) if later - earlier >= REPLAY_GAP_S]
                if gaps:
                    self.epoch_seconds.setdefault(planned[0], []).extend(gaps)
        except (MlflowException, OSError) as err:  # the ETA is an estimate: the sweep goes on without the history
            self.echo(f"ETA: earlier epochs not read from MLflow ({err}); timing this driver's epochs only")

    def _time_epoch(self, trial, result: dict) -> None:
        """Count the epoch ``result`` reports; time it unless it is a resumed trial's replay or the final report."""
        slot, now = self._slot(trial), time.time()
        index = result.get(REPORT_INDEX)
        planned = self.plan().get(slot) if slot is not None else None
        if planned is None or not isinstance(index, (int, float)):
            return
        kind, epochs = planned
        if index > epochs or result.get(TRIAL_COMPLETE) or result.get(TRIAL_FAILED):
            return  # the final report: evaluation, not an epoch
        self.slot_epochs[slot] = max(self.slot_epochs.get(slot, 0), int(index))
        previous = self.last_report.get(trial.trial_id)
        self.last_report[trial.trial_id] = now
        if result.get(RESUMED_AT_EPOCH) is None and previous is not None:
            self.epoch_seconds.setdefault(kind, []).append(now - previous)

    def remaining_work_s(self) -> float | None:
        """Trial-seconds left: each unfinished slot's epochs left × its kind's median seconds per
        epoch (the mean over measured kinds for a kind not yet measured); None before any epoch is timed."""
        rates = {kind: statistics.median(seconds) for kind, seconds in self.epoch_seconds.items() if seconds}
        plan = self.plan()
        if not rates or not plan:
            return None
        unseen = statistics.fmean(rates.values())
        return sum(max(epochs - self.slot_epochs.get(slot, 0), 0) * rates.get(kind, unseen)
                   for slot, (kind, epochs) in plan.items() if slot not in self.slots_ended)

    def print_status(self, trials_running: int | None, force: bool = False) -> None:
        if not force and time.time() - self._last_print < self.every_s:
            return
        self._last_print = time.time()
        self.echo(self.status_line(trials_running))

    @staticmethod
    def echo(line: str) -> None:
        # markup off: a variant's name is in brackets (``painn [celli-q] · random``), which rich
        # would take for a style tag and drop
        Console(stderr=True).print(line, highlight=False, soft_wrap=True, markup=False)


def _clock(seconds: float) -> str:
    """``7m05s``; from an hour on ``25h03m`` (a study runs for a day)."""
    seconds = int(max(seconds, 0))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
