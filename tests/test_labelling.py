"""GFN1-xTB labelling (tblite) and the CoRE MOF CIF extractor's rejection rules.

Reference frames: ``tests/data/{mof_small,water_dimer}.extxyz`` (see tests/data/README.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from farfield.data.coremof import StructureRejected, cif_to_atoms, normalise_hydrogens
from farfield.data.labelling import XtbSettings, check_stress_sign, label_gfn_xtb, strained
from farfield.data.records import CHARGES, ENERGY, FORCES, STRESS, STRUCTURE_ID

needs_tblite = pytest.mark.skipif(
    importlib.util.find_spec("tblite") is None, reason="tblite not installed (dev extra)"
)
DATA = Path(__file__).parent / "data"


def _read(name: str):
    """(geometry without labels, reference calc results) of a tests/data frame."""
    atoms = ase.io.read(DATA / f"{name}.extxyz")
    reference = dict(atoms.calc.results)
    atoms.calc = None
    return atoms, reference


@pytest.fixture(scope="module")
def water():
    return _read("water_dimer")[0]


@pytest.fixture(scope="module")
def mof():
    atoms, _ = _read("mof_small")
    assert atoms.info["source"].startswith("coremof") and atoms.pbc.all()
    return atoms


@needs_tblite
def test_forces_are_minus_energy_gradient(water):
    labelled = label_gfn_xtb(water, XtbSettings(accuracy=0.01))
    h = 1e-3  # Å
    for atom, axis in [(0, 0), (1, 2), (4, 1)]:
        energies = []
        for step in (h, -h):
            moved = water.copy()
            moved.positions[atom, axis] += step
            energies.append(label_gfn_xtb(moved, XtbSettings(accuracy=0.01)).info[ENERGY])
        f_fd = -(energies[0] - energies[1]) / (2 * h)
        assert labelled.arrays[FORCES][atom, axis] == pytest.approx(f_fd, abs=1e-3)


@needs_tblite
@pytest.mark.parametrize("total_charge", [0.0, 1.0])
def test_mulliken_charges_sum_to_total_charge(water, total_charge):
    labelled = label_gfn_xtb(water, total_charge=total_charge)
    assert labelled.info["total_charge"] == total_charge
    assert labelled.arrays[CHARGES].shape == (len(water),)
    assert labelled.arrays[CHARGES].sum() == pytest.approx(total_charge, abs=1e-6)
    assert STRESS not in labelled.info  # molecular: no stress


@needs_tblite
def test_periodic_labels_reproduce_reference_and_are_translation_invariant(mof):
    _, ref = _read("mof_small")
    labelled = label_gfn_xtb(mof)
    assert labelled.info[ENERGY] == pytest.approx(ref["energy"], abs=1e-6)
    np.testing.assert_allclose(labelled.arrays[FORCES], ref["forces"], atol=1e-6)
    np.testing.assert_allclose(labelled.arrays[CHARGES], ref["charges"], atol=1e-6)
    np.testing.assert_allclose(labelled.info[STRESS], ref["stress"], atol=1e-8)
    assert labelled.arrays[CHARGES].sum() == pytest.approx(0.0, abs=1e-6)

    # A lattice-vector translation is exact; a generic one moves atoms across cell faces,
    # which changes tblite's truncated lattice sums slightly (measured: <= 5e-5 eV total,
    # 1e-4 eV/Å on this 13-atom cell), so it gets a 1e-5 eV/atom tolerance.
    for shift, e_tol, f_tol in [(mof.cell[0] - mof.cell[2], 1e-9, 1e-9),
                                (np.array([0.31, -0.77, 1.13]), 1e-5 * len(mof), 1e-3)]:
        moved = mof.copy()
        moved.positions += shift
        shifted = label_gfn_xtb(moved)
        assert shifted.info[ENERGY] == pytest.approx(labelled.info[ENERGY], abs=e_tol)
        np.testing.assert_allclose(shifted.arrays[FORCES], labelled.arrays[FORCES], atol=f_tol)


@needs_tblite
def test_stress_is_strain_derivative_of_energy(mof):
    """One shear component by central differences: σ_xy = (1/V) ∂E/∂ε_xy (ASE sign)."""
    h = 1e-4
    stress = label_gfn_xtb(mof, XtbSettings(accuracy=0.01)).info[STRESS]
    energies = []
    for s in (h, -h):
        eps = np.zeros((3, 3))
        eps[0, 1] = eps[1, 0] = s / 2
        energies.append(label_gfn_xtb(strained(mof, eps), XtbSettings(accuracy=0.01)).info[ENERGY])
    fd = (energies[0] - energies[1]) / (2 * h * mof.get_volume())
    assert stress[5] == pytest.approx(fd, abs=1e-5 + 1e-3 * abs(fd))


@needs_tblite
@pytest.mark.slow
def test_full_stress_sign_check(mof):
    result = check_stress_sign(mof)
    assert result["sign"] == "+virial/V"


@needs_tblite
def test_scf_non_convergence_raises_with_structure_id(mof):
    with pytest.raises(ValueError, match=str(mof.info[STRUCTURE_ID])):
        label_gfn_xtb(mof, XtbSettings(max_iterations=2))


@needs_tblite
def test_labelling_returns_copy_with_method(water):
    labelled = label_gfn_xtb(water)
    assert labelled is not water and ENERGY not in water.info
    assert labelled.info["label_method"] == "GFN1-xTB"
    assert labelled.arrays[FORCES].shape == (len(water), 3)


@needs_tblite
def test_nacl_reference_charges_have_ionic_signs():
    atoms, ref = _read("nacl_rocksalt")
    labelled = label_gfn_xtb(atoms)
    assert labelled.info[ENERGY] == pytest.approx(ref["energy"], abs=1e-6)
    charges = labelled.arrays[CHARGES]
    assert np.all(charges[atoms.numbers == 11] > 0.3)  # Na
    assert np.all(charges[atoms.numbers == 17] < -0.3)  # Cl
    assert charges.sum() == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(labelled.arrays[FORCES], 0.0, atol=1e-3)  # symmetric sites


# --- CoRE MOF extractor -------------------------------------------------------------

CIF_HEADER = """data_test
_symmetry_space_group_name_H-M    'P1'
loop_
_symmetry_equiv_pos_as_xyz
  x,y,z
_cell_length_a                    8.0
_cell_length_b                    8.0
_cell_length_c                    8.0
_cell_angle_alpha                 90.0
_cell_angle_beta                  90.0
_cell_angle_gamma                 90.0
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
"""


def _cif(tmp_path, name: str, rows: str) -> tuple[str, str]:
    path = tmp_path / f"{name}.cif"
    path.write_text(CIF_HEADER + rows)
    return path.read_text(), name


def test_extractor_accepts_clean_cif(tmp_path):
    rows = "Zn1 Zn 0.0 0.0 0.0 1.0\nO1 O 0.25 0.0 0.0 1.0\nH1 H 0.25 0.12 0.0 1.0\n"
    atoms = cif_to_atoms(*_cif(tmp_path, "CLEAN", rows))
    assert atoms.get_chemical_formula() == "HOZn" and atoms.pbc.all()
    assert atoms.cell.volume == pytest.approx(512.0)


@pytest.mark.parametrize(
    ("name", "rows", "reason"),
    [
        ("PARTOCC", "Zn1 Zn 0.0 0.0 0.0 0.5\nO1 O 0.25 0.0 0.0 1.0\nH1 H 0.25 0.12 0.0 1.0\n",
         "partial_occupancy"),
        ("URANYL", "U1 U 0.0 0.0 0.0 1.0\nO1 O 0.25 0.0 0.0 1.0\nH1 H 0.25 0.12 0.0 1.0\n",
         "heavy_element"),
        ("NOHYD", "Zn1 Zn 0.0 0.0 0.0 1.0\nO1 O 0.25 0.0 0.0 1.0\n", "no_hydrogen"),
        ("CLASH", "Zn1 Zn 0.0 0.0 0.0 1.0\nO1 O 0.05 0.0 0.0 1.0\nH1 H 0.25 0.12 0.0 1.0\n",
         "overlapping_atoms"),
        ("SHORT", "Zn1 Zn 0.0 0.0 0.0 1.0\nZn2 Zn 0.125 0.0 0.0 1.0\nH1 H 0.5 0.5 0.5 1.0\n",
         "short_contact"),  # Zn–Zn 1.0 Å: > 0.5 Å but < 0.7 × (2 × 1.22 Å)
    ],
)
def test_extractor_rejects_with_reason(tmp_path, name, rows, reason):
    with pytest.raises(StructureRejected) as info:
        cif_to_atoms(*_cif(tmp_path, name, rows))
    assert info.value.reason == reason
    assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_normalise_hydrogens_sets_neutron_lengths_across_cell_faces():
    # C near x=0, its H through the periodic boundary at 0.60 Å; O–H 0.80 Å; lone H2.
    atoms = Atoms("CHOHH", positions=[[0.2, 0, 0], [7.6, 0, 0], [4, 4, 4], [4.8, 4, 4],
                                      [2, 6, 2]], cell=[8, 8, 8], pbc=True)
    moved, shift = normalise_hydrogens(atoms)
    assert moved.get_distance(0, 1, mic=True) == pytest.approx(1.083)
    assert moved.get_distance(2, 3, mic=True) == pytest.approx(0.983)
    assert shift[[0, 2, 4]].tolist() == [0.0, 0.0, 0.0]  # heavy atoms and isolated H stay
    assert atoms.positions[1, 0] == 7.6  # input untouched
