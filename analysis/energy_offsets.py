"""Where a model's energy error sits: an offset per material, or between its configurations.

Every test parent (one MOF) has several frames (relaxation steps, thermal displacements,
small strains). The per-atom energy error ``e_i`` of frame ``i`` of parent ``p`` splits into

* the **offset** ``ē_p``, the parent's mean error: the model misplaces the material as a whole
  (its cohesive energy, the electrostatics of its arrangement — what a short-range model
  cannot see beyond its receptive field lands here), and
* the **within-parent** error ``e_i − ē_p``: relative energies of nearby configurations of one
  material, what molecular dynamics feels.

``within_spread`` is the same deviation of the *reference* energies (``|E_i/N − mean_p|``), the
error of a model that gets every relative energy wrong by predicting a constant per parent;
``within_skill = 1 − within_mae / within_spread``. Where the table has each structure's
beyond-cutoff Coulomb energy of the reference charges (``e_beyond_per_atom_mev``, the long-range
yardstick; ``analysis.yardstick.with_beyond_energies``), ``offset_beyond_r`` is the Pearson
correlation over parents of the offset with the parent's mean of it: near 1 (or −1) if the
offsets are missing long-range electrostatics, near 0 if not. All energies in meV/atom.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["OFFSET_KEYS", "energy_offset_table"]

#: One row per trial: these columns of the structures table identify it.
OFFSET_KEYS = ["run_id", "model", "layers", "split", "seed"]


def _one_trial(frames: pd.DataFrame) -> dict:
    error = frames["e_error_per_atom_mev"]
    by_parent = frames.groupby("parent_id", sort=False)
    offset = by_parent["e_error_per_atom_mev"].transform("mean")
    reference = frames["energy_ref"] / frames["n_atoms"] * 1000.0
    spread = reference - reference.groupby(frames["parent_id"]).transform("mean")
    several = by_parent["structure_id"].transform("size") > 1
    within_mae = float((error - offset)[several].abs().mean()) if several.any() else float("nan")
    within_spread = float(spread[several].abs().mean()) if several.any() else float("nan")
    e_mae = float(error.abs().mean())
    offset_mae = float(offset.abs().mean())
    beyond_r = float("nan")
    if "e_beyond_per_atom_mev" in frames:
        parents = frames.assign(offset=offset).groupby("parent_id")[["offset", "e_beyond_per_atom_mev"]].mean()
        parents = parents.dropna()
        if len(parents) >= 3 and parents["offset"].std() > 0 and parents["e_beyond_per_atom_mev"].std() > 0:
            beyond_r = float(np.corrcoef(parents["offset"], parents["e_beyond_per_atom_mev"])[0, 1])
    return {
        "n_structures": len(frames), "n_parents": frames["parent_id"].nunique(),
        "n_in_multi_frame_parents": int(several.sum()),
        "e_mae": e_mae, "offset_mae": offset_mae, "offset_share": offset_mae / e_mae if e_mae else float("nan"),
        "within_mae": within_mae, "within_spread": within_spread,
        "within_skill": 1.0 - within_mae / within_spread if within_spread else float("nan"),
        "offset_beyond_r": beyond_r,
    }


def energy_offset_table(structures: pd.DataFrame) -> pd.DataFrame:
    """Per trial (``OFFSET_KEYS``): test energy MAE, its per-parent offset part and its
    within-parent part (see the module docstring). ``structures``: the report's per-structure
    table (``structure_id``, ``parent_id``, ``n_atoms``, ``energy_ref`` in eV,
    ``e_error_per_atom_mev``). Empty when there are no energies."""
    needed = {"structure_id", "parent_id", "n_atoms", "energy_ref", "e_error_per_atom_mev"}
    if structures.empty or not needed <= set(structures.columns):
        return pd.DataFrame()
    frames = structures.dropna(subset=["e_error_per_atom_mev", "energy_ref"])
    keys = [key for key in OFFSET_KEYS if key in frames.columns]
    rows = [{**dict(zip(keys, key if isinstance(key, tuple) else (key,))), **_one_trial(group)}
            for key, group in frames.groupby(keys, sort=True, dropna=False)]
    return pd.DataFrame(rows)
