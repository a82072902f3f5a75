"""The MD stability probe's verdicts on calculators whose behaviour is known (ASE's EMT; a non-conservative push)."""

from __future__ import annotations

import ase.build
import numpy as np
import pandas as pd
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from farfield.analysis.md_probe import ProbeSettings, probe_structure, probe_summary


class PushApart(Calculator):
    """Zero energy but outward forces of 5 eV/Å on every atom: not conservative, tears the cell apart."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        offset = self.atoms.positions - self.atoms.positions.mean(axis=0)
        norm = np.linalg.norm(offset, axis=1, keepdims=True)
        self.results = {"energy": 0.0, "forces": 5.0 * offset / np.where(norm > 0, norm, 1.0)}


@pytest.fixture
def copper():
    atoms = ase.build.bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.info["structure_id"] = "cu-32"
    return atoms


def test_a_conservative_potential_stays_intact_with_small_drift(copper):
    settings = ProbeSettings(steps=100, timestep_fs=1.0, temperature_k=300.0)
    row = probe_structure(copper, EMT(), settings)
    assert row["status"] == "ok" and row["intact"] and row["broken_bonds"] == 0
    assert row["steps_done"] == 100 and row["time_ps"] == pytest.approx(0.1)
    assert abs(row["drift_mev_per_atom_ps"]) < 5.0 and row["max_deviation_mev_per_atom"] < 5.0
    assert row["min_distance"] > 2.0


def test_a_structure_torn_apart_is_not_intact_and_drifts(copper):
    row = probe_structure(copper, PushApart(), ProbeSettings(steps=60, timestep_fs=2.0, temperature_k=300.0))
    assert row["status"] == "ok" and not row["intact"] and row["broken_bonds"] > 10
    assert abs(row["drift_mev_per_atom_ps"]) > 100.0


def test_probe_summary_per_scheme_and_settings_errors():
    rows = pd.DataFrame({"model": ["a", "a", "b"], "split": "random", "status": ["ok", "exploded", "ok"],
                         "intact": [True, False, True], "drift_mev_per_atom_ps": [1.0, np.nan, -3.0],
                         "max_deviation_mev_per_atom": [1.0, 50.0, 2.0]})
    summary = probe_summary(rows).set_index("model")
    assert summary.loc["a", "fraction_intact"] == 0.5 and summary.loc["a", "fraction_exploded"] == 0.5
    assert summary.loc["a", "median_abs_drift_mev_per_atom_ps"] == 1.0
    assert summary.loc["b", "median_abs_drift_mev_per_atom_ps"] == 3.0
    with pytest.raises(ValueError, match="steps must be > 0"):
        ProbeSettings(steps=0)
