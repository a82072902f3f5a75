"""Training loop of one potential: AdamW, LR schedule, EMA, gradient clipping, early stopping.

Nothing here knows about Ray or MLflow: progress goes to a ``Reporter`` that the
orchestrator supplies (see ``farfield.orchestrator.trial``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd
import torch
from tqdm.auto import tqdm

from farfield.models.config import TrainingConfig
from farfield.models.graph import AtomicGraph
from farfield.models.potential import Potential
from farfield.models.training.allocator import retain_freed_memory
from farfield.models.training.ema import WeightEMA
from farfield.models.training.graphs import iterate_batches
from farfield.models.training.loss import target_scales, weighted_loss
from farfield.models.training.metrics import ErrorAccumulator
from farfield.models.training.resume import load_training_state, save_training_state


class Reporter(Protocol):
    """Receives per-epoch metrics, e.g. to log them to a tracker."""

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Evaluation:
    """Metrics (``e_mae`` ... in reported units) and per-structure predictions of one set."""

    metrics: dict[str, float]
    predictions: pd.DataFrame


@dataclass
class TrainingResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    stopped_early: bool = False
    #: The epoch a resumed ``fit`` continued from (None: trained from the start).
    resumed_at_epoch: int | None = None
    #: With a state file: one ``{"from_epoch": k, **state_note}`` per ``fit`` call that trained this
    #: model, oldest first (one entry: never interrupted; a state saved before notes were kept
    #: gives ``{"from_epoch": 0}``). Says, e.g., which code trained which epochs.
    segments: list[dict] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("resources.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


class Trainer:
    """Fits a ``Potential`` on precomputed graphs.

    ``device``: where the model and batches live. ``seed``: shuffling and initialisation.
    The model selected for evaluation is the EMA (if enabled) at the best validation epoch.
    """

    def __init__(
        self,
        potential: Potential,
        config: TrainingConfig,
        device: torch.device | str = "cpu",
        seed: int = 0,
        reporter: Reporter | None = None,
        progress: bool = True,
    ):
        self.potential = potential.to(device)
        self.config = config
        self.device = torch.device(device)
        if self.device.type == "cpu":
            retain_freed_memory()  # step temporaries reused, not page-faulted again (allocator.py)
        self.dtype = next(potential.parameters()).dtype
        self.reporter = reporter
        self.progress = progress
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.AdamW(potential.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = self._make_scheduler()
        self.ema = WeightEMA(potential, config.ema_decay) if config.ema_decay else None
        #: Variances of the loss targets on the training set (set by :meth:`fit`).
        self.scales: dict[str, float] | None = None
        #: Multiplies the energy weight: ``loss.final_energy_factor`` in the final stage.
        self.energy_factor = 1.0
        #: While a resumed ``fit`` hands the reporter the epochs done before (whose weights the
        #: trainer no longer has): the epoch training continues from; else None.
        self.replaying_until: int | None = None

    def _loss(self, prediction, batch):
        return weighted_loss(prediction, batch, self.config.loss, self.scales, self.energy_factor)

    def _reference_energy(self, graph: AtomicGraph) -> torch.Tensor:
        with torch.no_grad():
            per_atom = self.potential.reference_energies(graph.numbers.to(self.device))
        return per_atom.sum().reshape(1).cpu().to(graph.energy.dtype)

    def _make_scheduler(self):
        cfg = self.config
        if cfg.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=cfg.epochs, eta_min=cfg.lr * cfg.min_lr_factor
            )
        if cfg.lr_schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=0.5, patience=5, min_lr=cfg.lr * cfg.min_lr_factor
            )
        return None

    def _to_device(self, batch: AtomicGraph) -> AtomicGraph:
        return batch.to(self.device, self.dtype)

    def train_step(self, batch: AtomicGraph) -> tuple[float, dict[str, float]]:
        """One optimiser step on ``batch``: forces with the graph kept, the loss, backward, gradient
        clipping, AdamW, EMA. Returns the loss and its parts (unweighted)."""
        batch = self._to_device(batch)
        prediction = self.potential(batch, compute_forces=True, create_graph=True)
        loss, parts = self._loss(prediction, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {float(loss.detach())} (parts: {parts}); lower training.lr or check the data"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.potential.parameters(), self.config.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.potential)
        return float(loss.detach()), parts

    def train_epoch(self, graphs: Sequence[AtomicGraph]) -> dict[str, float]:
        """One pass over ``graphs``; returns mean loss parts (unweighted) and the loss."""
        self.potential.train()
        totals: dict[str, float] = {}
        n_batches = 0
        for batch in iterate_batches(graphs, self.config.batch_size, shuffle=True, generator=self.generator):
            loss, parts = self.train_step(batch)
            for name, value in {"loss": loss, **parts}.items():
                totals[name] = totals.get(name, 0.0) + value
            n_batches += 1
        return {name: value / max(n_batches, 1) for name, value in totals.items()}

    def _evaluate_current(self, graphs: Sequence[AtomicGraph]) -> tuple[Evaluation, float]:
        self.potential.eval()
        errors = ErrorAccumulator()
        loss_sum, n = 0.0, 0
        for batch in iterate_batches(graphs, self.config.eval_batch_size, shuffle=False):
            batch = self._to_device(batch)
            prediction = self.potential(batch, compute_forces=True)
            loss, _ = self._loss(prediction, batch)
            loss_sum += float(loss.detach()) * batch.n_graphs
            n += batch.n_graphs
            errors.add(prediction, batch)
        return Evaluation(errors.metrics(), errors.table()), loss_sum / max(n, 1)

    def evaluate(self, graphs: Sequence[AtomicGraph]) -> Evaluation:
        """Metrics and per-structure predictions of the current (EMA-applied if set) model."""
        if self.ema is not None:
            with self.ema.applied(self.potential):
                return self._evaluate_current(graphs)[0]
        return self._evaluate_current(graphs)[0]

    def _state(self, key: str, result: TrainingResult, best_state: dict | None, stale: int, final_start: int) -> dict:
        """Everything ``fit`` needs to continue after the last finished epoch (``resume``)."""
        return {
            "key": key, "history": result.history, "best_val_loss": result.best_val_loss,
            "best_epoch": result.best_epoch, "stopped_early": result.stopped_early, "best_state": best_state,
            "stale": stale, "final_start": final_start, "energy_factor": self.energy_factor,
            "model": self.potential.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "ema": None if self.ema is None else {"shadow": self.ema.shadow, "updates": self.ema.updates},
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "segments": result.segments,
        }

    def _restore(self, state: dict, result: TrainingResult) -> tuple[dict | None, int, int]:
        """Load a ``_state`` into this trainer and ``result``; returns ``(best_state, stale, final_start)``."""
        self.potential.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.shadow = {k: v.to(self.device) for k, v in state["ema"]["shadow"].items()}
            self.ema.updates = int(state["ema"]["updates"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.energy_factor = float(state["energy_factor"])
        result.history = list(state["history"])
        result.best_val_loss, result.best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
        result.stopped_early = bool(state["stopped_early"])
        result.segments = [dict(segment) for segment in state.get("segments", [{"from_epoch": 0}])]
        return state["best_state"], int(state["stale"]), int(state["final_start"])

    def fit(self, train: Sequence[AtomicGraph], val: Sequence[AtomicGraph],
            state_file: str | Path | None = None, state_key: str = "",
            state_note: dict[str, str] | None = None) -> TrainingResult:
        """Train for ``config.epochs`` (or until early stopping); keep the best validation weights.

        After ``fit`` the potential holds the selected weights (EMA, best epoch). With a final
        stage (``loss.final_energy_factor`` ≠ 1) the energy weight changes at its first epoch,
        so the best epoch is looked for again from there (losses of the two stages differ in
        scale); early stopping in the first stage starts the final one at once.

        ``state_file``: where the state is saved after every epoch; when it holds a state of
        ``state_key``, training continues from it (``farfield.models.training.resume``) and the
        reporter is first given the epochs already done. ``resumed_at_epoch`` tells which.
        ``state_note`` (strings, e.g. the code's commit) is kept with the state for the epochs this
        call trains: ``TrainingResult.segments``.
        """
        result = TrainingResult()
        best_state = None
        stale = 0
        self.scales = target_scales(train, self._reference_energy) if train else None
        loss_cfg = self.config.loss
        final_start = self.config.epochs
        has_final = loss_cfg.final_energy_factor != 1.0 and loss_cfg.final_fraction > 0
        if has_final:
            final_start = self.config.epochs - max(1, round(loss_cfg.final_fraction * self.config.epochs))
        first_epoch = 0
        saved = load_training_state(state_file, state_key) if state_file is not None else None
        if saved is not None:
            best_state, stale, final_start = self._restore(saved, result)
            first_epoch = result.resumed_at_epoch = len(result.history)
            if self.reporter is not None:
                self.replaying_until = first_epoch
                try:
                    for row in result.history:
                        self.reporter.on_epoch(int(row["epoch"]), row)
                finally:
                    self.replaying_until = None
        if state_file is not None:
            result.segments.append({"from_epoch": first_epoch, **(state_note or {})})
        bar = tqdm(range(first_epoch, self.config.epochs), desc="epochs", unit="epoch", disable=not self.progress,
                   initial=first_epoch, total=self.config.epochs)
        for epoch in bar:
            if result.stopped_early:
                break
            if epoch == final_start:
                self.energy_factor = loss_cfg.final_energy_factor
                result.best_val_loss, stale = math.inf, 0
            train_parts = self.train_epoch(train)
            if self.ema is not None:
                with self.ema.applied(self.potential):
                    val_eval, val_loss = self._evaluate_current(val or train)
                    candidate = copy.deepcopy(self.potential.state_dict())
            else:
                val_eval, val_loss = self._evaluate_current(val or train)
                candidate = copy.deepcopy(self.potential.state_dict())
            lr = self.optimizer.param_groups[0]["lr"]
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val_loss)
            elif self.scheduler is not None:
                self.scheduler.step()
            row = {"epoch": epoch, "lr": lr, "val_loss": val_loss}
            row.update({f"train_{k}": v for k, v in train_parts.items()})
            row.update({f"val_{k}": v for k, v in val_eval.metrics.items()})
            result.history.append(row)
            if self.reporter is not None:
                self.reporter.on_epoch(epoch, row)
            bar.set_postfix(loss=f"{train_parts['loss']:.3g}", val_f_mae=f"{val_eval.metrics['f_mae']:.1f}")
            if val_loss < result.best_val_loss:
                result.best_val_loss, result.best_epoch, best_state, stale = val_loss, epoch, candidate, 0
            else:
                stale += 1
                if self.config.patience and stale >= self.config.patience and has_final and epoch < final_start:
                    final_start = epoch + 1  # the first stage has converged: the final one starts now
                elif self.config.patience and stale >= self.config.patience:
                    result.stopped_early = True
            if state_file is not None:
                save_training_state(state_file, self._state(state_key, result, best_state, stale, final_start))
            if result.stopped_early:
                break
        if best_state is not None:
            self.potential.load_state_dict(best_state)
        self.ema = None  # the selected weights are now the model's own
        return result
