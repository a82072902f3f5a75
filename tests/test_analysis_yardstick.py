"""The long-range yardstick (analysis/yardstick.py) against known answers, in float64.

A Gaussian ion pair in a large box: beyond the cutoff it is the pair's own Coulomb energy
when the ions are farther apart than the cutoff, and (almost) nothing when they are closer;
forces are the energy's gradient (central differences); a uniform charge offset is removed;
per-structure values are cached and summarised per split as documented; the energy
yardstick leaves out what one constant per element explains.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.formula import Formula
from farfield.analysis import yardstick
from farfield.analysis.yardstick import beyond_cutoff, per_element_residuals, split_yardsticks, structure_yardsticks
from farfield.data.chemspace.descriptors import element_counts
from farfield.models.electrostatics import COULOMB_CONSTANT


def _pair(separation: float, box: float = 40.0, charges=(1.0, -1.0)) -> Atoms:
    atoms = Atoms("NaCl", positions=[[5.0, 5.0, 5.0], [5.0 + separation, 5.0, 5.0]], cell=[box] * 3, pbc=True)
    atoms.arrays["charges"] = np.array(charges, dtype=float)
    atoms.info["structure_id"] = f"pair-{separation}"
    return atoms


def _random_cell(seed: int = 0, n: int = 12) -> Atoms:
    rng = np.random.default_rng(seed)
    cell = np.diag([9.0, 10.0, 11.0]) + rng.uniform(-0.5, 0.5, (3, 3))
    atoms = Atoms(["O"] * n, scaled_positions=rng.uniform(0, 1, (n, 3)), cell=cell, pbc=True)
    atoms.arrays["charges"] = rng.normal(0, 0.5, n)
    atoms.info["structure_id"] = f"random-{seed}"
    return atoms


def test_an_ion_pair_beyond_the_cutoff_is_its_coulomb_energy_and_within_it_nothing():
    width = yardstick.WIDTH
    far, _ = beyond_cutoff(_pair(8.0), cutoff=5.0)
    expected = -COULOMB_CONSTANT * math.erf(8.0 / (2.0 * width)) / 8.0  # γ = √2 σ: erf(r / (√2 γ)) = erf(r / 2σ)
    assert far == pytest.approx(expected, rel=0.03)  # the rest: the pair's periodic images in a 40 Å box
    near, forces = beyond_cutoff(_pair(3.0), cutoff=5.0)
    assert abs(near) < 0.01 * abs(expected) and np.abs(forces).max() < 0.01
    _, far_forces = beyond_cutoff(_pair(8.0), cutoff=5.0)
    assert far_forces[0, 0] > 0.15 and far_forces[0, 0] == pytest.approx(-far_forces[1, 0])  # attraction along x


def test_forces_are_the_gradient_of_the_beyond_cutoff_energy():
    atoms = _random_cell()
    _, forces = beyond_cutoff(atoms, cutoff=4.0)
    step = 1e-4
    for atom, axis in ((0, 0), (3, 1), (7, 2)):
        shifted = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * step
            shifted.append(beyond_cutoff(moved, cutoff=4.0)[0])
        assert forces[atom, axis] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * step), abs=2e-5, rel=1e-3)


def test_charges_are_made_neutral_and_a_larger_cutoff_leaves_less():
    atoms = _random_cell(1)
    shifted = atoms.copy()
    shifted.arrays["charges"] = atoms.arrays["charges"] + 0.3
    e0, f0 = beyond_cutoff(atoms, cutoff=4.0)
    e1, f1 = beyond_cutoff(shifted, cutoff=4.0)
    assert e1 == pytest.approx(e0, abs=1e-9) and np.allclose(f1, f0, atol=1e-9)
    assert np.abs(beyond_cutoff(atoms, cutoff=8.0)[1]).mean() < np.abs(f0).mean()
    with pytest.raises(ValueError, match="no reference charges"):
        beyond_cutoff(Atoms("H", cell=[5, 5, 5], pbc=True), cutoff=4.0)


class _Context:
    """The two things ``structure_yardsticks`` uses of a ``DatasetContext``."""

    content_hash = "0123456789abcdef0123"

    def __init__(self, frames):
        self._frames = {a.info["structure_id"]: a for a in frames}
        self.reads = 0

    def frames(self, ids):
        self.reads += len(ids)
        return [self._frames[i] for i in ids]

    def element_counts(self, ids):
        return _counts([self._frames[i].get_chemical_formula() for i in ids])


def _counts(formulas) -> np.ndarray:
    """(n, MAX_Z + 1) atoms of each element, counted as the dataset store counts them."""
    return np.stack([element_counts(Atoms(formula), formula) for formula in formulas])


def test_values_are_cached_per_structure_and_summarised_per_split(tmp_path, monkeypatch):
    no_charges = Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], cell=[6, 6, 6], pbc=True)
    no_charges.info["structure_id"] = "plain"
    frames = [_random_cell(0), _random_cell(1, n=20), no_charges]
    context = _Context(frames)
    ids = [a.info["structure_id"] for a in frames]
    first = structure_yardsticks(context, ids, 4.0, cache_dir=tmp_path)
    assert list(first["structure_id"]) == ids and context.reads == 3
    assert first["has_charges"].tolist() == [True, True, False] and first.iloc[2].isna()["f_beyond_mae_mev"]
    energy, forces = beyond_cutoff(frames[1], 4.0)
    row = first.set_index("structure_id").loc["random-1"]
    assert row["e_beyond_per_atom_mev"] == pytest.approx(1e3 * energy / 20)
    assert row["f_beyond_mae_mev"] == pytest.approx(1e3 * np.abs(forces).mean())
    monkeypatch.setattr(yardstick, "beyond_cutoff", lambda *a, **k: pytest.fail("recomputed a cached structure"))
    again = structure_yardsticks(context, list(reversed(ids)), 4.0, cache_dir=tmp_path)
    assert context.reads == 3
    pd.testing.assert_frame_equal(again.iloc[::-1].reset_index(drop=True), first)

    trials = pd.DataFrame({"run_id": ["r1", "r2"], "split": ["random", "size"], "split_hash": ["h1", "h2"],
                           "cutoff": [4.0, np.nan]})
    structures = pd.DataFrame({"run_id": ["r1"] * 3, "structure_id": ids})
    table = split_yardsticks(trials, structures, {"r1": context, "r2": context}, cache_dir=tmp_path)
    assert list(table["split"]) == ["random"]  # no cutoff logged: no yardstick
    charged = first[first["has_charges"]]
    assert table.iloc[0]["n_with_charges"] == 2 and table.iloc[0]["n_structures"] == 3
    assert table.iloc[0]["yardstick_f_mae"] == pytest.approx(
        np.average(charged["f_beyond_mae_mev"], weights=charged["n_atoms"]))
    energies = charged["e_beyond_per_atom_mev"].to_numpy()
    # one element (O) in both: its per-element constant is the mean
    assert table.iloc[0]["yardstick_e_mae"] == pytest.approx(np.abs(energies - energies.mean()).mean())
    assert table.iloc[0]["e_beyond_mad"] == pytest.approx(np.abs(energies - energies.mean()).mean())


def test_per_element_constants_are_no_yardstick_and_the_rest_is():
    formulas = ["H2O", "CH4", "C2H6O", "CO2", "H2O", "C6H6"]
    per_element = {"H": 12.0, "C": -40.0, "O": 75.0}
    counts = [dict(Formula(f).count()) for f in formulas]
    values = np.array([sum(n * per_element[e] for e, n in c.items()) / sum(c.values()) for c in counts])
    assert np.abs(values - values.mean()).mean() > 10.0  # composition alone spreads them
    assert np.allclose(per_element_residuals(_counts(formulas), values), 0.0, atol=1e-5)  # the fit's 1e-8 ridge
    # two structures of one composition 20 meV/atom apart stay 20 apart: no constant per element parts them
    shifted = values + np.array([0.0, 0.0, 0.0, 0.0, 20.0, 0.0])
    residuals = per_element_residuals(_counts(formulas), shifted)
    assert residuals[4] - residuals[0] == pytest.approx(20.0)
    assert np.abs(residuals).mean() > 0.0
