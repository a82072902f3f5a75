"""Constructed MLflow runs of a paper-style study, with effects chosen by the test.

A *world* fixes how each scheme, split and depth changes the errors; ``study_runs`` turns it
into ``TrialRun`` records exactly as ``orchestrator/trial.py`` logs them (tags ``backbone``,
``long_range``, ``split``, ``split_hash``, ``dataset_hash``; params ``seed``, ``model.layers``,
``model.channels``, ``model.cutoff``, ``training.loss.charges``; final metrics
``{train,test}/{e_mae,f_mae}``), and ``tables`` gives the analysis tables built from them:
``trials`` (through ``loading.trial_row`` plus baseline metrics), per-structure errors and
the charge detector's summary of per-atom LES charges.

Design: schemes none, celli (reference charges, ``training.loss.charges`` = 1), celli (none),
les, efa at 2 layers; short-range also at 4 layers; splits random, size, kmeans,
farthest_from_seed; 3 seeds; 30 test structures per split replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SCHEMES = (("none", 0.0), ("celli", 1.0), ("celli", 0.0), ("les", 0.0), ("efa", 0.0))
SPLITS = ("random", "size", "kmeans", "farthest_from_seed")
SEEDS = (0, 1, 2)
N_STRUCTURES = 30
BASELINE_F, BASELINE_E = 1000.0, 400.0  # meV/Å, meV/atom


@dataclass
class World:
    """Multiplicative effects on the test errors (1 = no effect) and the noise (log-normal sd)."""

    split_factor: float = 1.0                     # biased / random test error
    long_range_random: dict = field(default_factory=lambda: {"celli(q)": 1.0, "celli": 1.0, "les": 1.0, "efa": 1.0})
    long_range_biased: dict = field(default_factory=lambda: {"celli(q)": 1.0, "celli": 1.0, "les": 1.0, "efa": 1.0})
    deep_test: float = 1.0                        # 4-layer / 2-layer short-range test error
    deep_train: float = 1.0                       # 4-layer / 2-layer short-range train error
    les_spread_ratio: float = 0.1                 # LES charge spread / reference spread
    noise: float = 0.08
    base_f: float = 100.0                         # meV/Å, short-range, random split
    base_e: float = 10.0                          # meV/atom


SUPPORTING = World(split_factor=2.0,
                   long_range_random={"celli(q)": 0.8, "celli": 0.97, "les": 0.9, "efa": 0.9},
                   long_range_biased={"celli(q)": 0.6, "celli": 0.95, "les": 0.7, "efa": 0.7},
                   deep_test=1.05, deep_train=0.5, les_spread_ratio=0.02, noise=0.03)
CONTRADICTING = World(split_factor=0.6,
                      long_range_random={"celli(q)": 1.1, "celli": 0.9, "les": 0.9, "efa": 0.9},
                      long_range_biased={"celli(q)": 1.25, "celli": 0.85, "les": 1.2, "efa": 1.2},
                      deep_test=0.7, deep_train=0.8, les_spread_ratio=0.8, noise=0.03)
NOISE = World()


def _label(long_range: str, charges: float) -> str:
    return f"{long_range}(q)" if charges > 0 else long_range


def study_runs(world: World, seed: int = 0):
    """``(runs, structures, charges)``: ``TrialRun`` records, per-structure errors and per-atom
    charges of the LES runs for ``world`` (random numbers from ``seed``)."""
    from farfield.analysis.mlflow_queries import TrialRun

    rng = np.random.default_rng(seed)
    runs, structures, charges = [], [], []
    difficulty = {(split, s): rng.lognormal(0, 0.3, N_STRUCTURES) for split in SPLITS for s in SEEDS}
    designs = [(lr, q, 2) for lr, q in SCHEMES] + [("none", 0.0, 4)]
    for long_range, q, layers in designs:
        for split in SPLITS:
            for s in SEEDS:
                scheme = _label(long_range, q)
                factor = 1.0 if split == "random" else world.split_factor
                if scheme != "none":
                    factor *= (world.long_range_random if split == "random" else world.long_range_biased)[scheme]
                test_factor, train_factor = factor, factor
                if layers == 4:
                    test_factor, train_factor = factor * world.deep_test, factor * world.deep_train
                noise = rng.lognormal(0, world.noise, 2)
                per_f = world.base_f * test_factor * noise[0] * difficulty[split, s] * rng.lognormal(0, 0.05, N_STRUCTURES)
                per_e = world.base_e * test_factor * noise[1] * difficulty[split, s] * rng.lognormal(0, 0.05, N_STRUCTURES)
                run_id = f"{scheme}-{layers}L-{split}-s{s}"
                train = rng.lognormal(0, world.noise, 2)
                metrics = {"test/f_mae": float(per_f.mean()), "test/e_mae": float(per_e.mean()),
                           "train/f_mae": 0.5 * world.base_f * train_factor * train[0],
                           "train/e_mae": 0.5 * world.base_e * train_factor * train[1]}
                tags = {"backbone": "painn", "long_range": long_range, "split": split,
                        "split_hash": f"{split}-{s}", "dataset_hash": "d0", "sweep_id": "constructed"}
                params = {"seed": str(s), "model.layers": str(layers), "model.channels": "16", "model.cutoff": "5.0",
                          "training.loss.charges": str(q), "split.strategy": split, "split.seed": str(s)}
                runs.append(TrialRun(run_id, run_id, "FINISHED", "0", tags, params, metrics))
                structures.append(pd.DataFrame({
                    "run_id": run_id, "split_hash": f"{split}-{s}",
                    "structure_id": [f"{split}-{s}-m{i}" for i in range(N_STRUCTURES)],
                    "f_mae_mev": per_f, "e_abs_error_mev": per_e}))
                if long_range == "les":
                    reference = rng.normal(0, 0.5, 200)
                    spread = world.les_spread_ratio * rng.lognormal(0, 0.25)
                    charges.append(pd.DataFrame({
                        "run_id": run_id, "model": "painn+les", "split": split, "seed": s, "layers": layers,
                        "head": "les", "structure_id": "x", "atom": np.arange(200), "element": "C",
                        "q_pred": spread * (reference + rng.normal(0, 0.2, 200)) / np.sqrt(1.16), "q_ref": reference}))
    return runs, pd.concat(structures, ignore_index=True), pd.concat(charges, ignore_index=True)


def tables_from_runs(runs, structures: pd.DataFrame, charges: pd.DataFrame, baseline_f: float = BASELINE_F,
                     baseline_e: float = BASELINE_E):
    """``(trials, structures, charge_summary)`` as the report builds them from these runs."""
    from farfield.analysis.charges import charge_summary
    from farfield.analysis.loading import trial_row

    rows = []
    for run in runs:
        row = trial_row(run, N_STRUCTURES)
        row.update({"baseline_f_mae": baseline_f, "baseline_e_mae": baseline_e})
        rows.append(row)
    return pd.DataFrame(rows), structures, charge_summary(charges)


def tables(world: World, seed: int = 0, **baseline):
    """``tables_from_runs(*study_runs(world, seed))``."""
    return tables_from_runs(*study_runs(world, seed), **baseline)
