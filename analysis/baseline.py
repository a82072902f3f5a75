"""The dummy baseline: per-element reference energies only, zero forces.

For each split it fits per-element energies on the training structures by least squares
(the same fit a ``Potential`` starts from, ``fit_reference_energies``) and predicts the
test structures with them and zero forces. Its errors say how hard a split's test set is
before any learning, so a model's error can be read relative to it across splits
("skill" = 1 − model error / baseline error).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from farfield.analysis.dataset_context import DatasetContext
from farfield.data.splitting import Split
from farfield.models.blocks.readout import fit_reference_energies

__all__ = ["baseline_errors", "baseline_metrics"]


def baseline_errors(context: DatasetContext, split: Split, test_ids: list[str],
                    max_structures: int | None = None) -> pd.DataFrame:
    """Per test structure: ``structure_id``, ``baseline_e_error_per_atom_mev`` (signed,
    meV/atom), ``baseline_f_mae_mev`` and ``baseline_f_rmse_mev`` (zero-force model, meV/Å),
    ``n_atoms``. The fit uses the training side's structures (within ``max_structures``)."""
    train_ids = context.structure_ids_of(split.train, max_structures)
    if not train_ids:
        raise ValueError(f"split {split.content_hash}: no training structures in dataset {context.content_hash}")
    reference = fit_reference_energies(context.element_counts(train_ids), context.energies(train_ids))
    counts = context.element_counts(test_ids)
    n_atoms = counts.sum(axis=1)
    error = (counts @ reference - context.energies(test_ids)) / n_atoms
    f_mae, f_rmse = [], []
    for atoms in context.frames(test_ids):
        forces = np.asarray(atoms.arrays["forces"], dtype=np.float64)
        f_mae.append(1e3 * float(np.abs(forces).mean()))
        f_rmse.append(1e3 * float(np.sqrt((forces**2).mean())))
    return pd.DataFrame({"structure_id": list(test_ids), "n_atoms": n_atoms.astype(int),
                         "baseline_e_error_per_atom_mev": 1e3 * error,
                         "baseline_f_mae_mev": f_mae, "baseline_f_rmse_mev": f_rmse})


def baseline_metrics(errors: pd.DataFrame) -> dict[str, float]:
    """Set-level ``baseline_{e_mae,e_rmse,f_mae,f_rmse}`` as the trainer computes them:
    energies per structure, forces over all components (weights = atoms)."""
    e = errors["baseline_e_error_per_atom_mev"].to_numpy()
    weights = errors["n_atoms"].to_numpy(dtype=np.float64)
    return {
        "baseline_e_mae": float(np.abs(e).mean()),
        "baseline_e_rmse": float(np.sqrt((e**2).mean())),
        "baseline_f_mae": float(np.average(errors["baseline_f_mae_mev"], weights=weights)),
        "baseline_f_rmse": float(np.sqrt(np.average(errors["baseline_f_rmse_mev"] ** 2, weights=weights))),
    }
