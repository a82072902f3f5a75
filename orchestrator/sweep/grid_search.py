"""A Ray Tune searcher that crosses categorical axes as a grid and runs Optuna TPE inside each cell.

Ray's ``OptunaSearch`` cannot take ``tune.grid_search`` axes, and it tells Optuna the
last reported value of a trial that a scheduler stopped early as if it were a finished
result. This searcher keeps one Optuna study per grid cell (backbone × long_range ×
split × seed), hands out cells round-robin until each has had ``samples_per_cell``
trials, and tells Optuna honestly:

* a trial that ran its full budget (its last report carries ``trial_complete``) is
  COMPLETE with the sweep metric of its selected (best-epoch) weights;
* a trial stopped by ASHA before that is PRUNED: Optuna keeps its per-epoch values as
  intermediate values, and TPE ranks pruned trials behind every complete one;
* a trial that raised (after Ray's retries) or whose loss became NaN is FAIL.

Every suggestion names its **slot**, ``"<cell>.<k>"`` (the k-th sample of that cell): the
identity of the trial in MLflow that survives a lost driver. A restored searcher is the
one of Tune's last experiment snapshot, so it issues again the slots it had issued after
that snapshot; ``REISSUE[sweep_id]`` (filled by ``--resume`` from MLflow) gives it the
values those slots were sampled with, and it hands them out again (``enqueue_trial``)
instead of sampling new ones, so the new Tune trial can take over the MLflow runs of the
lost one.

Tune saves the experiment's trials, this searcher and its wrappers' state to three files
and copies them to the sweep's folder in the background, one by one: a driver killed
mid-copy leaves a searcher older or newer than the trials Tune restores. A restored
searcher therefore takes the trials of the restored experiment (``RESTORED[sweep_id]``,
read by ``--resume`` from the same file ``Tuner.restore`` reads) as the truth: a slot is
issued again only if no restored trial holds it, a restored trial it never issued is
registered (so its result reaches Optuna and it counts towards the concurrency limit),
and a trial it issued that the experiment does not have is forgotten by Tune: its slot
comes again, and the Tune trial that takes it takes over its Optuna trial too (same
values, one Optuna trial per slot; each Optuna trial carries its slot as the user
attribute ``slot``). For the same
reason it limits concurrency itself (``set_max_concurrency``) instead of leaving it to
Ray's ``ConcurrencyLimiter``, whose count of live trials would be restored stale too.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import optuna
from ray.tune.search import Searcher

from farfield.orchestrator.sweep.config import SearchRange

TRIAL_COMPLETE = "trial_complete"
TRIAL_FAILED = "trial_failed"

#: sweep id → {slot: sampled values} recorded in MLflow, for a resumed sweep on this driver.
REISSUE: dict[str, dict[str, dict[str, Any]]] = {}
#: sweep id → the trials of the experiment ``Tuner.restore`` restores, for a resumed sweep on this
#: driver: {Tune trial id: {"slot", "sampled", "status", "last_result"}}.
RESTORED: dict[str, dict[str, dict[str, Any]]] = {}


def _distribution(kind: str, spec: SearchRange) -> optuna.distributions.BaseDistribution:
    if kind == "categorical":
        return optuna.distributions.CategoricalDistribution([_hashable(c) for c in spec.choices])
    if kind == "int":
        return optuna.distributions.IntDistribution(int(spec.low), int(spec.high), log=spec.log)
    return optuna.distributions.FloatDistribution(float(spec.low), float(spec.high), log=spec.log)


def slot_name(cell_index: int, sample: int) -> str:
    """A trial's slot, ``"i.k"``: sample ``k`` of grid cell ``i`` (stable over a resume)."""
    return f"{cell_index}.{sample}"


def parse_slot(slot: str) -> tuple[int, int]:
    """``(cell index, sample)`` of a slot ``"i.k"`` (the inverse of ``slot_name``)."""
    cell_index, sample = (int(part) for part in slot.split("."))
    return cell_index, sample


def _hashable(value):
    """Optuna choices must be None/bool/int/float/str: lists become tuples' string form."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


class GridCrossedTPE(Searcher):
    """Grid over ``cells`` × Optuna TPE over ``ranges`` within each cell.

    ``cells``: list of grid-axis mappings (``sweep_config.grid_cells``).
    ``ranges``: ``{dotted.path: (kind, SearchRange)}`` with kind ``float``/``int``/``categorical``.
    ``sweep_id``: the sweep's id, the key of ``REISSUE`` on resume.
    Suggested configs are ``{"cell_index": i, "cell": {...}, "sampled": {path: value}, "slot": "i.k"}``.
    """

    def __init__(
        self,
        cells: list[dict[str, Any]],
        ranges: dict[str, tuple[str, SearchRange]],
        samples_per_cell: int,
        seed: int = 0,
        metric: str | None = None,
        mode: str | None = None,
        sweep_id: str | None = None,
    ):
        super().__init__(metric=metric, mode=mode)
        self.sweep_id = sweep_id
        self.cells = cells
        self.samples_per_cell = samples_per_cell
        self.distributions = {path: _distribution(kind, spec) for path, (kind, spec) in ranges.items()}
        self.choices = {path: spec.choices for path, (kind, spec) in ranges.items() if kind == "categorical"}
        self.seed = seed
        self.studies: list[optuna.Study] | None = None
        self.issued = [0] * len(cells)
        self.next_cell = 0
        self.live: dict[str, tuple[int, int, int]] = {}  # tune trial id → (cell, optuna number, optuna id)
        self.outcomes: dict[str, str] = {}
        self.max_concurrent: int | None = None
        self.unclaimed: dict[str, tuple[int, int, int]] = {}  # slot → (cell, optuna number, optuna id) of a forgotten trial

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Tune's ``max_concurrent_trials``: at most this many live trials; True tells Ray's
        ``ConcurrencyLimiter`` that this searcher keeps the limit itself."""
        self.max_concurrent = max_concurrent
        return True

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def _ensure_studies(self) -> list[optuna.Study]:
        if self.studies is None:
            direction = "maximize" if self._mode == "max" else "minimize"
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self.studies = [
                optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=self.seed + i))
                for i in range(len(self.cells))
            ]
        return self.studies

    def suggest(self, trial_id: str) -> dict | None:
        studies = self._ensure_studies()
        limit = getattr(self, "max_concurrent", None)  # a searcher pickled by an older farfield has none
        if limit and len(self.live) >= limit:
            return None  # Tune asks again when a trial ends
        for offset in range(len(self.cells)):
            index = (self.next_cell + offset) % len(self.cells)
            if self.issued[index] < self.samples_per_cell:
                break
        else:
            return Searcher.FINISHED
        slot = slot_name(index, self.issued[index])
        unclaimed = getattr(self, "unclaimed", {}).pop(slot, None)  # a searcher pickled by an older farfield has none
        if unclaimed is not None:
            sampled = self._take_over(trial_id, unclaimed)
        else:
            sampled = self._ask(trial_id, index, self._recorded(slot), slot)
        self.issued[index] += 1
        self.next_cell = index + 1
        return {"cell_index": index, "cell": self.cells[index], "sampled": sampled, "slot": slot}

    def _ask(self, trial_id: str, index: int, values: dict | None, slot: str) -> dict:
        """A new Optuna trial of cell ``index`` for Tune trial ``trial_id`` in ``slot`` (``values``,
        in Optuna's form: the values it must take); its sampled values as the trial gets them."""
        study = self._ensure_studies()[index]
        if values is not None:
            study.enqueue_trial(values)
        trial = study.ask(self.distributions)
        trial.set_user_attr("slot", slot)
        self.live[trial_id] = (index, trial.number, trial._trial_id)
        return self._values(trial.params)

    def _take_over(self, trial_id: str, unclaimed: tuple[int, int, int]) -> dict:
        """Tune trial ``trial_id`` continues the still-running Optuna trial ``unclaimed`` of a
        forgotten Tune trial in the same slot; its sampled values."""
        index, _, internal_id = unclaimed
        self.live[trial_id] = unclaimed
        return self._values(self.studies[index]._storage.get_trial(internal_id).params)

    def _recorded(self, slot: str) -> dict | None:
        """The values ``slot`` was issued with before a lost driver (Optuna's form), if they fit the ranges."""
        return self._fitting(REISSUE.get(getattr(self, "sweep_id", None) or "", {}).get(slot))

    def _fitting(self, values: dict | None) -> dict | None:
        """``values`` in Optuna's form if they are one value per range, each inside it; else None."""
        if values is None or set(values) != set(self.distributions):
            return None
        params = {path: _hashable(value) for path, value in values.items()}
        return params if all(_fits(self.distributions[path], value) for path, value in params.items()) else None

    def _values(self, params: dict) -> dict:
        """An Optuna trial's ``params`` as the Tune trial gets them (categorical choices unhashed)."""
        return {path: self._unhash(path, value) for path, value in params.items()}

    def _unhash(self, path: str, value):
        if path not in self.choices:
            return value
        return next(choice for choice in self.choices[path] if _hashable(choice) == value)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Per-epoch value → Optuna intermediate value at step = epoch (overwritten on retries)."""
        if trial_id not in self.live or self._metric not in result or result.get(TRIAL_COMPLETE):
            return
        value, step = result[self._metric], result.get("epoch")
        if step is None or not _finite(value):
            return
        index, _, internal_id = self.live[trial_id]
        self.studies[index]._storage.set_trial_intermediate_value(internal_id, int(step), float(value))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        index, number, _ = self.live.pop(trial_id)
        study = self.studies[index]
        result = result or {}
        value = result.get(self._metric)
        if error or result.get(TRIAL_FAILED):
            outcome, state, value = "failed", optuna.trial.TrialState.FAIL, None
        elif result.get(TRIAL_COMPLETE) and _finite(value):
            outcome, state, value = "complete", optuna.trial.TrialState.COMPLETE, float(value)
        elif result.get(TRIAL_COMPLETE):
            outcome, state, value = "failed", optuna.trial.TrialState.FAIL, None
        else:
            outcome, state, value = "pruned", optuna.trial.TrialState.PRUNED, None
        study.tell(number, value, state=state)
        self.outcomes[trial_id] = outcome

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__.copy(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))
        restored = RESTORED.get(getattr(self, "sweep_id", None) or "")
        if restored:
            self.align(restored)

    def align(self, trials: dict[str, dict[str, Any]]) -> None:
        """Agree with the trials of the restored experiment (see the module's docstring).

        ``trials``: {Tune trial id: {"slot": "i.k", "sampled": values, "status": Tune's status,
        "last_result": its last result}}. Without a slot on every trial (a sweep started by an
        older farfield) nothing changes.
        """
        if not trials or not all(trial.get("slot") for trial in trials.values()):
            return
        slots = {trial_id: parse_slot(trial["slot"]) for trial_id, trial in trials.items()}
        issued = [0] * len(self.cells)  # slots are issued in order, and the experiment keeps every trial
        for index, sample in slots.values():
            issued[index] = max(issued[index], sample + 1)
        self.issued = issued
        unclaimed = getattr(self, "unclaimed", {})  # a searcher pickled by an older farfield has none
        for trial_id in [t for t in self.live if t not in trials]:  # issued after the experiment's snapshot:
            index, number, internal_id = self.live.pop(trial_id)    # its slot is issued again
            slot = self.studies[index]._storage.get_trial(internal_id).user_attrs.get("slot")
            if slot is not None:
                unclaimed[slot] = (index, number, internal_id)  # for the trial that takes the slot
            else:  # asked by an older farfield: no slot to hand it on to
                self.studies[index].tell(number, None, state=optuna.trial.TrialState.FAIL)
        for trial_id, trial in trials.items():
            if trial_id not in self.live and trial_id not in self.outcomes:  # this searcher's snapshot is older
                self._ask(trial_id, slots[trial_id][0], self._fitting(trial.get("sampled")), trial["slot"])
            if trial.get("status") == "TERMINATED" and trial_id in self.live:  # ended after that snapshot
                self.on_trial_complete(trial_id, trial.get("last_result") or {})
        for slot, (index, number, _) in list(unclaimed.items()):
            if parse_slot(slot)[1] < issued[index]:  # a restored trial holds the slot already
                del unclaimed[slot]
                self.studies[index].tell(number, None, state=optuna.trial.TrialState.FAIL)
        self.unclaimed = unclaimed


def _fits(distribution: optuna.distributions.BaseDistribution, value) -> bool:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(distribution, optuna.distributions.IntDistribution) and value != int(value):
        return False
    return distribution.low <= value <= distribution.high


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
